"""Library sub-commands: scan, analyze, failures, info, export, show."""
from __future__ import annotations

import argparse
import json
import sys

import pandas as pd

from ..catalog import Library, analyze


def _progress(args) -> bool:
    return not getattr(args, "quiet", False) and sys.stderr.isatty()


def positive_workers(text: str) -> int:
    """argparse type of ``--workers``: a whole number >= 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of worker processes >= 1, got {text!r} "
                                         "(leave it out to use every core)")
    return value


def _listed(kind: str, rows: list[tuple[str, str]], library: str) -> None:
    for _, msg in rows[:20]:
        print(f"  {kind}: {msg}", file=sys.stderr)
    if len(rows) > 20:
        print(f"  … {len(rows) - 20} more; see `mir failures {library}`", file=sys.stderr)


def cmd_scan(args) -> int:
    lib = Library.open_or_create(args.library)
    report = lib.scan(args.paths, progress=_progress(args))
    print(f"scan: {report.summary()}")
    _listed("unreadable", report.failures, args.library)
    _listed("warning", report.warnings, args.library)
    return 0


def cmd_analyze(args) -> int:
    lib = Library(args.library)
    report = analyze(lib, workers=args.workers, progress=_progress(args), retry_failed=args.retry_failed,
                     scheduler=args.scheduler)
    print(f"analyze: {report.summary()}")
    for f in report.failures[:20]:
        print(f"  failed: {f['message']}", file=sys.stderr)
    if len(report.failures) > 20:
        print(f"  … {len(report.failures) - 20} more; see `mir failures {args.library}`", file=sys.stderr)
    _listed("warning", [(None, m) for m in report.warnings], args.library)
    return 0


def cmd_failures(args) -> int:
    lib = Library(args.library)
    failures, warnings = lib.failures(), lib.warnings()
    if args.json:
        rows = _records(failures.assign(level="error"))
        rows += _records(warnings.rename(columns={"warning": "error"}).assign(level="warning"))
        print(json.dumps(rows, indent=1, ensure_ascii=False))
        return 0
    if failures.empty:
        print("no failures")
    else:
        print(table(failures, ["track_id", "stage", "error", "message"]))
    if not warnings.empty:
        print("\nwarnings (analysed with a caveat):")
        print(table(warnings, ["track_id", "stage", "warning", "message"]))
    return 0


def table(frame: pd.DataFrame, columns: list[str]) -> str:
    """Rows of ``columns`` as text: each column as wide as its widest cell, the last one not padded."""
    cells = [columns] + [["-" if v is None or v == "" or v != v else str(v) for v in row]
                         for row in frame[columns].itertuples(index=False)]
    widths = [max(len(r[i]) for r in cells) for i in range(len(columns) - 1)]
    return "\n".join("  ".join([*(c.ljust(w) for c, w in zip(r, widths)), r[-1]]) for r in cells)


def _records(frame: pd.DataFrame) -> list[dict]:
    """JSON-ready rows of ``frame`` (NaN as null, slashes not escaped)."""
    return json.loads(frame.to_json(orient="records"))


def cmd_info(args) -> int:
    info = Library(args.library).info()
    if args.json:
        print(json.dumps(info, indent=1))
        return 0
    print(f"library   {info['library']}")
    print(f"tracks    {info['tracks']} present, {info['missing']} missing, {info['files']} files")
    print(f"duration  {info['duration_hours']:.2f} h")
    print("formats   " + (", ".join(f"{k}: {v}" for k, v in info["formats"].items()) or "-"))
    print("analysed  " + ", ".join(f"{k}: {v}/{info['tracks']}" for k, v in info["analysed"].items()))
    problems = f"{info['failures']}, warnings {info['warnings']}"
    see = f" (see `mir failures {args.library}`)" if info["failures"] or info["warnings"] else ""
    print(f"failures  {problems}{see}")
    return 0


def cmd_export(args) -> int:
    out = args.out or f"{Library(args.library).root.name}-tracks.{args.format}"
    path = Library(args.library).export(out, fmt=args.format)
    print(f"wrote {path}")
    return 0


def cmd_show(args) -> int:
    from ..catalog.predictions import resolve_model_id, tagged_models, track_tags

    lib = Library(args.library)
    t = lib.track(args.track)
    d = lib.descriptors()
    row = d[d["hash"] == t["hash"]].iloc[0]
    fields = ["track_id", "path", "status", "title", "artist", "album", "genre", "year", "format", "duration",
              "tempo", "key", "mode", "loudness"]
    model_id = resolve_model_id(lib, args.model) if args.model else next(iter(tagged_models(lib)), None)
    tagged = track_tags(lib, t["hash"], model_id) if model_id else None
    warnings = lib.warnings()
    warnings = [m for h, m in zip(warnings["hash"], warnings["message"])
                if h == t["hash"]]
    if args.json:
        out = json.loads(row[fields].to_json())
        out["warnings"] = warnings
        if tagged is not None:
            out["model"] = {k: tagged[k] for k in ("model_id", "genre", "tags", "genre_probs", "tag_probs", "n_chunks")}
        print(json.dumps(out, indent=1))
        return 0
    for f in fields:
        v = row[f]
        if isinstance(v, float):
            v = f"{v:.2f}"
        print(f"{f:10s} {'' if v is None or (isinstance(v, str) and v == 'nan') else v}")
    for w in warnings:
        print(f"warning    {w}")
    if model_id is None:
        print("model      (no tags yet: run `mir tag`)")
    elif tagged is None:
        print(f"model      {model_id} (this track is not tagged yet: run `mir tag`)")
    else:
        top = sorted(tagged["genre_probs"].items(), key=lambda kv: -kv[1])[:3]
        print(f"model      {model_id} ({tagged['n_chunks']} chunks, {tagged['precision']})")
        print(f"pred genre {tagged['genre']} (" + ", ".join(f"{g} {p:.2f}" for g, p in top) + ")")
        decided = ", ".join(f"{name} {tagged['tag_probs'][name]:.2f}" for name in tagged["tags"])
        print(f"pred tags  {decided or '-'}")
        others = sorted(((p, n) for n, p in tagged["tag_probs"].items() if n not in tagged["tags"]), reverse=True)
        if others and args.all_tags:
            print("below thr  " + ", ".join(f"{n} {p:.2f}" for p, n in others))
    return 0


def register(sub) -> None:
    p = sub.add_parser("scan", help="add audio files under PATH… to library LIB (created if needed)")
    p.add_argument("library", metavar="LIB")
    p.add_argument("paths", metavar="PATH", nargs="+")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_scan)

    p = sub.add_parser("analyze", help="compute descriptors and log-mels for every track not yet done")
    p.add_argument("library", metavar="LIB")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--workers", type=positive_workers, default=None, help="worker processes (default: all cores)")
    where.add_argument("--scheduler", default=None, metavar="ADDRESS",
                       help="run on a Dask cluster (tcp://host:8786); audio and library on a filesystem all workers see")
    p.add_argument("--retry-failed", action="store_true", help="retry tracks that failed before")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_analyze)

    p = sub.add_parser("failures", help="list files that failed a stage (file, stage, error), then warnings")
    p.add_argument("library", metavar="LIB")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_failures)

    p = sub.add_parser("info", help="counts, durations, formats, analysis progress, failures")
    p.add_argument("library", metavar="LIB")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("export", help="export tracks with descriptors")
    p.add_argument("library", metavar="LIB")
    p.add_argument("--format", choices=["csv", "parquet", "json"], default="csv")
    p.add_argument("--out", "-o", default=None, help="output file (default: <library>-tracks.<format>)")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("show", help="one track's metadata, descriptors (BPM, key) and model tags")
    p.add_argument("library", metavar="LIB")
    p.add_argument("track", metavar="TRACK", help="track id (or prefix), content hash or file path")
    p.add_argument("--model", "-m", default=None,
                   help="tags of this model: id (prefix) or checkpoint file (default: the most recently tagged)")
    p.add_argument("--all-tags", action="store_true", help="also list the tags below their thresholds")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_show)
