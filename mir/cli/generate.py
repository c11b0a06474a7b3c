"""`mir train-generator` and `mir generate`: learn a generator from a library, make new pieces."""
from __future__ import annotations

import json
import sys

from ..catalog import Library


def cmd_train_generator(args) -> int:
    from ..generate import train_generator

    r = train_generator(Library(args.library), model=args.model, out=args.out, preset=args.preset,
                        epochs=args.epochs, n_tokens=args.codebook, seed=args.seed, threads=args.threads,
                        progress=not args.quiet and sys.stderr.isatty())
    b = r["baselines"]
    print(f"generator {r['model_id']} -> {r['path']} ({r['preset']}, {r['codebook_size']} tokens, "
          f"{r['segments']} segments, {r['tracks']['train']}/{r['tracks']['val']}/{r['tracks']['test']} "
          f"train/val/test tracks, best epoch {r['best_epoch']} of {r['epochs_run']}, {r['train_seconds']:.0f} s)")
    print(f"held-out token perplexity: model {r['test_perplexity']:.2f}, bigram {b['bigram']['perplexity']:.2f}, "
          f"neighbours' unigram {b['neighbour_unigram']['perplexity']:.2f} over {r['test_tokens']} test tokens"
          + ("" if r["beats_baselines"] else "  (the model does NOT beat both baselines)"))
    w = r["mixture"]["weights"]
    print(f"  the model mixes the Transformer ({r['transformer_perplexity']:.2f} alone), the bigram and a cache of the "
          f"piece's own tokens, weights {w['transformer']:.2f}/{w['bigram']:.2f}/{w['cache']:.2f} fitted on validation "
          f"(bigram + cache without the Transformer: {r['bigram_cache_perplexity']:.2f})")
    return 0


def cmd_generate(args) -> int:
    import argparse

    from ..generate import Constraints, generate
    from .similar import _filters

    common = dict(neighbours=args.neighbours, filters=_filters(argparse.Namespace(**{**vars(args), "key": args.filter_key})),
                  duration=args.duration, seed=args.seed, temperature=args.temperature, top_p=args.top_p,
                  tempo=args.tempo, key=args.target_key, structure=args.structure, generator=args.generator,
                  stretch=args.stretch, xfade=args.xfade / 1000.0, constraints=Constraints(), stereo=args.stereo,
                  sources=args.sources or None)
    if args.batch:
        from ..generate.batch import generate_batch

        r = generate_batch(Library(args.library), args.batch, progress=sys.stderr.isatty(), scheduler=args.scheduler,
                           **common)
        print(f"generate: {r['done']} pieces made, {r['skipped']} already done, {r['failed']} failed")
        for f in r["failures"][:20]:
            print(f"  failed: {f}", file=sys.stderr)
        return 1 if r["failed"] else 0
    res = generate(Library(args.library), tracks=args.track or (), audio_file=args.audio, tags=args.tags or (),
                   user=args.user, events=args.events, out=args.out, **common)
    if args.json:
        print(json.dumps({k: v for k, v in res.provenance.items() if k != "beats"}, indent=1))
    else:
        print(res.summary())
        print(f"provenance: {res.provenance_path}")
    return 0


