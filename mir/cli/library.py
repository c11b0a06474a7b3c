"""Library sub-commands: scan, analyze, failures, info, export, show."""
from __future__ import annotations

import argparse
import json
import sys

import numpy as np
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


def music_text(p: float) -> str:
    """A music probability as the commands print it: ``0.68``, or ``0.06 (not music)`` below the gate's threshold."""
    from ..models.gate import MUSIC_THRESHOLD

    return f"{p:.2f}" + (" (not music)" if p < MUSIC_THRESHOLD else "")


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
    from ..catalog.predictions import tagging_state
    from ..similar import index_status

    lib = Library(args.library)
    info = lib.info()
    info["tagging"] = tagging_state(lib)
    info["indexes"] = [_index_state(index_status(lib, m["model_id"])) for m in info["tagging"]]
    if args.json:
        print(json.dumps(info, indent=1))
        return 0
    print(f"library   {info['library']}")
    print(f"tracks    {info['tracks']} present, {info['missing']} missing, {info['files']} files")
    print(f"duration  {info['duration_hours']:.2f} h")
    print("formats   " + (", ".join(f"{k}: {v}" for k, v in info["formats"].items()) or "-"))
    print("analysed  " + ", ".join(f"{k}: {v}/{info['tracks']}" for k, v in info["analysed"].items()))
    if not info["tagging"]:
        print(f"tagged    none (run `mir tag {args.library}`)")
    for m, ix in zip(info["tagging"], info["indexes"]):
        where = m["checkpoint"] or "checkpoint no longer there"
        print(f"tagged    model {m['model_id']}: {m['tagged']}/{info['tracks']} tracks ({where})")
        if not ix["exists"]:
            print(f"index     model {m['model_id']}: none (run `mir index build {args.library}`)")
        else:
            state = (f"stale: {ix['added']} to add, {ix['removed']} to remove (run `mir index update {args.library}`)"
                     if ix["stale"] else "up to date")
            print(f"index     model {m['model_id']}: {ix['tracks']} tracks, {ix['type']}, {state}")
    problems = f"{info['failures']}, warnings {info['warnings']}"
    see = f" (see `mir failures {args.library}`)" if info["failures"] or info["warnings"] else ""
    print(f"failures  {problems}{see}")
    return 0


def _index_state(status: dict) -> dict:
    manifest = status.get("manifest") or {}
    return {"model_id": status["model_id"], "exists": status["exists"], "stale": status["stale"],
            "added": status["added"], "removed": status["removed"], "tracks": manifest.get("count"),
            "type": manifest.get("index_type"), "dim": manifest.get("dim")}


def cmd_export(args) -> int:
    from ..catalog.export import export

    lib = Library(args.library)
    out = args.out or f"{lib.root.name}-tracks.{args.format}"
    written = export(lib, out, fmt=args.format, model=args.model, tags=args.tags, embeddings=args.embeddings)
    print("wrote " + ", ".join(map(str, written)))
    return 0


def cmd_show(args) -> int:
    from ..catalog.predictions import model_info, resolve_model_id, tagged_models, track_tags

    from ..errors import TrackNotFoundError
    from ..generate import describe_provenance, find_provenance

    lib = Library(args.library)
    prov = find_provenance(args.track)  # a generated piece: its provenance JSON lies beside it
    try:
        t = lib.track(args.track)
    except TrackNotFoundError:
        if prov is None:
            raise
        print(json.dumps(prov, indent=1) if args.json else describe_provenance(prov))
        return 0
    d = lib.descriptors()
    row = d[d["hash"] == t["hash"]].iloc[0]
    fields = ["track_id", "path", "status", "title", "artist", "album", "genre", "year", "format", "duration",
              "tempo", "key", "mode", "key_confidence", "loudness"]
    model_id = resolve_model_id(lib, args.model) if args.model else next(iter(tagged_models(lib)), None)
    tagged = track_tags(lib, t["hash"], model_id) if model_id else None
    warnings = lib.warnings()
    warnings = [m for h, m in zip(warnings["hash"], warnings["message"])
                if h == t["hash"]]
    if args.json:
        out = json.loads(row[fields].to_json())
        out["year"] = _year(out.get("year"))
        out["tempo_confidence"] = _tempo_confidence(row)
        out["warnings"] = warnings
        if tagged is not None:
            out["model"] = {k: tagged[k] for k in ("model_id", "genre", "tags", "genre_probs", "tag_probs", "n_chunks",
                                                   "music") if k in tagged}
        if prov is not None:
            out["provenance"] = prov
        print(json.dumps(out, indent=1, ensure_ascii=False))
        return 0
    for name, value in _shown(row):
        print(f"{name:10s} {value}")
    for w in warnings:
        print(f"warning    {w}")
    if model_id is None:
        print("model      (no tags yet: run `mir tag`)")
    elif tagged is None:
        print(f"model      {model_id} (this track is not tagged yet: run `mir tag`)")
    else:
        _show_tags(tagged, row, model_info(lib, model_id), all_tags=args.all_tags)
    if prov is not None:
        print(describe_provenance(prov))
    return 0


def _year(value) -> int | None:
    try:
        return int(float(value))
    except (TypeError, ValueError):
        return None


