"""Recommendation speed and quality: mir's methods against `implicit`'s own ALS batch recommend.

    python benchmarks/recommend.py [--scale 1.0] [--methods popularity,content,als,als-auto,hybrid] [--out FILE]
                                   [--threads 1] [--dask-workers 2 | --scheduler ADDRESS]

Synthetic data at scale 1: 50,000 users x 100,000 tracks, about 5 M interactions. Tracks belong
to 100 clusters (their 32-d embeddings are the cluster centre plus noise) and have power-law
(Zipf) popularity; users have power-law activity (mean ~100 events), like 1-3 clusters, and pick
a track of a liked cluster by popularity (10 % of picks: any track by popularity). Timestamps
increase per user; the last 20 % of each user's events are held out (mir.recommend.temporal_split).

For each method: time to fit on the training events, time to recommend the top 50 (played tracks
excluded) for every user, throughput, and recall@50 on the held-out new tracks. The peer in the
same run is `implicit`'s AlternatingLeastSquares with the same hyper-parameters: its fit and its
own batch `recommend(users, user_items, N=50, filter_already_liked_items=True)`; for mir als the
share of its lists equal to implicit's is reported too. These rows use the fixed settings ALS below
(64 factors, as the peer). "als-auto" is mir's default ALS: factors, regularisation and alpha chosen
by successive halving on a validation split of the training events (its fit time includes that
search; the chosen values are printed and stored in the JSON); "hybrid-auto" likewise (not in the
default list). "hybrid" is mir's default hybrid (mir.recommend.Hybrid: taste logits over the
track features blended with ALS, its fit including the validation tuning); "content-taste" its purely
content part. Peers kept here, not in mir (benchmarks/recommend_peers.py; not in the default list): "ease"
(catalogues up to 10,000 tracks) the closed-form item-item model, its fit including the ridge's validation
choice; "bpr" implicit's Bayesian personalised ranking (64 factors). Method "content-hnsw" (not in the
default list) is content-based with candidates from a mir.index HNSW index instead of the exact scan. --scale s
multiplies users, tracks and events by s. Writes JSON to benchmarks/results/recommend[-sSCALE].json.

Every row reports the peak resident memory of the process while that method ran (sampled every 0.1 s).
``--threads`` is the number of blocks of users the taste fits of "hybrid" and "content-taste" run at
once (their BLAS stays on one thread; implicit's ALS uses its own threads on every core).
``--dask-workers N`` starts a local Dask cluster (N worker processes, one thread each) and runs
"hybrid" a second time with its taste fits' per-user work sent there (``--scheduler ADDRESS``: an
existing cluster instead); the row reports whether its lists equal the in-process run's.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from mir import atomic  # noqa: E402
from mir.recommend import (Collaborative, ContentBased, ContentTaste, Hybrid, Interactions,  # noqa: E402
                           Popularity, TrackSet, temporal_split)
from recommend_peers import BPR, EASE  # noqa: E402

K = 50
ALS = dict(factors=64, regularization=0.05, alpha=2.0, iterations=15, random_state=0)


def synth(scale: float, seed: int = 0):
    g = np.random.default_rng(seed)
    n_users, n_items = int(50_000 * scale), int(100_000 * scale)
    n_clusters, d = max(5, int(100 * min(1.0, scale * 4))), 32
    cluster = g.integers(0, n_clusters, n_items)
    centres = g.standard_normal((n_clusters, d))
    emb = centres[cluster] + 0.6 * g.standard_normal((n_items, d))
    pop = 1.0 / (1.0 + g.permutation(n_items)) ** 0.9  # Zipf-like
    # per-cluster popularity tables for sampling
    order = np.argsort(cluster, kind="stable")
    bounds = np.searchsorted(cluster[order], np.arange(n_clusters + 1))
    cum = [np.cumsum(pop[order[bounds[c]:bounds[c + 1]]]) for c in range(n_clusters)]
    all_cum = np.cumsum(pop)
    activity = np.minimum(5 + np.floor(g.pareto(1.5, n_users) * 50), 2000).astype(np.int64)
    activity = (activity * (5_000_000 * scale / activity.sum())).astype(np.int64) + 1
    user = np.repeat(np.arange(n_users), activity)
    n = len(user)
    n_likes = 1 + g.choice(3, n_users, p=[0.5, 0.35, 0.15])
    likes = g.integers(0, n_clusters, (n_users, 3))
    pick_c = likes[user, (g.random(n) * n_likes[user]).astype(np.int64)]
    item = np.empty(n, np.int64)
    explore = g.random(n) < 0.1
    r = g.random(n)
    for c in range(n_clusters):
        sel = np.flatnonzero((pick_c == c) & ~explore)
        if len(sel) and len(cum[c]):
            pos = np.searchsorted(cum[c], r[sel] * cum[c][-1])
            item[sel] = order[bounds[c] + np.minimum(pos, len(cum[c]) - 1)]
    sel = np.flatnonzero(explore)
    item[sel] = np.minimum(np.searchsorted(all_cum, r[sel] * all_cum[-1]), n_items - 1)
    ts = np.arange(n, dtype=np.int64)  # increasing within each user
    plays = 1 + g.geometric(0.6, n) - 1
    tracks = TrackSet(track_ids=np.char.add("t", np.arange(n_items).astype(str)), embeddings=emb)
    X = Interactions(np.char.add("u", np.arange(n_users).astype(str)), tracks.track_ids, user.astype(np.int32),
                     item.astype(np.int32), ts, plays.astype(np.float64))
    return tracks, X


class PeakMemory:
    """Peak resident set size (GiB) of this process while the block runs, sampled every ``interval`` s."""

    def __init__(self, interval: float = 0.1):
        self.interval, self.peak, self._stop = interval, 0, threading.Event()

    @staticmethod
    def rss() -> int:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def _watch(self):
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, self.rss())

    def __enter__(self):
        self.peak = self.rss()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.rss())

    @property
    def gib(self) -> float:
        return self.peak / 2 ** 30


def recall(lists: np.ndarray, relevant: dict) -> float:
    vals = [np.isin(rel, lists[u]).sum() / len(rel) for u, rel in relevant.items()]
    return float(np.mean(vals))


def run_mir(name, model, train, tracks, relevant, batch=1024):
    with PeakMemory() as mem:
        t0 = time.perf_counter()
        model.fit(train, tracks)
        fit_s = time.perf_counter() - t0
        users = np.arange(train.n_users)
        lists = np.full((train.n_users, K), -1, np.int64)
        t0 = time.perf_counter()
        for s in range(0, len(users), batch):
            items, _ = model.recommend_index(users[s:s + batch], K)
            lists[s:s + batch] = items
        rec_s = time.perf_counter() - t0
    return {"method": name, "fit_s": fit_s, "recommend_s": rec_s, "users_per_s": train.n_users / rec_s,
            "recall@50": recall(lists, relevant), "peak_gib": mem.gib}, lists


def overlap(a: np.ndarray, b: np.ndarray) -> float:
    """Mean share of each user's list in ``a`` that is also in their list in ``b``."""
    return float(np.mean([len(set(x[x >= 0]) & set(y[y >= 0])) / max(1, (x >= 0).sum()) for x, y in zip(a, b)]))


