"""`mir recommend`, `mir recommend-eval`, `mir playlist`: recommendations and playlists from a library."""
from __future__ import annotations

import argparse
import json
import sys

from ..catalog import Library
from ..errors import ParameterError

METHODS = ["popularity", "content", "content-taste", "als", "hybrid"]


def _progress(args) -> bool:
    return not getattr(args, "quiet", False) and sys.stderr.isatty()


def _bpm(text: str | None):
    """``--bpm`` as ``mir similar`` reads it (``90-120``, ``90-``, ``-120``; ``90:120`` too) -> (low, high)."""
    from ..similar.filters import parse_range

    if not text:
        return None
    lo, hi = parse_range(text.replace(":", "-"), "--bpm")
    return (0.0 if lo is None else lo, float("inf") if hi is None else hi)


def _auto_or(kind):
    """argparse type: ``auto`` or a number of ``kind``."""
    def parse(text: str):
        if text == "auto":
            return text
        try:
            return kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected 'auto' or a {kind.__name__}, got {text!r}") from None
    parse.__name__ = kind.__name__
    return parse


def collab_summary(model) -> str | None:
    """The collaborative settings in use (chosen on validation or given), for als/hybrid models."""
    cf = getattr(model, "collaborative_", model)
    how = f"chosen on a validation split ({len(cf.tuning_)} fits)" if len(getattr(cf, "tuning_", ())) else "as given"
    if not hasattr(cf, "factors_"):
        return None
    return f"als factors {cf.factors_}, regularization {cf.regularization_:g}, alpha {cf.alpha_:g} ({how})"


def hybrid_settings(model) -> dict | None:
    """The settings a hybrid chose on its validation split (or was given); None for other methods."""
    if getattr(model, "weight_", None) is None:
        return None
    return {"weight": float(model.weight_), "cold_offset": float(model.cold_offset_), "cold_users": model.cold_users}


def hybrid_summary(model) -> str | None:
    s = hybrid_settings(model)
    if s is None:
        return None
    return (f"collaborative weight {s['weight']:.2f}, cold-track offset {s['cold_offset']:.2f}, "
            f"cold-start users: {s['cold_users']} lists")


def _collab(args) -> dict:
    return {k: v for k, v in (("factors", args.factors), ("regularization", args.regularization),
                              ("alpha", args.alpha)) if v is not None}


def _method_params(method: str, args) -> dict:
    """Constructor arguments of ``method`` from the command line (collaborative settings, hybrid weight)."""
    from ..recommend import Collaborative

    params: dict = {}
    if method == "als":
        params.update(_collab(args))
    if method == "content" and getattr(args, "content_index", None):
        params["index"] = args.content_index
    if method == "hybrid":
        params["tune_k"] = args.k
        if getattr(args, "weight", None) is not None:
            params["weight"] = args.weight
        if getattr(args, "cold_users", None):
            params["cold_users"] = args.cold_users
        if _collab(args):
            params["collaborative"] = Collaborative(**_collab(args))
    return params


def _reranker(args, tracks):
    from ..recommend import Reranker

    if not (args.diversity or args.max_per_artist or args.genre or args.tag or args.bpm or args.music_only):
        return None
    return Reranker(tracks, diversity=args.diversity, max_per_artist=args.max_per_artist, genres=args.genre,
                    tags=args.tag, bpm=_bpm(args.bpm), music_only=args.music_only)


def cmd_recommend(args) -> int:
    from ..recommend import make
    from ..recommend.batch import BatchJob
    from ..recommend.inputs import load_inputs

    lib = Library(args.library)
    inputs = load_inputs(lib, args.events, model_id=args.model)
    print(f"events: {inputs.report.summary()}", file=sys.stderr)
    rerank = _reranker(args, inputs.tracks)
    model = make(args.method, **_method_params(args.method, args))
    spec = {"method": args.method, "params": repr(model), "k": args.k, "exclude_seen": not args.keep_played,
            "rerank": None if rerank is None else {"diversity": rerank.diversity, "max_per_artist": rerank.max_per_artist,
                                                   "genres": rerank.genres, "tags": rerank.tags, "bpm": rerank.bpm,
                                                   "music_only": rerank.music_only},
            "shard_size": args.shard_size, **inputs.digest()}
    if args.scheduler and hasattr(model, "scheduler"):  # where the taste fit runs is not part of the job
        model.scheduler = args.scheduler
    job = BatchJob(args.out, spec, restart=args.restart)
    saved = job.saved_model()
    if saved is None:
        print(f"fitting {args.method} on {len(inputs.interactions)} events of {inputs.interactions.n_users} users …",
              file=sys.stderr)
        model.fit(inputs.interactions, inputs.tracks)
        if collab_summary(model):
            print(collab_summary(model), file=sys.stderr)
        if hybrid_summary(model):
            print(f"{args.method}: {hybrid_summary(model)}", file=sys.stderr)
    else:
        model = saved
        print("resuming: using the model fitted by the interrupted run", file=sys.stderr)
    report = job.run(model, list(inputs.interactions.users), k=args.k, exclude_seen=not args.keep_played,
                     rerank=rerank, shard_size=args.shard_size, scheduler=args.scheduler, progress=_progress(args))
    print(f"recommend: {report.summary()}")
    return 0