def _tempo_confidence(row) -> float | None:
    from ..features.confidence import tempo_confidence

    rhythm = row.get("rhythm")
    return round(tempo_confidence(rhythm), 3) if isinstance(rhythm, (list, np.ndarray)) and len(rhythm) else None


def _shown(row) -> list[tuple[str, str]]:
    """``mir show``'s lines for the catalogue and descriptor fields: units, the year as a number, the key
    spelt as musicians write it, and a measurement too unsure to overrule a tag marked as such."""
    from ..features.confidence import KEY_CONFIDENT, TEMPO_CONFIDENT
    from ..features.keys import key_name

    def text(v) -> str:
        return "" if v is None or (isinstance(v, float) and v != v) or v == "nan" else str(v)

    def num(v) -> float | None:
        try:
            v = float(v)
        except (TypeError, ValueError):
            return None
        return v if v == v else None

    out = [(f, text(row[f])) for f in ("track_id", "path", "status", "title", "artist", "album", "genre")]
    out.append(("year", text(_year(row["year"]))))
    out.append(("format", text(row["format"])))
    duration = num(row["duration"])
    out.append(("duration", f"{duration:.1f} s" if duration is not None else ""))
    tempo, confidence = num(row["tempo"]), _tempo_confidence(row)
    if tempo:
        sure = confidence is not None and confidence >= TEMPO_CONFIDENT
        how = "" if confidence is None else f" (beat periodicity {confidence:.2f}" + (
            ")" if sure else f" < {TEMPO_CONFIDENT}: uncertain)")
        out.append(("tempo", f"{tempo:.1f} BPM{how}"))
    else:
        out.append(("tempo", "no steady pulse" if tempo == 0 else ""))
    key_conf = num(row["key_confidence"])
    name = key_name(row["key"], row["mode"])
    if name and key_conf:
        out.append(("key", f"{name} (confidence {key_conf:.2f}"
                           + (")" if key_conf >= KEY_CONFIDENT else f" < {KEY_CONFIDENT}: uncertain)")))
    else:
        out.append(("key", "no tonal content" if key_conf == 0 else ""))
    loudness = num(row["loudness"])
    out.append(("loudness", "" if loudness is None else f"{loudness:.1f} LUFS" if loudness > float("-inf") else "silent"))
    return out


def _show_tags(tagged: dict, row, info: dict, *, all_tags: bool) -> None:
    """The model's genre and tags; with ``all_tags`` every tag with its threshold, and why each
    exclusive group's member won."""
    from ..models.decisions import Measured, decide

    top = sorted(tagged["genre_probs"].items(), key=lambda kv: -kv[1])[:3]
    print(f"model      {tagged['model_id']} ({tagged['n_chunks']} chunks, {tagged['precision']})")
    print(f"pred genre {tagged['genre']} (" + ", ".join(f"{g} {p:.2f}" for g, p in top) + ")")
    decided = ", ".join(f"{name} {tagged['tag_probs'][name]:.2f}" for name in tagged["tags"])
    print(f"pred tags  {decided or '-'}")
    if tagged.get("music") is not None:
        print(f"music      {music_text(tagged['music'])}")
    if not all_tags:
        return
    threshold = dict(zip(info["tags"], info["thresholds"]))
    for name, p in sorted(tagged["tag_probs"].items(), key=lambda kv: -kv[1]):
        mark = "decided" if name in tagged["tags"] else ""
        cmp = ">=" if p >= threshold[name] else "< "
        print(f"  {name:12s} {p:.2f} {cmp} {threshold[name]:.2f}  {mark}")
    probs = [[tagged["tag_probs"][t] for t in info["tags"]]]
    why = decide(probs, info["thresholds"], info["tags"], measured=[Measured.from_descriptors(row)])[0].why
    for group, reason in why.items():
        print(f"  {group}: {reason}")


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

    p = sub.add_parser("export", help="export tracks with descriptors (and a model's tags and embeddings)")
    p.add_argument("library", metavar="LIB")
    p.add_argument("--format", choices=["csv", "parquet", "json"], default="csv")
    p.add_argument("--out", "-o", default=None, help="output file (default: <library>-tracks.<format>)")
    p.add_argument("--tags", action="store_true",
                   help="add the model's genre, decided tags and every tag and genre probability")
    p.add_argument("--embeddings", action="store_true",
                   help="add the embeddings: a fixed-size list column in parquet, <out>.embeddings.npy "
                        "plus <out>.embeddings.ids.txt for csv and json")
    p.add_argument("--model", "-m", default=None,
                   help="whose tags and embeddings: id (prefix) or checkpoint file (default: the most recently tagged)")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("show", help="one track's metadata, descriptors (BPM, key) and model tags")
    p.add_argument("library", metavar="LIB")
    p.add_argument("track", metavar="TRACK", help="track id (or prefix), content hash or file path")
    p.add_argument("--model", "-m", default=None,
                   help="tags of this model: id (prefix) or checkpoint file (default: the most recently tagged)")
    p.add_argument("--all-tags", action="store_true",
                   help="every tag's probability against its threshold, and why each exclusive group's tag won")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_show)
