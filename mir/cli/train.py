"""`mir train` and `mir evaluate`: fit a tagger on a labelled library; score a model on a split.

    mir train LIB --labels labels.csv [--preset short_chunk|fast|debug] [--out model.pt] [--splits FILE]
                  [--epochs N] [--seed N] [--resume | --restart] [augmentation / optimisation flags]
    mir train LIB --labels labels.csv --track-head BACKBONE.pt [--track-hidden 128] [--out model.pt] …
    mir evaluate LIB [--model model.pt|MODEL_ID] --labels labels.csv [--splits FILE] [--split test] [--out DIR]
"""
from __future__ import annotations

import sys
import warnings


def _progress(args) -> bool:
    return not getattr(args, "quiet", False) and sys.stderr.isatty()


def _show_warnings() -> None:
    """Print warnings as one plain line each (``mir train: warning: …``), not Python's two-line format."""
    def show(message, category, filename, lineno, file=None, line=None):
        print(f"warning: {message}", file=sys.stderr)

    warnings.showwarning = show
    warnings.simplefilter("default")


def cmd_train(args) -> int:
    import torch

    from ..catalog import Library
    from ..train import Augment, TrainConfig, prepare, train

    _show_warnings()
    from ..train.loop import suggest_threads

    torch.set_num_threads(args.threads or suggest_threads())
    aug = Augment() if not args.no_augment else Augment.off()
    aug = Augment(
        gain_db=0.0 if args.no_gain else aug.gain_db,
        noise=0.0 if args.no_noise else aug.noise,
        time_masks=0 if args.no_time_mask else aug.time_masks,
        freq_masks=0 if args.no_freq_mask else aug.freq_masks,
        shift=not (args.no_shift or args.no_augment),
    )
    config = TrainConfig(
        model=args.preset, epochs=30 if args.epochs is None else args.epochs, batch_size=args.batch_size, lr=args.lr,
        chunks_per_track=args.chunks_per_track, patience=8 if args.patience is None else args.patience,
        balance=args.balance,
        augment=aug, seed=args.seed, precision=args.precision, val_chunks=args.val_chunks,
        chunk_frames=args.chunk_frames, freeze_backbone=args.freeze_backbone,
    )
    if args.freeze_backbone and (args.track_head or args.ssl or not args.base):
        from ..errors import ParameterError

        raise ParameterError("--freeze-backbone keeps the backbone of --base MODEL while the tag and genre heads train; "
                             "it needs --base, and does not go with --track-head (always frozen) or --ssl (trains it)")
    lib = Library(args.library)
    data = prepare(lib, args.labels, splits=args.splits, progress=_progress(args))
    if args.track_head:
        return _train_track_head(args, data)
    if args.ssl:
        return _train_ssl(args, data)
    counts = data.counts()
    print(f"train: {len(data.labels)} tracks (train {counts['train']}, valid {counts['valid']}, test {counts['test']}), "
          f"{len(data.labels.tags)} tags, {len(data.labels.genres)} genres, log-mels {data.bank.nbytes / 1e6:.0f} MB "
          f"in RAM; model {config.model}, {torch.get_num_threads()} threads")
    resume = True if args.resume else (False if args.restart else None)
    result = train(data, args.out, config=config, resume=resume, progress=_progress(args),
                   log=lambda line: print(line, flush=True), base=args.base)
    m = result.metrics
    print(f"train: best epoch {result.best_epoch} of {m['epochs_run']}"
          + (" (stopped early)" if result.stopped_early else "") + f"; wrote {result.path} (model {result.model_id})")
    _print_scores(m)
    return 0


def _train_track_head(args, data) -> int:
    from ..train.track_head import HeadConfig, train_track_head

    defaults = HeadConfig()
    config = HeadConfig(hidden=args.track_hidden, embedding=args.track_embedding, epochs=defaults.epochs if args.epochs is None else args.epochs,
                        patience=defaults.patience if args.patience is None else args.patience, seed=args.seed)
    result = train_track_head(data, args.track_head, args.out, config=config, log=lambda line: print(line, flush=True))
    print(f"train: track head on backbone {result.backbone_id}: best epoch {result.best_epoch} of "
          f"{len(result.history)} in {result.seconds:.0f} s; wrote {result.path} (model {result.model_id})")
    _print_scores(result.metrics)
    return 0