def register(sub) -> None:
    p = sub.add_parser("train-generator", help="learn the codebook and sequence model that `mir generate` samples from")
    p.add_argument("library", metavar="LIB")
    p.add_argument("--model", "-m", default=None, help="tagger whose embeddings condition it (default: latest tagged)")
    p.add_argument("--out", default=None, help="checkpoint path (default: LIB/generator.pt); state in OUT.last.pt")
    p.add_argument("--preset", default="small", choices=["small", "debug"], help="model size (default small)")
    p.add_argument("--epochs", type=int, default=60)
    p.add_argument("--codebook", type=int, default=None, metavar="K", help="tokens (default: ~1 per 20 segments, 8-256)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_train_generator)

    p = sub.add_parser("generate", help="a new piece in the style of the seeds' neighbours, with its provenance")
    p.add_argument("library", metavar="LIB")
    seeds = p.add_argument_group("seeds (one kind or several)")
    seeds.add_argument("--track", "-t", action="append", metavar="ID", help="seed track; repeatable")
    seeds.add_argument("--audio", metavar="FILE", help="seed audio file (analysed with the library's model)")
    seeds.add_argument("--tags", metavar="LIST", help="comma-separated tags, e.g. 'piano,slow'")
    seeds.add_argument("--user", metavar="U", help="a listener's taste, with --events")
    seeds.add_argument("--events", metavar="F", help="listening history (CSV or Parquet) for --user")
    seeds.add_argument("--batch", metavar="SPEC.csv", help="many pieces, one per row (out, track, tags, seed, …); "
                       "resumable: pieces with provenance are skipped")
    p.add_argument("--scheduler", metavar="ADDRESS", default=None,
                   help="with --batch: make the pieces on a Dask cluster (tcp://host:8786); workers must see LIB "
                        "and the spec's folder")
    p.add_argument("--neighbours", type=int, default=20, help="tracks retrieved to draw segments from (default 20)")
    p.add_argument("--sources", type=int, default=8, metavar="N",
                   help="draw segments from the N neighbours closest to the neighbours' mean embedding "
                        "(default 8; 0: all; never fewer than the 25%% share cap needs)")
    p.add_argument("--duration", type=float, default=60.0, help="seconds, 10-600 (default 60)")
    p.add_argument("--out", "-o", default="piece.wav", help="output .wav or .flac (provenance beside it)")
    p.add_argument("--seed", type=int, default=0, help="RNG seed: the same seed gives the same piece")
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--top-p", type=float, default=0.95)
    p.add_argument("--tempo", type=float, default=None, metavar="BPM", help="default: the neighbours' median")
    p.add_argument("--key", dest="target_key", default=None, metavar="KEY",
                   help="target key, e.g. 'A minor' (default: the neighbours' commonest key)")
    p.add_argument("--structure", default=None, metavar="SCHEME", help="repeat scheme over 8-bar phrases, e.g. AABA")
    p.add_argument("--generator", default=None, metavar="PATH", help="generator checkpoint (default: LIB/generator.pt)")
    p.add_argument("--stereo", action="store_true",
                   help="write 44.1 kHz stereo rendered from the sources' own rate and channels "
                        "(default: mono at the analysis rate)")
    p.add_argument("--stretch", default="auto", choices=["auto", "pedalboard", "rubberband", "librosa"],
                   help="time-stretcher: Rubber Band's library in-process (pedalboard), its command line tool "
                        "(rubberband), or librosa's phase vocoder (auto: the first available)")
    p.add_argument("--xfade", type=float, default=30.0, metavar="MS", help="seam crossfade, 20-50 ms (default 30)")
    p.add_argument("--json", action="store_true", help="print the provenance (without per-beat rows) as JSON")
    f = p.add_argument_group("filters on the neighbours (as in mir similar)")
    f.add_argument("--genre", metavar="LIST", help="any of these genres as the model predicts them")
    f.add_argument("--file-genre", metavar="LIST", help="any of these genres in the files' own metadata")
    f.add_argument("--music-only", action="store_true",
                   help="leave out neighbours the model's music gate calls non-music (needs a gated model)")
    f.add_argument("--with-tags", metavar="LIST")
    f.add_argument("--bpm", metavar="LO-HI")
    f.add_argument("--filter-key", action="append", metavar="KEY", help="only neighbours in this key; repeatable")
    f.add_argument("--year", metavar="LO-HI")
    f.add_argument("--exclude-track", action="append", metavar="ID")
    f.add_argument("--exclude-artist", action="append", metavar="NAME")
    f.add_argument("--max-per-artist", type=int, metavar="N")
    p.set_defaults(func=cmd_generate)
