"""Generated pieces measured against two baselines built on the same neighbours.

    python benchmarks/generation.py --lib LIB [--lib LIB2 …] [--pieces 20] [--duration 30] [--neighbours 20]
                                    [--stretch auto] [--sources 8] [--stereo] [--out benchmarks/results/generation.json]

Each library needs `mir analyze`, `mir tag`, `mir index build` and `mir train-generator` (default
generator LIB/generator.pt). Seeds: ``--pieces`` tracks spread over the sorted track ids, one piece
each, RNG seed = piece number. Methods: ``model`` (the generator), ``bigram`` (a bigram over the
library's tokens, same constraints and rendering) and ``shuffle`` (the neighbours' segments in random
order, same rendering, no constraints). All three draw on the same ``--sources`` of the neighbours
(``generate``'s default 8); ``--stereo`` renders 44.1 kHz stereo (measured on its mono mix at the analysis rate).

Measures per piece
- fidelity: cosine of the piece's embedding (the library's tagger, on the rendered audio) to the
  neighbours' mean embedding, as a percentile among all library tracks' cosines to that mean
- novelty: longest run of output beats copied from consecutive source beats; spread: largest share
  of one source track
- seam flux: median onset strength (mir's spectral flux) at the piece's seams ÷ median onset strength
  at the beats inside the source tracks (their cached log-mels)
- tempo: mir's tempo estimate of the piece within 2 % of the target; key: mir's key estimate equals
  the target (tonic and mode)
- clipping: any sample at or above full scale; loudness: BS.1770 integrated loudness within 1 LU of the target
- speed: audio seconds ÷ wall seconds of the whole `generate` call (retrieval, sampling, rendering, one core),
  the median piece and the first (cold) piece apart; the one-time cost of importing `mir.generate` in a fresh
  process is measured separately (a subprocess) and is not in any piece's time
- determinism (model only, first two pieces): the same seed gives a byte-identical WAV
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from mir import audio  # noqa: E402
from mir.catalog import Library  # noqa: E402
from mir.config import get_config  # noqa: E402
from mir.features import key as estimate_key  # noqa: E402
from mir.features import log_mel, tempo as estimate_tempo  # noqa: E402
from mir.features.descriptors import onset_envelope  # noqa: E402
from mir.generate import generate  # noqa: E402
from mir.generate.model import load_generator  # noqa: E402
from mir.generate.retrieve import embeddings, open_library_index  # noqa: E402
from mir.generate.segments import load_segments  # noqa: E402
from mir.generate.train import default_path  # noqa: E402
from mir.similar.query import audio_seed  # noqa: E402
from mir.parallel import limit_threads  # noqa: E402

METHODS = ("model", "bigram", "shuffle")


def flux_at(env: np.ndarray, times, sr: int, hop: int) -> np.ndarray:
    f = np.round(np.asarray(times, float) * sr / hop).astype(int)
    return np.array([env[max(i - 1, 0):i + 2].max() for i in f if 0 <= i < len(env)])


def source_flux(lib: Library, seg, track_ids, sr: int, hop: int) -> float:
    vals = []
    for t in track_ids:
        env = onset_envelope(lib.logmel(t))
        rows = seg.rows_of([t])
        vals.append(flux_at(env, seg.start[rows][1:], sr, hop))
    return float(np.median(np.concatenate(vals))) if vals else float("nan")


def measure(lib: Library, li, seg, ids, emb, result, sr: int, hop: int, ref_cache: dict) -> dict:
    p = result.provenance
    y = audio.load(result.path, sr=sr)
    nb = [n["track_id"] for n in p["neighbours"]]
    centroid = emb[[ids.index(t) for t in nb]].mean(axis=0)
    centroid /= np.linalg.norm(centroid)
    vec = audio_seed(li, result.path).vector
    lib_cos = emb @ centroid
    fidelity = float((lib_cos < float(vec @ centroid)).mean() * 100)
    env = onset_envelope(log_mel(y, sr=sr))
    key = f"{p['key']}"
    srcs = tuple(sorted(p["sources"]))
    if srcs not in ref_cache:
        ref_cache[srcs] = source_flux(lib, seg, srcs, sr, hop)
    seam = flux_at(env, p["seams"], sr, hop)
    tonic, mode, _ = estimate_key(y, sr=sr)
    est_tempo = estimate_tempo(y, sr=sr)
    return {"fidelity_percentile": fidelity, "longest_run": p["checks"]["longest_run"],
            "max_share": p["checks"]["max_share"],
            "seam_flux_ratio": float(np.median(seam) / ref_cache[srcs]) if len(seam) else float("nan"),
            "tempo_target": p["tempo"], "tempo_est": est_tempo, "tempo_ok": abs(est_tempo / p["tempo"] - 1) <= 0.02,
            "key_target": key, "key_est": f"{tonic} {mode}", "key_ok": f"{tonic} {mode}" == key,
            "peak": p["peak"], "clipped": bool(np.abs(y).max() >= 1.0),
            "loudness_ok": abs(p["loudness"] - p["target_loudness"]) <= 1.0,
            "realtime": p["duration"] / max(p["seconds"], 1e-9), "duration": p["duration"], "seconds": p["seconds"],
            "stretcher": p["stretcher"]}


def run_library(path: str, args, tmp: Path) -> dict:
    lib = Library(path)
    gen_path = default_path(lib)
    gen = load_generator(gen_path)
    li = open_library_index(lib, gen.tagger_id)
    seg = load_segments(lib)
    ids, _, emb = embeddings(lib, gen.tagger_id)
    ids = list(ids)
    cfg = get_config().analysis
    usable = sorted(t for t in ids if t in seg.tracks.index and seg.tracks.at[t, "n"] > 0)
    seeds = [usable[int(i)] for i in np.linspace(0, len(usable) - 1, min(args.pieces, len(usable))).round()]
    while len(seeds) < args.pieces:  # fewer tracks than pieces: seeds repeat with other RNG seeds
        seeds.append(seeds[len(seeds) % len(usable)])
    rows = {m: [] for m in METHODS}
    ref_cache: dict = {}
    deterministic = []
    for i, t in enumerate(seeds):
        for m in METHODS:
            out = tmp / f"{Path(path).name}-{m}-{i}.wav"
            r = generate(lib, tracks=[t], neighbours=min(args.neighbours, len(usable)), duration=args.duration,
                         out=out, seed=i, stretch=args.stretch, method=m, **_extra(args))
            rows[m].append({"seed_track": t, "seed": i, **measure(lib, li, seg, ids, emb, r, cfg.sample_rate,
                                                                   cfg.hop_length, ref_cache)})
            if m == "model" and i < 2:
                again = generate(lib, tracks=[t], neighbours=min(args.neighbours, len(usable)),
                                 duration=args.duration, out=tmp / "again.wav", seed=i, stretch=args.stretch,
                                 **_extra(args))
                deterministic.append(out.read_bytes() == again.path.read_bytes())
            print(f"  {Path(path).name} piece {i + 1}/{len(seeds)} {m}: fidelity {rows[m][-1]['fidelity_percentile']:.0f}, "
                  f"seam {rows[m][-1]['seam_flux_ratio']:.2f}, {rows[m][-1]['realtime']:.1f}x", flush=True)
    summary = {m: summarise(v) for m, v in rows.items()}
    summary["model"]["deterministic"] = bool(all(deterministic))
    metrics = gen.metrics
    return {"library": Path(path).name, "tracks": len(usable), "generator": gen.model_id,
            "perplexity": {"model": metrics["test_perplexity"], "transformer": metrics.get("transformer_perplexity"),
                           "bigram_cache": metrics.get("bigram_cache_perplexity"), "mixture": metrics.get("mixture"),
                           **{k: v["perplexity"] for k, v in metrics["baselines"].items()},
                           "test_tokens": metrics["test_tokens"], "codebook": metrics["codebook_size"]},
            "summary": summary, "pieces": rows}


def _extra(args) -> dict:
    return {"sources": args.sources or None, "stereo": args.stereo}


def summarise(rows: list[dict]) -> dict:
    col = lambda k: np.array([r[k] for r in rows], dtype=float)  # noqa: E731
    return {"pieces": len(rows), "fidelity_median": float(np.median(col("fidelity_percentile"))),
            "longest_run_max": int(col("longest_run").max()), "max_share_max": float(col("max_share").max()),
            "seam_flux_ratio_median": float(np.nanmedian(col("seam_flux_ratio"))),
            "tempo_within_2pct": float(col("tempo_ok").mean()), "key_equal": float(col("key_ok").mean()),
            "clipped": int(col("clipped").sum()), "loudness_within_1lu": float(col("loudness_ok").mean()),
            "realtime_median": float(np.median(col("realtime"))), "realtime_first": float(col("realtime")[0]) if rows else None,
            "stretcher": rows[0]["stretcher"] if rows else None}


def import_seconds() -> float:
    """Wall seconds a fresh process takes to import ``mir.generate`` (paid once per process, not per piece)."""
    code = "import time; t = time.monotonic(); import mir.generate; print(time.monotonic() - t)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=str(HERE.parent))
    return float(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--lib", action="append", required=True, help="library (repeatable)")
    ap.add_argument("--pieces", type=int, default=20)
    ap.add_argument("--duration", type=float, default=30.0)
    ap.add_argument("--neighbours", type=int, default=20)
    ap.add_argument("--stretch", default="auto", choices=["auto", "pedalboard", "rubberband", "librosa"])
    ap.add_argument("--sources", type=int, default=8, help="neighbours the segments come from (0: all)")
    ap.add_argument("--stereo", action="store_true", help="44.1 kHz stereo output")
    ap.add_argument("--out", default=str(HERE / "results" / "generation.json"))
    args = ap.parse_args(argv)
    t0 = time.monotonic()
    once = import_seconds()
    results = []
    with limit_threads(1), tempfile.TemporaryDirectory() as tmp:
        for path in args.lib:
            results.append(run_library(path, args, Path(tmp)))
    head = (f"{'library':12} {'method':8} {'n':>3} {'fidelity':>8} {'run':>4} {'share':>6} {'seam':>5} {'tempo':>6} "
            f"{'key':>5} {'clip':>4} {'LU':>5} {'x rt':>5} {'first':>5}  perplexity")
    print(head)
    for r in results:
        for m in METHODS:
            s = r["summary"][m]
            ppl = {"model": r["perplexity"]["model"], "bigram": r["perplexity"]["bigram"],
                   "shuffle": r["perplexity"]["neighbour_unigram"]}[m]
            print(f"{r['library'][:12]:12} {m:8} {s['pieces']:>3} {s['fidelity_median']:>8.1f} {s['longest_run_max']:>4} "
                  f"{s['max_share_max']:>6.2f} {s['seam_flux_ratio_median']:>5.2f} {s['tempo_within_2pct']:>6.2f} "
                  f"{s['key_equal']:>5.2f} {s['clipped']:>4} {s['loudness_within_1lu']:>5.2f} {s['realtime_median']:>5.1f} {s['realtime_first']:>5.1f}  "
                  f"{ppl:.2f}{' (neighbours unigram)' if m == 'shuffle' else ''}")
        print(f"{'':12} deterministic (same seed, byte-identical WAV): {r['summary']['model']['deterministic']}; "
              f"stretch: {r['summary']['model']['stretcher']}; Transformer alone {r['perplexity']['transformer']}, "
              f"bigram + cache {r['perplexity']['bigram_cache']}, mixture {r['perplexity']['mixture']}")
    print(f"one-time: importing mir.generate in a fresh process {once:.2f} s (not in any piece's time)")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"args": vars(args), "import_seconds": once, "seconds": time.monotonic() - t0, "results": results}, indent=1,
                              default=str))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
