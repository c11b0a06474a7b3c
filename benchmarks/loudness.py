"""BS.1770 integrated loudness: mir's streaming meter against pyloudnorm, on the same signals.

    python benchmarks/loudness.py [--audio DIR] [--repeat 3] [--out benchmarks/results/loudness.json]

Signals: generated ones (sines at several levels and rates, pink-ish noise, a tone with a
silent half, a 10 s burst in 60 s of near-silence, a 60 s music-like clip) and, with --audio,
every audio file in DIR decoded mono at the analysis rate (what ``mir analyze`` measures).
Both meters see the same float64 array: mir through :func:`mir.features.loudness`, pyloudnorm
through ``Meter(sr).integrated_loudness`` with its default ``K-weighting`` filters and with
``DeMan`` filters. Prints a table (LUFS of each, the difference, time per signal, best of
--repeat) and writes JSON with the per-signal rows and the summary (max abs difference, total
time of each meter).
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from mir.features import loudness as mir_loudness  # noqa: E402


def generated() -> list[tuple[str, int, np.ndarray]]:
    """(name, sr, mono float64 signal) of the synthetic test signals."""
    g = np.random.default_rng(0)
    out = []
    for sr in (22050, 44100, 48000):
        t = np.arange(10 * sr) / sr
        out.append((f"sine 1 kHz -20 dBFS @{sr}", sr, 0.1 * np.sin(2 * np.pi * 1000 * t)))
    sr = 22050
    t = np.arange(20 * sr) / sr
    out.append(("sine 100 Hz -6 dBFS", sr, 0.5 * np.sin(2 * np.pi * 100 * t)))
    out.append(("sine 5 kHz -40 dBFS", sr, 0.01 * np.sin(2 * np.pi * 5000 * t)))
    white = g.standard_normal(len(t))
    pink = np.cumsum(white)
    pink = pink - np.convolve(pink, np.ones(2205) / 2205, mode="same")
    out.append(("noise (low-passed), 20 s", sr, 0.1 * pink / pink.std()))
    half = 0.2 * np.sin(2 * np.pi * 440 * t)
    half[len(t) // 2:] = 0.0
    out.append(("tone then silence", sr, half))
    quiet = 1e-5 * g.standard_normal(60 * sr)
    quiet[20 * sr:30 * sr] += 0.3 * np.sin(2 * np.pi * 300 * np.arange(10 * sr) / sr)
    out.append(("10 s burst in 60 s near-silence", sr, quiet))
    from analysis import synth_clip  # the analysis benchmark's music-like clip

    out.append(("music-like clip, 60 s", sr, synth_clip(1, 60.0, sr).astype(np.float64)))
    return out


def from_folder(folder: Path, sr: int) -> list[tuple[str, int, np.ndarray]]:
    from mir.audio import is_audio_path, load

    files = sorted(p for p in folder.iterdir() if p.is_file() and is_audio_path(p))
    return [(p.name, sr, load(p, sr=sr).astype(np.float64)) for p in files]


def best_time(fn, repeat: int) -> tuple[float, float]:
    best, value = float("inf"), float("nan")
    for _ in range(repeat):
        t0 = time.perf_counter()
        value = fn()
        best = min(best, time.perf_counter() - t0)
    return float(value), best


def main(argv=None) -> dict:
    import pyloudnorm

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--audio", type=Path, help="folder of recordings to measure as well")
    p.add_argument("--sr", type=int, default=22050, help="decode rate for --audio files (default: analysis rate)")
    p.add_argument("--repeat", type=int, default=3, help="timing: best of this many runs per signal")
    p.add_argument("--out", type=Path, default=HERE / "results" / "loudness.json")
    args = p.parse_args(argv)

    signals = generated() + (from_folder(args.audio, args.sr) if args.audio else [])
    rows = []
    for name, sr, y in signals:
        row = {"signal": name, "sr": sr, "seconds": round(len(y) / sr, 2)}
        row["mir"], row["mir_s"] = best_time(lambda: mir_loudness(y, sr=sr), args.repeat)
        for key, filt in (("pyln", "K-weighting"), ("pyln_deman", "DeMan")):
            meter = pyloudnorm.Meter(sr, filter_class=filt)
            row[key], row[key + "_s"] = best_time(lambda: meter.integrated_loudness(y), args.repeat)
        rows.append(row)

    def diff(a, b):
        if np.isinf(a) and np.isinf(b) and a == b:
            return 0.0
        return abs(a - b)

    for r in rows:
        r["diff"], r["diff_deman"] = diff(r["mir"], r["pyln"]), diff(r["mir"], r["pyln_deman"])
    summary = {
        "signals": len(rows),
        "max_abs_diff_lu": max(r["diff"] for r in rows),
        "max_abs_diff_lu_deman": max(r["diff_deman"] for r in rows),
        "mir_seconds": sum(r["mir_s"] for r in rows),
        "pyloudnorm_seconds": sum(r["pyln_s"] for r in rows),
        "pyloudnorm_deman_seconds": sum(r["pyln_deman_s"] for r in rows),
        "audio_seconds": sum(r["seconds"] for r in rows),
    }
    print(f"{'signal':34s} {'sr':>6s} {'sec':>6s} {'mir LUFS':>9s} {'pyln':>9s} {'|d|':>7s} {'DeMan':>9s} {'|d|':>8s}"
          f" {'mir ms':>8s} {'pyln ms':>8s}")
    for r in rows:
        print(f"{r['signal'][:34]:34s} {r['sr']:6d} {r['seconds']:6.1f} {r['mir']:9.3f} {r['pyln']:9.3f} {r['diff']:7.4f}"
              f" {r['pyln_deman']:9.3f} {r['diff_deman']:8.1e} {1e3 * r['mir_s']:8.2f} {1e3 * r['pyln_s']:8.2f}")
    print(f"max |mir - pyloudnorm| = {summary['max_abs_diff_lu']:.4f} LU (K-weighting), "
          f"{summary['max_abs_diff_lu_deman']:.1e} LU (DeMan); total time mir {summary['mir_seconds']:.3f} s, "
          f"pyloudnorm {summary['pyloudnorm_seconds']:.3f} s (DeMan {summary['pyloudnorm_deman_seconds']:.3f} s) for {summary['audio_seconds']:.0f} s of audio")
    result = {"summary": summary, "rows": rows, "pyloudnorm": getattr(pyloudnorm, "__version__", "0.2.0"),
              "python": platform.python_version(), "machine": platform.machine(), "repeat": args.repeat}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1, default=float))
    print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
