"""`mir index build|update|info`: the similarity index of a library (one per model)."""
from __future__ import annotations

import json
import time
from pathlib import Path

from ..catalog import Library

STANDALONE_FOLDER = "indexes"  # `--out` without DIR: indexes/<library>-<model id>, relative to the current directory


def _line(li, verb: str, seconds: float, folder=None) -> str:
    from ..similar.library import index_dir

    m = li.manifest
    return (f"index {verb}: model {li.model_id}, {m['count']} tracks, dimension {m['dim']}, "
            f"type {m['index_type']} ({seconds:.1f} s) -> {folder or index_dir(li.lib, li.model_id)}")


def cmd_build(args) -> int:
    from ..catalog.predictions import resolve_model_id
    from ..similar import build_library_index

    lib = Library(args.library)
    params = {k: v for k, v in (("ef_search", args.ef_search), ("nprobe", args.nprobe)) if v is not None}
    folder = None
    if args.out is not None:  # a standalone index: DIR, or indexes/<library>-<model id> here
        model_id = resolve_model_id(lib, args.model)
        folder = Path(args.out) if args.out else Path(STANDALONE_FOLDER) / f"{lib.root.name}-{model_id}"
        args.model = model_id
    start = time.monotonic()
    li = build_library_index(lib, args.model, index_type=args.type, folder=folder, **params)
    print(_line(li, "built", time.monotonic() - start, folder))
    return 0


def cmd_update(args) -> int:
    from ..similar import update_library_index

    start = time.monotonic()
    li, report = update_library_index(Library(args.library), args.model)
    verb = "built" if report["built"] else f"updated (+{report['added']} added, -{report['removed']} removed)"
    print(_line(li, verb, time.monotonic() - start))
    return 0


def cmd_info(args) -> int:
    from ..similar import index_status

    status = index_status(Library(args.library), args.model)
    if args.json:
        print(json.dumps(status, indent=1))
        return 0
    if not status["exists"]:
        print(f"model {status['model_id']}: no index (build it with `mir index build {args.library}`)")
        return 0
    m = status["manifest"]
    state = (f"stale: {status['added']} to add, {status['removed']} to remove (`mir index update {args.library}`)"
             if status["stale"] else "up to date")
    print(f"model {status['model_id']}: {m['count']} tracks, dimension {m['dim']}, type {m['index_type']}, "
          f"params {json.dumps(m['params'])}, saved {m['saved_at']}, {state}")
    return 0


def register(sub) -> None:
    p = sub.add_parser("index", help="build or update a library's similarity index (FAISS over track embeddings)")
    isub = p.add_subparsers(dest="index_command", metavar="ACTION", required=True)
    for name, func, text in (("build", cmd_build, "index every tagged track from scratch"),
                             ("update", cmd_update, "add newly tagged tracks, drop removed ones (builds if none)"),
                             ("info", cmd_info, "show the index and whether it is up to date")):
        q = isub.add_parser(name, help=text)
        q.add_argument("library", metavar="LIB")
        q.add_argument("--model", "-m", default=None,
                       help="model id (or prefix) or checkpoint whose embeddings to index (default: latest tagged)")
        if name == "build":
            q.add_argument("--type", default="auto",
                           help="auto (by size: flat up to 50k, IVF-PQ with exact re-rank beyond), exact, flat, hnsw, "
                                "ivfpq, or any FAISS factory string such as 'HNSW64,Flat'")
            q.add_argument("--ef-search", type=int, default=None, metavar="N", help="HNSW search breadth (default 128)")
            q.add_argument("--nprobe", type=int, default=None, metavar="N", help="IVF lists visited (default 32)")
            q.add_argument("--out", nargs="?", const="", default=None, metavar="DIR",
                           help="write a standalone index to DIR (load it with mir.index.load_index) instead of "
                                "LIB/indexes/<model id>; --out alone: indexes/<library name>-<model id> under the "
                                "current directory")
        if name == "info":
            q.add_argument("--json", action="store_true")
        q.set_defaults(func=func)
