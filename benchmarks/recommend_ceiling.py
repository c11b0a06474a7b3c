"""How far a mirdemo collection's listening histories let recall@k go: oracles that know the hidden
tastes, next to mir's own recommenders, on the split and metric of `mir recommend-eval`.

    python benchmarks/recommend_ceiling.py [--library mir-demo/library]
        [--events mir-demo/collection/events.parquet] [--truth mir-demo/collection]
        [--model MODEL_ID] [-k 50] [--holdout 0.2] [--out benchmarks/results/recommend-ceiling.json]

The histories are drawn by ``mir/datasets/_histories.py`` from a hidden taste model kept in the
collection's ``tastes.json``: ``K`` taste clusters (genre weights ``g_k``, tag weights ``w_k``); a
user mixes 1-3 clusters (probabilities 0.5 / 0.35 / 0.15, uniform Dirichlet weights ``pi``) plus a
small personal tag offset; ``affinity(u, t) = log(g_u[genre_t] + 1e-3) + beta * mean tag weight``;
each pick is drawn with probability proportional to ``exp(affinity + log popularity_t)`` (plus
exploration and repeat picks).

Split and metric: :func:`mir.recommend.split.temporal_split` (each user's last ``holdout`` of events
held out; relevant = held-out tracks not played before), lists of ``k`` tracks without the tracks the
user played in training, recall@k by :func:`mir.recommend.metrics.evaluate_lists`. Users are *cold*
when they have at most 3 plays in training (as the cold-start recall of ``mir recommend-eval``),
*warm* otherwise.

Rows
- oracle: the true affinity (``demo_affinity``, personal offsets included) + true log popularity;
  the generator's own pick logit, so the upper bound for lists built from the taste model.
- cluster oracle (true popularity): knows the true clusters and the true genre/tag labels, not the
  user's mixture: the mixture's posterior given the user's distinct training plays (Bayes over the
  generator's prior), and the list ranks the posterior predictive ``sum_c p(c | plays) P(t | c)``,
  ``P(t | c) = softmax_t(affinity_c(t) + log popularity_t)``. The mixtures enumerated are a **grid
  approximation** of the generator's: every single cluster; every pair with weights 0.15 / 0.3 / 0.5
  / 0.7 / 0.85; every triple with weights (1/3, 1/3, 1/3) and the three (0.6, 0.2, 0.2) permutations;
  prior = P(number of clusters) spread evenly over that number's grid points. Personal tag offsets,
  exploration and repeat picks are left out of the likelihood.
- cluster oracle (learned biases): the same with the item biases mir's taste model learns from
  everyone's training plays (``fit_taste_model(..., item_bias=True)`` on the predicted features) in
  place of the true log popularity; never-played tracks get bias -10 (their popularity is unknown).
- taste model (true labels): mir's taste model (``fit_taste_model`` with item biases; never-played
  tracks at the median bias, as the hybrid does) on the true features (genre one-hot + the track's
  tags, normalised to sum 1: the generator's own features) instead of the tagger's predictions.
- hybrid (true labels): ``mir.recommend.make("hybrid")`` (Hybrid, defaults) fitted with the
  true features in place of the predicted ones (its cold users get content-taste on true features).
- hybrid, als, content-taste: mir's methods with their defaults (``make`` + ``evaluate_method``).

Column ``all, cold->content``: the row's warm users' recall together with the cold users' recall of
mir's ``content-taste`` lists measured in the same run (the rule that cold-start users get content
lists); for ``hybrid`` it equals ``all``.
"""
from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from mir import atomic  # noqa: E402
from mir.catalog import Library  # noqa: E402
from mir.catalog.labels import TAG_SEPARATOR  # noqa: E402
from mir.recommend import affinity, make, metrics  # noqa: E402
from mir.recommend.arrays import mask_unwanted  # noqa: E402
from mir.topk import top_k  # noqa: E402
from mir.datasets.truth import demo_affinity, read_demo_truth  # noqa: E402
from mir.recommend.evaluate import evaluate_method  # noqa: E402
from mir.recommend.inputs import load_inputs  # noqa: E402
from mir.recommend.split import temporal_split  # noqa: E402