def _train_ssl(args, data) -> int:
    from ..train.contrastive import SSLConfig, WaveBank, audio_tracks, train_ssl
    from ..models.checkpoint import default_checkpoint

    tracks = audio_tracks(args.ssl)
    bank = WaveBank.load([p for p, _ in tracks], groups=[g for _, g in tracks], max_seconds=args.ssl_max_seconds,
                         progress=_progress(args), log=lambda line: print(f"train: {line}", flush=True))
    print(f"train: contrastive on {len(bank)} tracks ({bank.seconds / 3600:.2f} h) from {args.ssl}, replaying "
          f"{len(data.index('train'))} labelled training tracks; {args.steps} steps", flush=True)
    config = SSLConfig(steps=args.steps, batch_size=args.ssl_batch, supervised_weight=args.supervised_weight,
                       seed=args.seed, lr=args.ssl_lr, group_weight=args.group_weight)
    result = train_ssl(args.base or default_checkpoint(), bank, args.out, config=config, replay=data,
                       progress=_progress(args), log=lambda line: print(f"train: {line}", flush=True))
    print(f"train: wrote {result.path} (model {result.model_id}) in {result.seconds:.0f} s; train a track head "
          f"on it with --track-head {result.path}")
    return 0


def _print_scores(m) -> None:
    for split in ("valid", "test"):
        if split in m:
            s = m[split]
            line = f"  {split:5s} tags macro ROC-AUC {s['tags/roc_auc_macro']:.4f}  PR-AUC {s['tags/pr_auc_macro']:.4f}"
            if "genre/accuracy" in s:
                line += f"  genre accuracy {s['genre/accuracy']:.4f}  balanced {s['genre/balanced_accuracy']:.4f}"
            if "genre_top/accuracy" in s:
                line += f"  top level {s['genre_top/accuracy']:.4f}"
            print(line)


def cmd_evaluate(args) -> int:
    import json

    from ..catalog import Library
    from ..catalog.predictions import resolve_model
    from ..train.evaluate import evaluate, format_table, write_report

    _show_warnings()
    lib = Library(args.library)
    scores = evaluate(lib, resolve_model(lib, args.model, tagged=False).checkpoint, args.labels, splits=args.splits, split=args.split,
                      n_chunks=args.chunks, precision=args.precision)
    if args.json:
        from ..train.evaluate import _json_safe

        print(json.dumps(_json_safe(scores), indent=1))
    else:
        print(format_table(scores))
    if args.out:
        paths = write_report(scores, args.out)
        print("wrote " + ", ".join(str(p) for p in paths), file=sys.stderr if args.json else sys.stdout)
    return 0