def cmd_eval(args) -> int:
    from .. import atomic
    from ..recommend import make
    from ..datasets.truth import demo_affinity
    from ..recommend.evaluate import evaluate
    from ..recommend.inputs import load_inputs

    lib = Library(args.library)
    inputs = load_inputs(lib, args.events, model_id=args.model)
    print(f"events: {inputs.report.summary()}", file=sys.stderr)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    bad = [m for m in methods if m not in METHODS]
    if bad:
        raise ParameterError(f"unknown method(s) {bad}; choose from {METHODS}")
    models = {m: make(m, **_method_params(m, args)) for m in methods}
    X = inputs.interactions
    affinity = demo_affinity(args.truth, X.users, inputs.resolve, X.items) if args.truth else None
    table = evaluate(models, X, inputs.tracks, k=args.k, holdout=args.holdout, affinity=affinity)
    k = args.k
    cols = [f"recall@{k}", f"ndcg@{k}", f"map@{k}", "coverage", "novelty", f"recall@{k}_cold_users",
            "cold_track_share_recs", "cold_track_share_relevant"]
    if affinity is not None:
        cols += [f"taste_precision@{k}", "affinity_pct"]
    cols += ["fit_s", "recommend_s"]
    a = table.attrs
    print(f"{a['users']} users, {a['items']} tracks, {a['events']} events; temporal split: last {a['holdout']:.0%} "
          f"of each user's events held out; {a['evaluated_users']} users with new held-out tracks")
    print(table[cols].to_string(float_format=lambda v: f"{v:.4f}"))
    for name, m in models.items():
        if collab_summary(m):
            print(f"{name}: {collab_summary(m)}")
        if hybrid_summary(m):
            print(f"{name} (tuned on a validation split of the training events): {hybrid_summary(m)}")
    if args.json:
        doc = {"settings": dict(a), "events": inputs.report.to_dict(),
               "methods": json.loads(table.to_json(orient="index"))}
        for name, m in models.items():
            if hybrid_settings(m):
                doc.setdefault("hybrids", {})[name] = hybrid_settings(m)
            cf = getattr(m, "collaborative_", m)
            if hasattr(cf, "factors_"):
                doc.setdefault("collaborative", {})[name] = {"factors": int(cf.factors_),
                                                             "regularization": float(cf.regularization_),
                                                             "alpha": float(cf.alpha_), "tuned_fits": len(cf.tuning_)}
        atomic.write_text(args.json, json.dumps(doc, indent=1) + "\n")
    return 0


def cmd_playlist(args) -> int:
    from ..recommend import from_library
    from ..recommend.playlist import continue_from, path_between, shortfall, write_json, write_m3u

    lib = Library(args.library)
    tracks = from_library(lib, args.model)
    seeds = [str(lib.track(s)["track_id"]) for s in args.seed]
    opts = dict(tempo_weight=args.tempo_weight, key_weight=args.key_weight, artist_gap=args.artist_gap,
                music_only=args.music_only)
    if args.to:
        if len(seeds) != 1:
            raise ParameterError("--to walks from one --seed track to another; give exactly one --seed")
        pl = path_between(tracks, seeds[0], str(lib.track(args.to)["track_id"]), args.length, **opts)
    else:
        pl = continue_from(tracks, seeds, args.length, flow=args.flow, **opts)
    for n, tid in enumerate(pl.track_ids, 1):
        i = tracks.index_of(tid)
        name = tracks.label(i)
        tempo = f"{tracks.tempo[i]:6.1f} BPM" if tracks.tempo[i] == tracks.tempo[i] else "     ? BPM"
        print(f"{n:3d}  {tid}  {tempo}  {str(tracks.key[i] or '?'):9s}  {name}")
    if pl.relaxed:
        print(f"playlist: {pl.relaxed} picks had to repeat an artist within {args.artist_gap} tracks", file=sys.stderr)
    if (short := shortfall(pl, tracks)) is not None:
        print(f"playlist: {short}")
    if args.m3u:
        write_m3u(pl, tracks, args.m3u)
    if args.json:
        write_json(pl, tracks, args.json)
    return 0


