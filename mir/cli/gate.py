"""`mir train-gate`: fit a music/non-music gate for a model and write the gated checkpoint.

    mir train-gate --music DIR --nonmusic DIR [--model M] --out M2 [--max-seconds 60] [--cache DIR]
"""
from __future__ import annotations

import json
import sys
from pathlib import Path


def cmd_train_gate(args) -> int:
    import torch

    from ..models.checkpoint import default_checkpoint
    from ..train.gate import train_gate

    if args.threads:
        torch.set_num_threads(args.threads)
    model = args.model or default_checkpoint()
    report = train_gate(args.music, args.nonmusic, model, args.out, max_seconds=args.max_seconds,
                        cache_dir=args.cache, progress=not args.quiet and sys.stderr.isatty(), seed=args.seed)
    counts = ", ".join(f"{s} {c['music']}+{c['nonmusic']}" for s, c in report["clips"].items())
    print(f"train-gate: clips music+non-music: {counts}")
    print(f"train-gate: C={report['C']} (valid AUC by C: {report['valid_auc_by_C']})")
    print(f"train-gate: ROC-AUC valid {report['valid_auc']:.4f}, test {report['test_auc']:.4f}; "
          f"test per non-music kind: {report['test_auc_per_kind']}")
    print(f"train-gate: wrote {args.out} (model {report['model_id']}, from {report['base_model_id']})")
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    return 0


def register(sub) -> None:
    p = sub.add_parser("train-gate", help="fit a music/non-music gate for a model; write the model with it")
    p.add_argument("--music", type=Path, required=True, metavar="DIR",
                   help="a realmusic corpus (`mir dataset build realmusic`), split into train/valid/test")
    p.add_argument("--nonmusic", type=Path, required=True, metavar="DIR",
                   help="a nonmusic corpus (`mir dataset build nonmusic`)")
    p.add_argument("--model", "-m", type=Path, default=None,
                   help="checkpoint to gate (default: the packaged mir/models/default/default.pt)")
    p.add_argument("--out", type=Path, required=True, metavar="PATH", help="where to write the gated checkpoint")
    p.add_argument("--max-seconds", type=float, default=60.0, metavar="S",
                   help="seconds from the middle of each clip that go through the model (default 60)")
    p.add_argument("--cache", type=Path, default=None, metavar="DIR",
                   help="keep each split's features here (.npz) and reuse them on the next run")
    p.add_argument("--json", type=Path, default=None, metavar="PATH", help="also write the report as JSON")
    p.add_argument("--threads", type=int, default=None, metavar="N", help="torch threads (default: all cores)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_train_gate)
