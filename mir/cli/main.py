"""`mir` command line: a thin front end that parses input, calls the library, formats output.

Each sub-command lives in its own module exposing ``register(subparsers)``; the module adds its
parser and sets ``func`` (called with the parsed namespace, returns an exit code).
"""
from __future__ import annotations

import argparse
import importlib
import sys

from .. import __version__
from ..errors import MirError

# modules under mir.cli that register sub-commands, in help order
COMMAND_MODULES = ["library", "dataset", "train", "tag", "index", "similar", "recommend", "generate", "demo"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mir", description="Music information retrieval and recommendation engine.")
    parser.add_argument("--version", action="version", version=f"mir {__version__}")
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
        print(f"mir {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"mir {args.command}: interrupted; completed work is saved, run the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