def register(sub) -> None:
    from ..models.builders import TRACK_EMBEDDINGS  # torch-free

    p = sub.add_parser("train", help="train a tagger (tags + genre) on a labelled library",
                       description="Train a tagger on the analysed tracks of LIB labelled in a CSV "
                                   "(track,genre,tags). Checkpoints every epoch to <out>.last.pt; "
                                   "re-running the same command resumes.")
    p.add_argument("library", metavar="LIB")
    p.add_argument("--labels", required=True, metavar="CSV", help="labels file: track,genre,tags (tags separated by |)")
    p.add_argument("--preset", default="fast", choices=["short_chunk", "fast", "debug"],
                   help="architecture preset (default fast: 0.65 M params, 8x cheaper than short_chunk)")
    p.add_argument("--out", "-o", default="model.pt", help="checkpoint to write (default model.pt)")
    p.add_argument("--splits", default=None, metavar="FILE",
                   help="CSV or Parquet with columns track,split (train/valid/test); default: 80/10/10 by content hash")
    p.add_argument("--epochs", type=int, default=None, help="epochs (default 30; 300 with --track-head)")
    p.add_argument("--track-head", default=None, metavar="BACKBONE",
                   help="instead of training a CNN, train a track-level head (pooled chunk outputs + chroma, "
                        "rhythm and tempo descriptors) on this trained checkpoint's frozen backbone")
    p.add_argument("--base", default=None, metavar="MODEL",
                   help="checkpoint to start from: with --ssl its whole model (default: the shipped model); otherwise "
                        "its backbone, and its tag/genre heads where their vocabularies equal the labels' (default: "
                        "random weights)")
    p.add_argument("--freeze-backbone", action="store_true",
                   help="with --base: keep its backbone as it is and train only the tag and genre heads")
    s = p.add_argument_group("self-supervised (contrastive) training on unlabelled audio, with LIB's labels replayed")
    s.add_argument("--ssl", default=None, metavar="DIR|LIB",
                   help="fine-tune a model's backbone contrastively on this unlabelled audio: a corpus from `mir dataset "
                        "build` (its train split), a library, or any folder of audio files")
    s.add_argument("--steps", type=int, default=1000, help="contrastive steps (default 1000)")
    s.add_argument("--ssl-batch", type=int, default=32, metavar="N", help="tracks per step, two views each (default 32)")
    s.add_argument("--ssl-lr", type=float, default=3e-4, help="AdamW learning rate (default 3e-4)")
    s.add_argument("--supervised-weight", type=float, default=1.0, metavar="W",
                   help="weight of the replayed supervised loss on LIB's labelled tracks (0: none; default 1)")
    s.add_argument("--group-weight", type=float, default=0.0, metavar="W",
                   help="weight of the same-group loss: tracks of one package (corpus) or folder (album) belong "
                        "together, which keeps what a production or style shares (0: off; default 0)")
    s.add_argument("--ssl-max-seconds", type=float, default=None, metavar="S",
                   help="decode at most S seconds of each track (bounds memory; default: whole tracks)")
    p.add_argument("--track-hidden", type=int, default=128, metavar="N", help="width of the track head (default 128)")
    p.add_argument("--track-embedding", choices=list(TRACK_EMBEDDINGS), default="head",
                   help="the track embedding that `mir tag` stores and `mir index` indexes: the track head's hidden "
                        "layer (trained on the render labels) or the backbone's mean chunk embedding (default head)")
    p.add_argument("--seed", type=int, default=0)
    again = p.add_mutually_exclusive_group()
    again.add_argument("--resume", action="store_true",
                       help="require resuming from <out>.last.pt (default: resume when it matches, else start afresh)")
    again.add_argument("--restart", action="store_true", help="ignore <out>.last.pt and start afresh")
    o = p.add_argument_group("optimisation")
    o.add_argument("--batch-size", type=int, default=32)
    o.add_argument("--lr", type=float, default=2e-3, help="peak AdamW learning rate (warm-up, then cosine)")
    o.add_argument("--patience", type=int, default=None,
                   help="stop after N epochs without a better validation AUC (0: never; default 8, 40 with --track-head)")
    o.add_argument("--chunks-per-track", type=int, default=1, metavar="N",
                   help="random chunks drawn per training track per epoch (default 1)")
    o.add_argument("--balance", choices=["loss", "sampling", "none"], default="loss",
                   help="class balance: loss weights (pos_weight, genre weights), genre-balanced sampling, or none")
    o.add_argument("--chunk-frames", type=int, default=160, metavar="N",
                   help="chunk length in frames for training and inference (default 160 = 3.7 s)")
    o.add_argument("--val-chunks", type=int, default=None, metavar="N",
                   help="validate on N evenly spaced chunks per track (default: all non-overlapping chunks)")
    o.add_argument("--precision", choices=["fp32", "bf16", "auto"], default="fp32",
                   help="bf16 autocast for speed where the CPU has native bf16 (default fp32)")
    o.add_argument("--threads", type=int, default=None, help="torch threads (default: the cores not already busy, from the load average; at least 1)")
    a = p.add_argument_group("augmentation (all on by default)")
    a.add_argument("--no-augment", action="store_true", help="turn every augmentation off")
    a.add_argument("--no-gain", action="store_true", help="no random gain (±6 dB)")
    a.add_argument("--no-noise", action="store_true", help="no added noise floor")
    a.add_argument("--no-time-mask", action="store_true", help="no time masking")
    a.add_argument("--no-freq-mask", action="store_true", help="no frequency masking")
    a.add_argument("--no-shift", action="store_true",
                   help="chunks only at inference's chunk positions (no random time shift)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_train)

    e = sub.add_parser("evaluate", help="score a model on a labelled split: ROC/PR-AUC, genre accuracy, plots")
    e.add_argument("library", metavar="LIB")
    e.add_argument("--model", "-m", default=None,
                   help="checkpoint file, or id (prefix) of a model that tagged LIB (default: the packaged model)")
    e.add_argument("--labels", required=True, metavar="CSV")
    e.add_argument("--splits", default=None, metavar="FILE", help="CSV or Parquet with columns track,split")
    e.add_argument("--split", default="test", choices=["train", "valid", "test", "all"])
    e.add_argument("--out", "-o", default=None, metavar="DIR", help="write metrics.json and PNG plots here")
    e.add_argument("--chunks", type=int, default=None, metavar="N",
                   help="N evenly spaced chunks per track (default: all non-overlapping chunks)")
    e.add_argument("--precision", choices=["fp32", "bf16", "auto"], default="fp32")
    e.add_argument("--json", action="store_true", help="print the scores as JSON instead of a table")
    e.set_defaults(func=cmd_evaluate)