def run_implicit(train, relevant, batch=1024):
    from implicit.cpu.als import AlternatingLeastSquares
    from threadpoolctl import threadpool_limits

    m = Collaborative(**ALS)
    C = m.confidence(train.matrix())
    with PeakMemory() as mem:
        with threadpool_limits(1, "blas"):
            model = AlternatingLeastSquares(factors=ALS["factors"], regularization=ALS["regularization"],
                                            iterations=ALS["iterations"], random_state=0, calculate_training_loss=False)
            t0 = time.perf_counter()
            model.fit(C, show_progress=False)
            fit_s = time.perf_counter() - t0
        users = np.arange(train.n_users)
        t0 = time.perf_counter()
        ids, _ = model.recommend(users, C, N=K, filter_already_liked_items=True)
        rec_s = time.perf_counter() - t0
    return {"method": "implicit ALS (own batch recommend)", "fit_s": fit_s, "recommend_s": rec_s,
            "users_per_s": train.n_users / rec_s, "recall@50": recall(np.asarray(ids), relevant),
            "peak_gib": mem.gib}, np.asarray(ids)


def run_dask_hybrid(args, train, tracks, relevant, lists):
    """The default hybrid again, its taste fits' blocks on a Dask cluster; the row says if the lists are the same."""
    from _dask import scheduler_address

    with scheduler_address(args) as address:
        model = Hybrid(collaborative=Collaborative(**ALS), max_tune_users=5000, scheduler=address)
        workers = f"{args.dask_workers} local workers" if args.dask_workers else address
        row, other = run_mir(f"mir hybrid, taste fits on Dask ({workers})", model, train, tracks, relevant)
    row["same_lists_as_in_process"] = float(np.mean(np.all(other == lists, axis=1)))
    return row


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--methods", default="popularity,content,als,als-auto,hybrid")
    ap.add_argument("--out", default=None)
    ap.add_argument("--threads", type=int, default=1, help="blocks of users the taste fits run at once")
    where = ap.add_mutually_exclusive_group()
    where.add_argument("--dask-workers", type=int, default=0, help="also run hybrid on a local Dask cluster")
    where.add_argument("--scheduler", default=None, metavar="ADDRESS", help="also run hybrid on this Dask cluster")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    tracks, X = synth(args.scale)
    train, relevant = temporal_split(X, 0.2)
    print(f"data: {X.n_users} users x {X.n_items} tracks, {len(X)} events ({len(train)} train), "
          f"{len(relevant)} users with held-out new tracks; built in {time.perf_counter() - t0:.1f} s", flush=True)
    makers = {"popularity": Popularity, "content": ContentBased, "als": lambda: Collaborative(**ALS),
              "content-hnsw": lambda: ContentBased(index="HNSW32,Flat"), "als-auto": Collaborative,
              "hybrid-auto": lambda: Hybrid(max_tune_users=5000, threads=args.threads),
              "hybrid": lambda: Hybrid(collaborative=Collaborative(**ALS), max_tune_users=5000, threads=args.threads),
              "content-taste": lambda: ContentTaste(threads=args.threads), "ease": EASE, "bpr": BPR}
    row, peer = run_implicit(train, relevant)
    rows = [row]
    print(rows[-1], flush=True)
    for name in args.methods.split(","):
        model = makers[name]()
        row, lists = run_mir(f"mir {name}", model, train, tracks, relevant)
        if name == "als":  # the same factors: the lists must be implicit's
            row["same_lists_as_implicit"] = overlap(lists, peer)
        cf = getattr(model, "collaborative_", model)
        if name.endswith("-auto"):  # the settings the validation search chose
            row["chosen"] = f"{cf.factors_}/{cf.regularization_:g}/{cf.alpha_:g} ({len(cf.tuning_)} fits)"
        if name == "ease":  # the ridge chosen on validation
            row["chosen"] = f"l2 {model.regularization_:g} ({len(model.tuning_)} values)"
        rows.append(row)
        print(rows[-1], flush=True)
        if name == "hybrid" and (args.dask_workers or args.scheduler):
            rows.append(run_dask_hybrid(args, train, tracks, relevant, lists))
            print(rows[-1], flush=True)
    table = pd.DataFrame(rows).set_index("method")
    print(table.to_string(float_format=lambda v: f"{v:.3f}"))
    doc = {"scale": args.scale, "threads": args.threads, "dask_workers": args.dask_workers, "users": X.n_users, "tracks": X.n_items, "events": len(X), "train_events": len(train),
           "k": K, "als": ALS, "cpus": os.cpu_count(), "python": platform.python_version(),
           "rows": json.loads(table.reset_index().to_json(orient="records"))}
    out = Path(args.out) if args.out else HERE / "results" / ("recommend.json" if args.scale == 1.0 else f"recommend-s{args.scale:g}.json")
    atomic.write_text(out, json.dumps(doc, indent=1) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
