"""`mir train-style`: give a model a style embedding fitted on a real corpus and write the new checkpoint.

    mir train-style --music DIR [--model M] --out M2 [--block I] [--mfcc 20] [--mfcc-weight 0.7] [--whiten 0.7]
"""
from __future__ import annotations

import json
import sys
from pathlib import Path


def cmd_train_style(args) -> int:
    import torch

    from ..models.checkpoint import default_checkpoint
    from ..train.style import train_style

    if args.threads:
        torch.set_num_threads(args.threads)
    report = train_style(args.music, args.model or default_checkpoint(), args.out, block=args.block,
                         n_mfcc=args.mfcc, weight=args.mfcc_weight, whiten=args.whiten, max_seconds=args.max_seconds,
                         progress=not args.quiet and sys.stderr.isatty())
    print(f"train-style: block {report['block']}, {report['n_mfcc']} MFCCs weighted {report['mfcc_weight']}, "
          f"whitening shrinkage {report['whiten']}; "
          f"standardised on {report['train_tracks']} train tracks")
    if "valid_knn5_package" in report:
        k = report["valid_knn5_package"]
        print(f"train-style: valid 5-NN package accuracy ({report['valid_tracks']} tracks): style {k['style']:.3f}, "
              f"backbone {k['backbone']:.3f}, chance {k['chance']:.3f}")
    print(f"train-style: wrote {args.out} (model {report['model_id']}, from {report['base_model_id']})")
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    return 0


def register(sub) -> None:
    p = sub.add_parser("train-style", help="give a model a style embedding fitted on a real corpus; write the model")
    p.add_argument("--music", type=Path, required=True, metavar="DIR",
                   help="a realmusic corpus (`mir dataset build realmusic`): train split standardises, valid reports")
    p.add_argument("--model", "-m", type=Path, default=None,
                   help="checkpoint to extend (default: the packaged mir/models/default/default.pt)")
    p.add_argument("--out", type=Path, required=True, metavar="PATH", help="where to write the new checkpoint")
    p.add_argument("--block", type=int, default=None, metavar="I",
                   help="backbone block whose statistics are used (default: the last)")
    p.add_argument("--mfcc", type=int, default=20, metavar="N", help="MFCCs in the statistics (default 20)")
    p.add_argument("--mfcc-weight", type=float, default=0.7, metavar="W",
                   help="weight of the MFCC part against the block part (default 0.7)")
    p.add_argument("--whiten", type=float, default=0.7, metavar="S",
                   help="whiten the embedding with covariance shrinkage S in (0, 1]; 0 = no whitening (default 0.7)")
    p.add_argument("--max-seconds", type=float, default=60.0, metavar="S",
                   help="seconds from the middle of each track that go through the model (default 60)")
    p.add_argument("--json", type=Path, default=None, metavar="PATH", help="also write the report as JSON")
    p.add_argument("--threads", type=int, default=None, metavar="N", help="torch threads (default: all cores)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_train_style)