COLD_USER_PLAYS = 3
CLUSTER_COUNTS = {1: 0.5, 2: 0.35, 3: 0.15}  # the generator's P(user mixes n clusters)
PAIR_WEIGHTS = (0.15, 0.3, 0.5, 0.7, 0.85)
TRIPLE_WEIGHTS = ((1 / 3, 1 / 3, 1 / 3), (0.6, 0.2, 0.2), (0.2, 0.6, 0.2), (0.2, 0.2, 0.6))
NEVER_PLAYED_BIAS = -10.0


@dataclasses.dataclass
class Truth:
    """The generator's hidden model on the catalogue's item order (``known``: the track has a label)."""
    genre_idx: np.ndarray  # [N] index into genre_names
    tag_share: np.ndarray  # [N, T] the track's tags, normalised to sum 1
    log_pop: np.ndarray  # [N] log popularity (hidden tracks: log 1e-12)
    known: np.ndarray  # [N] bool
    cluster_genres: np.ndarray  # [K, G]
    cluster_tags: np.ndarray  # [K, T]
    beta: float
    genre_names: list
    tag_names: list

    def features(self) -> np.ndarray:
        """True content features [N, G + T]: genre one-hot + normalised tags (zero rows for unlabelled tracks)."""
        onehot = np.zeros((len(self.genre_idx), len(self.genre_names)))
        onehot[np.flatnonzero(self.known), self.genre_idx[self.known]] = 1.0
        return np.hstack([onehot, self.tag_share])


def load_truth(folder: Path, resolve, items: np.ndarray) -> Truth:
    """Read ``tastes.json`` + ``labels.csv`` of a mirdemo folder onto ``items`` (catalogue track ids)."""
    tastes, labels = read_demo_truth(folder)
    genre_names = sorted(tastes["clusters"][0]["genres"])
    tag_names = sorted(tastes["clusters"][0]["tags"])
    g_index = {g: i for i, g in enumerate(genre_names)}
    t_index = {t: i for i, t in enumerate(tag_names)}
    pos = {t: i for i, t in enumerate(items)}
    n = len(items)
    genre_idx, tags, known = np.zeros(n, np.int64), np.zeros((n, len(tag_names))), np.zeros(n, bool)
    log_pop = np.full(n, np.log(1e-12))
    for row in labels.itertuples(index=False):
        col = pos.get(resolve(row.track))
        if col is None:
            continue
        known[col] = True
        genre_idx[col] = g_index[row.genre]
        for t in row.tags.split(TAG_SEPARATOR):
            if t.strip():
                tags[col, t_index[t.strip()]] = 1.0
        pop = tastes["tracks"].get(row.track, {}).get("popularity", 0.0)
        log_pop[col] = np.log(pop) if pop > 0 else np.log(1e-12)
    tags /= np.maximum(tags.sum(axis=1, keepdims=True), 1.0)
    cg = np.array([[c["genres"][g] for g in genre_names] for c in tastes["clusters"]])
    cw = np.array([[c["tags"][t] for t in tag_names] for c in tastes["clusters"]])
    return Truth(genre_idx, tags, log_pop, known, cg, cw, float(tastes["beta"]), genre_names, tag_names)


def mixture_grid(n_clusters: int) -> tuple[np.ndarray, np.ndarray]:
    """``(Pi [C, K], log_prior [C])``: the grid of cluster mixtures (see the module docstring) and the
    generator's prior on them (P(number of clusters) / grid points with that number)."""
    rows, prior = [], []
    grids = {1: [(1.0,)], 2: [(w, 1 - w) for w in PAIR_WEIGHTS], 3: list(TRIPLE_WEIGHTS)}
    for m, p_m in CLUSTER_COUNTS.items():
        if m > n_clusters:
            continue
        points = math.comb(n_clusters, m) * len(grids[m])
        for ks in itertools.combinations(range(n_clusters), m):
            for w in grids[m]:
                pi = np.zeros(n_clusters)
                pi[list(ks)] = w
                rows.append(pi)
                prior.append(p_m / points)
    prior = np.array(prior)
    return np.array(rows), np.log(prior / prior.sum())


def mixture_log_probs(truth: Truth, Pi: np.ndarray, log_pop: np.ndarray) -> np.ndarray:
    """log P(t | mixture) [C, N]: the generator's pick softmax of each mixture's affinity + ``log_pop``
    (unlabelled tracks excluded)."""
    genre = np.log(Pi @ truth.cluster_genres[:, truth.genre_idx] + 1e-3)
    logit = genre + truth.beta * (Pi @ truth.cluster_tags) @ truth.tag_share.T + log_pop
    logit[:, ~truth.known] = -np.inf
    return logit - np.logaddexp.reduce(logit, axis=1, keepdims=True)


