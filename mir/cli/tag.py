"""`mir tag`: tag every analysed track of a library with a model; optionally write tags into the files."""
from __future__ import annotations

import json
import os
import sys

from ..catalog import Library
from ..models.defaults import DEFAULT_BATCH_SIZE, PRECISIONS


def _progress(args) -> bool:
    return not getattr(args, "quiet", False) and sys.stderr.isatty()


def cmd_tag(args) -> int:
    from ..tagging import tag

    targets = args.library
    if len(targets) > 1 or os.path.isfile(targets[0]):
        return _loose_files(targets, args)
    args.library = targets[0]
    if args.dry_run and not (args.write_tags or args.restore_tags):
        print("tag: --dry-run only applies with --write-tags or --restore-tags", file=sys.stderr)
        return 2
    if (args.overwrite or args.set_genre) and not args.write_tags:
        print("tag: --set-genre and --overwrite only apply with --write-tags", file=sys.stderr)
        return 2
    if args.overwrite and not args.set_genre:
        print("tag: --overwrite only applies with --set-genre (mir's own MIR_* fields are always updated)",
              file=sys.stderr)
        return 2
    lib = Library(args.library)
    if args.restore_tags:
        return _restore(lib, args)
    report = tag(lib, model=args.model, n_chunks=args.chunks, workers=args.workers, scheduler=args.scheduler,
                 batch_size=args.batch_size, precision=args.precision, compile=args.compile, threads=args.threads,
                 retry_failed=args.retry_failed, progress=_progress(args))
    print(f"tag: {report.summary()}")
    for f in report.failures[:20]:
        print(f"  failed: {f['message']}", file=sys.stderr)
    if len(report.failures) > 20:
        print(f"  … {len(report.failures) - 20} more; see `mir failures {args.library}`", file=sys.stderr)
    if args.write_tags:
        _write(lib, report.model_id, args)
    return 0


def _loose_files(paths: list[str], args) -> int:
    """``mir tag FILE…``: print what the model and the descriptors make of audio files (no library)."""
    from ..tagging import tag_files

    used = [o for o, v in (("--write-tags", args.write_tags), ("--restore-tags", args.restore_tags),
                           ("--dry-run", args.dry_run), ("--set-genre", args.set_genre)) if v]
    if used:
        print(f"tag: {used[0]} needs a library (mir tag LIB …); files given: {paths[0]} …", file=sys.stderr)
        return 2
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing:
        print(f"tag: {missing[0]} is not a file; give one library folder, or audio files", file=sys.stderr)
        return 2
    rows = tag_files(paths, model=args.model)
    if args.json:
        print(json.dumps(rows, indent=1, ensure_ascii=False))
    else:
        _print_loose(rows)
    return 1 if any(r["error"] for r in rows) else 0


def _print_loose(rows: list[dict]) -> None:
    """The table of ``mir tag FILE…``: one line per file; a music column when the model has a gate."""
    from ..features.keys import key_name
    from ..models.gate import MUSIC_THRESHOLD

    width = min(40, max(len(os.path.basename(r["path"])) for r in rows))
    gwidth = max([16] + [len(r["genre"]) for r in rows if r["genre"]])
    gated = any(r["music"] is not None for r in rows)
    print(f"{'file':{width}}  {'genre':{gwidth}}  {'BPM':>5}  {'key':10}  " + ("music      " if gated else "") + "tags")
    for r in rows:
        name = os.path.basename(r["path"])
        name = name if len(name) <= width else name[: width - 1] + "…"
        if r["error"]:
            print(f"{name:{width}}  error: {r['error']}")
            continue
        bpm = f"{r['bpm']:5.0f}" if r["bpm"] else "    -"
        music = ""
        if gated:
            music = f"{r['music']:.2f}" + (" (no)" if r["music"] < MUSIC_THRESHOLD else "     ") + "  "
        print(f"{name:{width}}  {r['genre']:{gwidth}}  {bpm}  {key_name(r['key'], r['mode']) or '-':10}  {music}"
              f"{', '.join(r['tags']) or '-'}")
    note = f"; (no): music probability below {MUSIC_THRESHOLD}, not music to the music gate" if gated else ""
    print(f"model {rows[0]['model_id']}; files are not added to any library{note}")


