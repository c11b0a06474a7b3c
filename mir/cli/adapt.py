"""`mir adapt LIB`: fine-tune the model on the library's own tracks and make it the library's model.

    mir adapt LIB [--base MODEL] [--steps N] [--batch-size N] [--max-seconds S] [--seed N] [-q]
"""
from __future__ import annotations

import sys


def cmd_adapt(args) -> int:
    import dataclasses

    import torch

    from ..catalog import Library
    from ..train.adapt import ADAPT, adapt

    torch.set_num_threads(args.threads)
    lib = Library(args.library)
    config = dataclasses.replace(ADAPT, steps=args.steps, batch_size=args.batch_size, seed=args.seed,
                                 distill_weight=args.distill_weight)
    progress = not args.quiet and sys.stderr.isatty()
    result = adapt(lib, base=args.base, config=config, max_seconds=args.max_seconds, progress=progress,
                   log=lambda line: print(f"adapt: {line}", flush=True))
    print(f"adapt: model {result.model_id} written to {result.path} in {result.seconds:.0f} s and recorded as the "
          f"library's model; run `mir tag {lib.root}` and `mir index build {lib.root}` to use it")
    return 0


def _positive(text: str) -> int:
    import argparse

    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be ≥ 1, got {value}")
    return value


def register(sub) -> None:
    p = sub.add_parser("adapt", help="fine-tune the model on this library's own tracks (self-supervised)",
                       description="Contrastive fine-tuning of the library's model (default: the packaged one) on "
                                   "the library's own unlabelled tracks, keeping its tags by distillation. The "
                                   "result goes to LIB/models/adapted.pt and becomes the model `mir tag` and "
                                   "`mir index` use for LIB. A killed run resumes when run again.")
    p.add_argument("library", metavar="LIB")
    p.add_argument("--base", default=None, metavar="MODEL",
                   help="model to start from: checkpoint or model id (default: the library's model, else the shipped one)")
    p.add_argument("--steps", type=_positive, default=200, help="training steps (default 200)")
    p.add_argument("--batch-size", type=_positive, default=32, help="tracks per step, two views each (default 32)")
    p.add_argument("--max-seconds", type=float, default=60.0, metavar="S",
                   help="decode at most S seconds from the middle of each track (default 60; bounds memory)")
    p.add_argument("--distill-weight", type=float, default=1.0, metavar="W",
                   help="weight of keeping the base model's tag and genre outputs (default 1)")
    p.add_argument("--threads", type=_positive, default=1, help="torch threads (default 1)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_adapt)