def cluster_oracle_scores(played, logP: np.ndarray, log_prior: np.ndarray) -> np.ndarray:
    """log posterior-predictive [U, N] for users with 0/1 play indicators ``played`` [U, N] (sparse)."""
    finite = np.where(np.isfinite(logP), logP, -1e30)
    post = played @ finite.T + log_prior  # [U, C] log p(plays | c) + log prior
    post = np.exp(post - post.max(axis=1, keepdims=True))
    post /= post.sum(axis=1, keepdims=True)
    return np.log(post @ np.exp(logP) + 1e-300)


def lists_of(S: np.ndarray, seen, users: np.ndarray, k: int) -> dict[int, list]:
    """Top ``k`` of dense scores ``S`` [len(users), N] per user, training plays excluded, as mir lists them."""
    S = np.where(np.isfinite(S), S, -1e30).astype(np.float32)
    mask_unwanted(S, seen, users, None, True)
    _, items = top_k(S, k)
    return {int(u): items[r][items[r] >= 0].tolist() for r, u in enumerate(users)}


def recall_by_group(lists: dict, relevant: dict, cold: set, k: int) -> dict:
    """recall@k over all, warm and cold users (``metrics.evaluate_lists``)."""
    rel = {u: set(v.tolist()) for u, v in relevant.items()}
    out = {}
    for name, keep in (("all", lambda u: True), ("warm", lambda u: u not in cold), ("cold", lambda u: u in cold)):
        sub = {u: r for u, r in rel.items() if keep(u)}
        out[name] = metrics.evaluate_lists(lists, sub, k)[f"recall@{k}"] if sub else float("nan")
    return out


def method_row(model, train, relevant, tracks, k: int, n_cold: int) -> tuple[dict, object]:
    """Fit and score one of mir's recommenders with ``evaluate_method``; warm recall from all and cold."""
    row = evaluate_method(model, train, relevant, tracks, k=k, cold_user_plays=COLD_USER_PLAYS)
    n = len(relevant)
    rec_all, rec_cold = row[f"recall@{k}"], row[f"recall@{k}_cold_users"]
    warm = (rec_all * n - (rec_cold * n_cold if n_cold else 0.0)) / max(n - n_cold, 1)
    return {"all": rec_all, "warm": warm, "cold": rec_cold, "time_s": row["fit_s"] + row["recommend_s"]}, model