def _write(lib: Library, model_id: str, args) -> None:
    from ..tagging import write_file_tags

    entries = write_file_tags(lib, model_id, dry_run=args.dry_run, set_genre=args.set_genre,
                              overwrite=args.overwrite)
    changed = [e for e in entries if e["changes"]]
    errors = [e for e in entries if e["error"]]
    kept = [e for e in entries if e["kept"]]
    _print_changes(changed, kept=True)
    for e in errors:
        print(f"  not written: {e['error']}", file=sys.stderr)
    verb = "would change" if args.dry_run else "changed"
    print(f"write-tags: {verb} {len(changed)} of {len(entries)} files"
          + (f", kept the file's own genre in {len(kept)} (--overwrite to replace it)" if kept else "")
          + (f", {len(errors)} failed" if errors else "")
          + (" (dry run: nothing written)" if args.dry_run else
             f"; old values backed up: `mir tag {args.library} --restore-tags` puts them back" if changed else ""))


def _restore(lib: Library, args) -> int:
    from ..tagging import restore_file_tags

    entries = restore_file_tags(lib, dry_run=args.dry_run)
    changed = [e for e in entries if e["changes"]]
    errors = [e for e in entries if e["error"]]
    _print_changes(changed)
    for e in entries:
        for key, (now, mine) in sorted(e["left"].items()):
            print(f"  left {e['path']}: {key} is {now!r}, changed since mir wrote {mine!r}", file=sys.stderr)
    for e in errors:
        print(f"  not restored: {e['error']}", file=sys.stderr)
    verb = "would restore" if args.dry_run else "restored"
    print(f"restore-tags: {verb} {len(changed)} of {len(entries)} files backed up"
          + (f", {len(errors)} failed" if errors else "") + (" (dry run: nothing written)" if args.dry_run else ""))
    return 1 if errors else 0


def _print_changes(entries: list[dict], *, kept: bool = False) -> None:
    for e in entries:
        print(f"{e['path']}:")
        for key, (old, new) in sorted(e["changes"].items()):
            print(f"  {key}: {old!r} -> {new!r}")
        for key, (old, new) in sorted(e.get("kept", {}).items()) if kept else ():
            print(f"  {key}: {old!r} kept (mir's value {new!r} is in mir_{key})")


def register(sub) -> None:
    p = sub.add_parser("tag", help="tag and embed every analysed track with a model (stage 'tags'); "
                                   "or print the tags, genre, BPM and key of audio files")
    p.add_argument("library", metavar="LIB | FILE", nargs="+",
                   help="a library folder, or audio files to tag without a library (printed, not stored)")
    p.add_argument("--json", action="store_true", help="with FILEs: JSON instead of a table")
    p.add_argument("--model", "-m", default=None,
                   help="checkpoint file, or id (prefix) of a model that tagged LIB before "
                        "(default: the packaged mir/models/default/default.pt)")
    p.add_argument("--chunks", type=int, default=None, metavar="N",
                   help="N evenly spaced chunks per track (faster); default: all non-overlapping chunks")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--workers", type=int, default=None, metavar="N",
                       help="N worker processes, one torch thread each (default 1: this process, all cores)")
    where.add_argument("--scheduler", default=None, metavar="ADDRESS",
                       help="run on a Dask cluster (tcp://host:8786); workers must see LIB and the model")
    p.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE, metavar="N",
                   help=f"chunks per forward pass (default {DEFAULT_BATCH_SIZE})")
    p.add_argument("--precision", choices=PRECISIONS, default="fp32",
                   help="fp32 (default), bf16 autocast, or auto (bf16 where the CPU has native bf16)")
    p.add_argument("--threads", type=int, default=None, metavar="N",
                   help="torch threads per process (default: all cores in-process, 1 per worker)")
    p.add_argument("--compile", action="store_true", help="torch.compile the model (slow start)")
    p.add_argument("--retry-failed", action="store_true", help="retry tracks whose tagging failed before")
    p.add_argument("--write-tags", action="store_true",
                   help="write the predicted genre and decided tags into the files' metadata, in mir's own fields "
                        "MIR_GENRE, MIR_TAGS, MIR_MODEL (audio untouched; old values backed up in LIB)")
    p.add_argument("--set-genre", action="store_true",
                   help="with --write-tags: also fill the file's own genre field where it is empty")
    p.add_argument("--overwrite", action="store_true",
                   help="with --set-genre: replace a genre the file already has")
    p.add_argument("--restore-tags", action="store_true",
                   help="put back the metadata values --write-tags changed (from LIB's backup); tags nothing")
    p.add_argument("--dry-run", action="store_true",
                   help="with --write-tags or --restore-tags: print what would change, write nothing")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_tag)