def _collab_args(p) -> None:
    p.add_argument("--factors", type=_auto_or(int), default=None, metavar="N|auto",
                   help="als/hybrid: latent factors (default auto: chosen on a validation split of the events)")
    p.add_argument("--regularization", type=_auto_or(float), default=None, metavar="L|auto",
                   help="als/hybrid: L2 regularisation (default auto)")
    p.add_argument("--alpha", type=_auto_or(float), default=None, metavar="A|auto",
                   help="als/hybrid: confidence = 1 + alpha * log(1 + plays) (default auto)")
    p.add_argument("--cold-users", choices=["prior", "content"], default=None,
                   help="hybrid: lists for users with 1-3 plays: purely content-based (default) or their taste "
                        "with the popularity prior learned from everyone's plays")
    p.add_argument("--content-index", default=None, metavar="TYPE",
                   help="method content only: take its candidates from a FAISS index of this type (flat, hnsw, auto "
                        "or a factory string) instead of the exact scan of all tracks (default); the other methods "
                        "score every track")


def _common(p) -> None:
    p.add_argument("library", metavar="LIB")
    p.add_argument("--model", default=None, metavar="MODEL_ID",
                   help="tagging model whose embeddings to use (default: the most recent one that tagged LIB)")


def register(sub) -> None:
    p = sub.add_parser("recommend", help="top-k tracks for every user of an events table (sharded, resumable)")
    _common(p)
    p.add_argument("--events", required=True, metavar="FILE", help="CSV or Parquet: user, track, timestamp[, plays]")
    p.add_argument("--out", required=True, metavar="FILE", help="output Parquet: user, rank, track_id, score")
    p.add_argument("-k", type=int, default=50, help="tracks per user (default 50)")
    p.add_argument("--method", choices=METHODS, default="hybrid", help="recommender (default hybrid)")
    p.add_argument("--weight", type=float, default=None, help="hybrid: ALS weight (>= 0) (default: tuned)")
    _collab_args(p)
    p.add_argument("--keep-played", action="store_true", help="allow tracks the user already played")
    p.add_argument("--diversity", type=float, default=0.0, help="MMR diversity in [0, 1] (default 0: off)")
    p.add_argument("--max-per-artist", type=int, default=None, metavar="N", help="at most N tracks per artist")
    p.add_argument("--genre", action="append", default=None, help="only tracks of this genre (repeatable: any of)")
    p.add_argument("--tag", action="append", default=None, help="only tracks with this tag (repeatable: all of)")
    p.add_argument("--bpm", default=None, metavar="LO-HI", help="only tracks with a tempo in this range, e.g. 90-120, 90- or -120")
    p.add_argument("--music-only", action="store_true",
                   help="only tracks the model's music gate calls music (a model gated by `mir train-gate`)")
    p.add_argument("--shard-size", type=int, default=2000, metavar="N", help="users per shard (default 2000)")
    p.add_argument("--scheduler", default=None, metavar="ADDRESS", help="run the shards and the taste fit's blocks of users on a Dask cluster (tcp://host:8786)")
    p.add_argument("--restart", action="store_true", help="discard an unfinished run of another job at --out")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_recommend)

    p = sub.add_parser("recommend-eval", help="evaluate recommenders on a per-user temporal split")
    _common(p)
    p.add_argument("--events", required=True, metavar="FILE", help="CSV or Parquet: user, track, timestamp[, plays]")
    p.add_argument("--methods", default="popularity,content,als,hybrid",
                   help=f"comma-separated, from {','.join(METHODS)} (default popularity,content,als,hybrid)")
    p.add_argument("-k", type=int, default=50, help="list length scored (default 50)")
    p.add_argument("--holdout", type=float, default=0.2, help="share of each user's last events held out (default 0.2)")
    p.add_argument("--truth", default=None, metavar="DIR",
                   help="a mirdemo collection folder: also score against its hidden tastes (tastes.json)")
    _collab_args(p)
    p.add_argument("--json", default=None, metavar="FILE", help="also write the table as JSON")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("playlist", help="a playlist continuing seed tracks, or a path from one track to another")
    _common(p)
    p.add_argument("--seed", action="append", required=True, metavar="TRACK", help="seed track (id, hash or path); repeatable")
    p.add_argument("--to", default=None, metavar="TRACK", help="path mode: walk from the --seed track to this one")
    p.add_argument("--length", type=int, default=30, help="tracks in the playlist (default 30)")
    p.add_argument("--flow", type=float, default=0.5,
                   help="continuation: pull of the previous track vs the seeds' centre, in [0, 1] (default 0.5)")
    p.add_argument("--tempo-weight", type=float, default=0.5, help="penalty on tempo jumps (default 0.5)")
    p.add_argument("--key-weight", type=float, default=0.1, help="penalty on key jumps (default 0.1)")
    p.add_argument("--artist-gap", type=int, default=3, help="no artist again within N tracks (default 3)")
    p.add_argument("--music-only", action=argparse.BooleanOptionalAction, default=None,
                   help="leave out tracks the model's music gate calls non-music (default: on when the model "
                        "has a music gate, see `mir train-gate`)")
    p.add_argument("--m3u", default=None, metavar="FILE", help="write an extended M3U playlist")
    p.add_argument("--json", default=None, metavar="FILE", help="write the playlist as JSON")
    p.set_defaults(func=cmd_playlist)
