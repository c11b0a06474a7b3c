"""`mir tag`: tag every analysed track of a library with a model; optionally write tags into the files."""
from __future__ import annotations

import sys

from ..catalog import Library
from ..models.inference import DEFAULT_BATCH_SIZE, PRECISIONS


def _progress(args) -> bool:
    return not getattr(args, "quiet", False) and sys.stderr.isatty()


def cmd_tag(args) -> int:
    from ..tagging import tag, write_file_tags

    lib = Library(args.library)
    report = tag(lib, model=args.model, n_chunks=args.chunks, workers=args.workers, scheduler=args.scheduler,
                 batch_size=args.batch_size, precision=args.precision, compile=args.compile, threads=args.threads,
                 retry_failed=args.retry_failed, progress=_progress(args))
    print(f"tag: {report.summary()}")
    for f in report.failures[:20]:
        print(f"  failed: {f['message']}", file=sys.stderr)
    if len(report.failures) > 20:
        print(f"  … {len(report.failures) - 20} more; see `mir failures {args.library}`", file=sys.stderr)
    if args.write_tags:
        entries = write_file_tags(lib, report.model_id, dry_run=args.dry_run)
        changed = [e for e in entries if e["changes"]]
        errors = [e for e in entries if e["error"]]
        verb = "would change" if args.dry_run else "changed"
        for e in changed:
            print(f"{e['path']}:")
            for key, (old, new) in sorted(e["changes"].items()):
                print(f"  {key}: {old!r} -> {new!r}")
        for e in errors:
            print(f"  not written: {e['error']}", file=sys.stderr)
        print(f"write-tags: {verb} {len(changed)} of {len(entries)} files"
              + (f", {len(errors)} failed" if errors else "")
              + (" (dry run: nothing written)" if args.dry_run else ""))
    elif args.dry_run:
        print("tag: --dry-run only applies with --write-tags", file=sys.stderr)
        return 2
    return 0


def register(sub) -> None:
    p = sub.add_parser("tag", help="tag and embed every analysed track with a model (stage 'tags')")
    p.add_argument("library", metavar="LIB")
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
                   help="write decided genre and tags into the audio files' own metadata (audio untouched)")
    p.add_argument("--dry-run", action="store_true", help="with --write-tags: print what would change, write nothing")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_tag)