def check_paths(p: argparse.ArgumentParser, args) -> None:
    if not (Path(args.library) / "library.json").is_file():
        p.error(f"no mir library at {args.library} (no library.json); build one (`mir demo`) or pass --library")
    if not Path(args.events).is_file():
        p.error(f"events file not found: {args.events}; pass --events (a mirdemo collection's events.parquet)")
    for name in ("tastes.json", "labels.csv"):
        if not (Path(args.truth) / name).is_file():
            p.error(f"{Path(args.truth) / name} not found; --truth must be a mirdemo collection folder with hidden tastes")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--library", default="mir-demo/library",
                   help="mir library over the collection, tagged (default %(default)s, from `make demo`)")
    p.add_argument("--events", default="mir-demo/collection/events.parquet", help="default %(default)s")
    p.add_argument("--truth", default="mir-demo/collection",
                   help="mirdemo folder with tastes.json and labels.csv (default %(default)s)")
    p.add_argument("--model", default=None, metavar="MODEL_ID", help="tagging model (default: the latest that tagged LIB)")
    p.add_argument("-k", type=int, default=50, help="list length (default 50)")
    p.add_argument("--holdout", type=float, default=0.2, help="share of each user's last events held out (default 0.2)")
    p.add_argument("--out", default=str(HERE / "results" / "recommend-ceiling.json"))
    args = p.parse_args()
    check_paths(p, args)
    k, t_start = args.k, time.perf_counter()

    inputs = load_inputs(Library(args.library), args.events, model_id=args.model)
    X, tracks = inputs.interactions, inputs.tracks
    truth = load_truth(Path(args.truth), inputs.resolve, X.items)
    train, relevant = temporal_split(X, args.holdout)
    seen = train.matrix()
    users = np.array(sorted(relevant), dtype=np.int64)
    plays = np.asarray(seen.sum(axis=1)).ravel()
    cold = {int(u) for u in users if 0 < plays[u] <= COLD_USER_PLAYS}
    played = seen[users].copy()
    played.data[:] = 1.0  # distinct training plays (repeats say little about new picks)

    rows: dict[str, dict] = {}

    def scored(name: str, S_fn) -> None:
        t0 = time.perf_counter()
        S = S_fn()
        rows[name] = {**recall_by_group(lists_of(S, seen, users, k), relevant, cold, k),
                      "time_s": time.perf_counter() - t0}
        print(f"  {name}: {rows[name]['all']:.4f} ({rows[name]['time_s']:.1f} s)", file=sys.stderr, flush=True)

    A = demo_affinity(args.truth, X.users, inputs.resolve, X.items)
    scored("oracle", lambda: A[users] + truth.log_pop)

    Pi, log_prior = mixture_grid(len(truth.cluster_genres))
    scored("cluster oracle (true popularity)",
           lambda: cluster_oracle_scores(played, mixture_log_probs(truth, Pi, truth.log_pop), log_prior))

    def learned_bias_oracle():
        fit = affinity.fit_taste_model(seen, affinity.track_features(tracks), item_bias=True)
        b = fit.b.copy()
        b[np.asarray(seen.sum(axis=0)).ravel() == 0] = NEVER_PLAYED_BIAS
        return cluster_oracle_scores(played, mixture_log_probs(truth, Pi, b), log_prior)
    scored("cluster oracle (learned biases)", learned_bias_oracle)

    true_features = truth.features()

    def true_label_taste():
        fit = affinity.fit_taste_model(seen, true_features, item_bias=True)
        b = fit.b.copy()
        never = np.asarray(seen.sum(axis=0)).ravel() == 0
        b[never] = np.median(b[~never])
        return affinity.scores(fit.theta[users], true_features, b)
    scored("taste model (true labels)", true_label_taste)

    names = tuple(truth.genre_names) + tuple(f"tag:{t}" for t in truth.tag_names)
    true_tracks = dataclasses.replace(tracks, features=true_features, feature_names=names)
    fitted = {}
    for name, method, on in (("hybrid (true labels)", "hybrid", true_tracks), ("hybrid", "hybrid", tracks),
                             ("als", "als", tracks), ("content-taste", "content-taste", tracks)):
        rows[name], fitted[name] = method_row(make(method), train, relevant, on, k, len(cold))
        print(f"  {name}: {rows[name]['all']:.4f} ({rows[name]['time_s']:.1f} s)", file=sys.stderr, flush=True)

    content_cold = rows["content-taste"]["cold"]
    n, n_cold = len(users), len(cold)
    for row in rows.values():
        row["all, cold->content"] = (row["warm"] * (n - n_cold) + content_cold * n_cold) / n

    table = pd.DataFrame.from_dict(rows, orient="index")[["all", "warm", "cold", "all, cold->content", "time_s"]]
    table.index.name = f"recall@{k}"
    total_s = time.perf_counter() - t_start
    print(f"{X.n_users} users, {X.n_items} tracks, {len(X)} events (model {tracks.model_id}); temporal split: last "
          f"{args.holdout:.0%} held out; {n} users scored: {n - n_cold} warm, {n_cold} cold (<= {COLD_USER_PLAYS} "
          f"training plays); {len(truth.cluster_genres)} taste clusters, {len(Pi)} mixtures on the grid")
    print(table.to_string(float_format=lambda v: f"{v:.4f}"))
    print(f"cold users' content lists: content-taste recall {content_cold:.4f}; total {total_s:.0f} s")

    hybrids = {name: {"weight": float(m.weight_), "cold_offset": float(m.cold_offset_)}
               for name, m in fitted.items() if hasattr(m, "weight_")}
    doc = {"library": str(args.library), "events": str(args.events), "truth": str(args.truth),
           "model_id": tracks.model_id, "k": k, "holdout": args.holdout, "users": X.n_users, "items": X.n_items,
           "events_count": len(X), "scored_users": n, "warm_users": n - n_cold, "cold_users": n_cold,
           "cold_user_plays": COLD_USER_PLAYS, "clusters": len(truth.cluster_genres), "mixtures": len(Pi),
           "content_cold_recall": content_cold, "hybrid_settings": hybrids, "total_s": round(total_s, 1),
           "rows": json.loads(table.to_json(orient="index"))}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic.write_text(out, json.dumps(doc, indent=1) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
