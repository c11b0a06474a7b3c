"""`mir` command line: a thin front end that parses input, calls the library, formats output.

Each sub-command lives in its own module exposing ``register(subparsers)``; the module adds its
parser and sets ``func`` (called with the parsed namespace, returns an exit code).

Errors never reach the user as a traceback: a :class:`~mir.errors.MirError` prints its message
(which names the file or value and what to do); any other exception prints one line naming what
failed and what to try, and its traceback goes to ``last-error.log`` in the library folder (or in
``~/.cache/mir/`` when the command has no library). ``mir --debug COMMAND …`` prints it instead.
"""
from __future__ import annotations

import argparse
import errno
import importlib
import os
import sys
import traceback
from pathlib import Path

from .. import __version__, atomic
from ..errors import MirError

LOG_NAME = "last-error.log"
# what to do about an OSError, by errno
_OS_FIXES = {
    errno.ENOSPC: "free some disk space and run the command again",
    errno.EDQUOT: "free some space in your quota and run the command again",
    errno.EACCES: "check the permissions of the file and its folder",
    errno.EPERM: "check the permissions of the file and its folder",
    errno.EROFS: "the file system is read-only; use a library folder on a writable disk",
    errno.ENOENT: "check the path",
    errno.EMFILE: "too many open files; raise the limit (ulimit -n) or use fewer --workers",
}

# modules under mir.cli that register sub-commands, in help order
COMMAND_MODULES = ["library", "dataset", "train", "gate", "style", "adapt", "tag", "index", "similar", "recommend", "generate",
                   "demo", "serve"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mir", description="Music information retrieval and recommendation engine.")
    parser.add_argument("--version", action="version", version=f"mir {__version__}")
    parser.add_argument("--debug", action="store_true", help="print the traceback of an unexpected error")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"{__package__}.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"{__package__}.{name}":
                continue  # sub-command not built yet
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except MirError as exc:
        if args.debug:
            traceback.print_exc()
        print(f"mir {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"mir {args.command}: interrupted; completed work is saved, run the same command to resume", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into a program that stopped reading (`| head`)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except Exception as exc:  # anything unplanned: one line here, the traceback in a log
        if args.debug:
            traceback.print_exc()
            where = "above"
        else:
            where = f"in {save_traceback(exc, getattr(args, 'library', None))}"
        print(f"mir {args.command}: error: {explain(exc)} (traceback {where}; "
              "if this looks like a bug in mir, please report it with the traceback)", file=sys.stderr)
        return 1


def explain(exc: BaseException) -> str:
    """One line saying what failed (the file or value) and what to do, for an exception mir did not plan for."""
    if isinstance(exc, OSError) and exc.strerror:
        what = f"{exc.filename}: {exc.strerror}" if exc.filename is not None else exc.strerror
        fix = _OS_FIXES.get(exc.errno)
        return f"{what}; {fix}" if fix else what
    if isinstance(exc, UnicodeError):
        return (f"text that is not valid UTF-8 ({exc}); check the file names and text files given to mir "
                "(rename files with `convmv`, re-save text as UTF-8)")
    if isinstance(exc, MemoryError):
        return "out of memory; use fewer --workers or a machine with more memory"
    return f"unexpected {type(exc).__name__}: {exc}"


def log_path(library: str | os.PathLike | None) -> Path:
    """Where the traceback of an unexpected error goes: the library folder when there is one."""
    if library is not None and (Path(library).expanduser() / "library.json").is_file():
        return Path(library).expanduser() / LOG_NAME
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "mir" / LOG_NAME


def save_traceback(exc: BaseException, library: str | os.PathLike | None) -> str:
    """Write the traceback of ``exc`` to :func:`log_path`; returns where (or why it could not)."""
    text = f"mir {__version__}: {' '.join(sys.argv)}\n" + "".join(traceback.format_exception(exc))
    path = log_path(library)
    try:
        atomic.write_text(path, text)
    except OSError as err:
        return f"not saved: {err.strerror}; run with --debug to see it"
    return str(path)


if __name__ == "__main__":
    sys.exit(main())
