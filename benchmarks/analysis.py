"""Analysis throughput: mir (scan + decode + log-mel + descriptors) against a plain librosa loop.

    python benchmarks/analysis.py [--audio DIR] [--clips 200] [--seconds 30] [--out results.json]
                                  [--dask-workers 2 | --scheduler ADDRESS]

Without --audio, generates --clips synthetic music clips of --seconds each in mixed formats
(wav, flac, ogg, mp3) under benchmarks/results/audio (reused on later runs). Prints a table of
realtime factors (audio seconds per wall second) per stage and worker count, and writes JSON.

The baseline is the loop a user would write per file: librosa.load → melspectrogram →
power_to_db → beat_track (tempo) → chroma_stft (key), run in 1 and in 2 processes. Both
sides run one BLAS thread per process (as mir's workers do), so rows compare per-core work.

``--dask-workers N`` also runs ``mir analyze --scheduler`` on a local Dask cluster (N worker processes,
one thread each; ``--scheduler ADDRESS``: an existing cluster whose workers see these paths) and checks
that its tables and log-mel arrays equal the in-process run's.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from multiprocessing import get_context
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SR = 22050
FORMATS = ["wav", "flac", "ogg", "mp3"]


def synth_clip(seed: int, seconds: float, sr: int = SR) -> np.ndarray:
    """Chords over a bass line with a kick/hat pattern at a random tempo: cheap music-like audio."""
    g = np.random.default_rng(seed)
    n = int(seconds * sr)
    t = np.arange(n) / sr
    bpm = g.uniform(70, 160)
    beat = 60.0 / bpm
    root = 110.0 * 2 ** (g.integers(0, 12) / 12)
    y = np.zeros(n)
    for k, start in enumerate(np.arange(0, seconds, 4 * beat)):
        seg = (t >= start) & (t < start + 4 * beat)
        chord = root * 2 ** (np.array([0, 4 if g.random() < 0.5 else 3, 7]) / 12) * 2 ** (g.choice([0, 5, 7, -3]) / 12)
        for f in chord:
            y[seg] += 0.08 * np.sin(2 * np.pi * 2 * f * t[seg]) * np.exp(-(t[seg] - start) * 0.7)
    for start in np.arange(0, seconds, beat):
        i = int(start * sr)
        m = min(n - i, int(0.15 * sr))
        env = np.exp(-np.arange(m) / (0.03 * sr))
        y[i:i + m] += 0.5 * env * np.sin(2 * np.pi * 55 * np.arange(m) / sr)
        j = int((start + beat / 2) * sr)
        if j < n:
            mm = min(n - j, int(0.05 * sr))
            y[j:j + mm] += 0.1 * g.standard_normal(mm) * np.exp(-np.arange(mm) / (0.01 * sr))
    y += 0.003 * g.standard_normal(n)
    return (0.9 * y / np.abs(y).max()).astype(np.float32)


def generate(folder: Path, clips: int, seconds: float) -> list[Path]:
    from mir import audio

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(clips):
        path = folder / f"clip{i:04d}.{FORMATS[i % len(FORMATS)]}"
        if not path.exists():
            audio.save(path, synth_clip(i, seconds), SR)
        paths.append(path)
    return paths


# --- baseline: the straightforward librosa loop ------------------------------------------------
def baseline_one(path: str) -> tuple[float, dict]:
    import librosa

    times = {}
    t0 = time.perf_counter()
    y, sr = librosa.load(path, sr=SR, mono=True)
    t1 = time.perf_counter()
    S = librosa.power_to_db(librosa.feature.melspectrogram(y=y, sr=sr, n_fft=1024, hop_length=512, n_mels=128))
    t2 = time.perf_counter()
    tempo, _ = librosa.beat.beat_track(y=y, sr=sr)
    chroma = librosa.feature.chroma_stft(y=y, sr=sr).mean(axis=1)
    t3 = time.perf_counter()
    times.update(decode=t1 - t0, logmel=t2 - t1, descriptors=t3 - t2)
    assert S.shape[0] == 128 and np.isfinite(chroma).all()
    return len(y) / sr, times


def _one_thread() -> None:
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1)


def run_baseline(paths: list[Path], workers: int) -> dict:
    t0 = time.perf_counter()
    if workers == 1:
        from threadpoolctl import threadpool_limits

        with threadpool_limits(limits=1):
            results = [baseline_one(str(p)) for p in paths]
    else:
        with get_context("forkserver").Pool(workers, initializer=_one_thread) as pool:
            results = pool.map(baseline_one, [str(p) for p in paths], chunksize=1)
    wall = time.perf_counter() - t0
    audio_s = sum(r[0] for r in results)
    stage = {k: sum(r[1][k] for r in results) for k in ("decode", "logmel", "descriptors")}
    return {"audio_seconds": audio_s, "wall_seconds": wall, "stage_cpu_seconds": stage}


# --- mir ---------------------------------------------------------------------------------------
def mir_stages(paths: list[Path]) -> dict:
    """Per-stage single-core cost of mir's own functions (in-process, same files)."""
    from mir.parallel import limit_threads

    with limit_threads(1):
        return _mir_stages(paths)


def _mir_stages(paths: list[Path]) -> dict:
    from mir import audio
    from mir.features import TrackAnalyzer, describe, log_mel

    stage = {"decode": 0.0, "logmel": 0.0, "descriptors": 0.0, "analyzer (all, streamed)": 0.0}
    audio_s = 0.0
    for p in paths:
        t0 = time.perf_counter()
        y = audio.load(p, sr=SR)
        t1 = time.perf_counter()
        log_mel(y, sr=SR)
        t2 = time.perf_counter()
        describe(y, sr=SR)
        t3 = time.perf_counter()
        frames = []
        an = TrackAnalyzer(sr=SR, on_frames=frames.append)
        for block in audio.stream(p, sr=SR):
            an.update(block)
        an.finalize()
        t4 = time.perf_counter()
        stage["decode"] += t1 - t0
        stage["logmel"] += t2 - t1
        stage["descriptors"] += t3 - t2
        stage["analyzer (all, streamed)"] += t4 - t3
        audio_s += len(y) / SR
    return {"audio_seconds": audio_s, "stage_cpu_seconds": stage}


def run_mir(paths: list[Path], workers: int, root: Path, scheduler: str | None = None) -> dict:
    from mir.catalog import Library, analyze

    folder = paths[0].parent
    lib_dir = root / (f"lib-{workers}" if scheduler is None else "lib-dask")
    shutil.rmtree(lib_dir, ignore_errors=True)
    lib = Library.open_or_create(lib_dir)
    t0 = time.perf_counter()
    lib.scan([folder])
    t1 = time.perf_counter()
    report = analyze(lib, workers=workers, scheduler=scheduler)
    t2 = time.perf_counter()
    t3 = time.perf_counter()
    lib.scan([folder])  # unchanged rescan
    again = analyze(lib, workers=workers, scheduler=scheduler)
    t4 = time.perf_counter()
    if report.failed:
        raise SystemExit(f"mir failed on {report.failed} files: {report.failures[:3]}")
    audio_s = float(lib.tracks()["duration"].sum())
    return {"audio_seconds": audio_s, "scan_seconds": t1 - t0, "analyze_seconds": t2 - t1,
            "wall_seconds": t2 - t0, "rescan_seconds": t4 - t3, "rescan_analyzed": again.done}


def same_analysis(a: Path, b: Path) -> bool:
    """Whether two libraries of the same files hold equal stage tables and log-mel arrays."""
    from mir.catalog import Library, stage_versions

    la, lb = Library(a), Library(b)
    for stage, version in stage_versions().items():
        ta = la.stage_table(stage, version).sort_values("hash").reset_index(drop=True)
        tb = lb.stage_table(stage, version).sort_values("hash").reset_index(drop=True)
        if not ta.equals(tb):
            return False
    return all(np.array_equal(la.logmel(t), lb.logmel(t)) for t in la.tracks()["track_id"])


def run_dask(paths: list[Path], root: Path, args) -> dict:
    from _dask import scheduler_address

    with scheduler_address(args) as address:
        m = run_mir(paths, 1, root, scheduler=address)
    m["same_as_in_process"] = same_analysis(root / "lib-dask", root / f"lib-{args.workers[0]}")
    return m


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--audio", type=Path, help="folder of audio (default: generated clips)")
    ap.add_argument("--clips", type=int, default=200)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--stage-clips", type=int, default=20, help="clips used for the per-stage breakdown")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--out", type=Path, default=HERE / "results" / "analysis.json")
    where = ap.add_mutually_exclusive_group()
    where.add_argument("--dask-workers", type=int, default=0, help="also run on a local Dask cluster of N workers")
    where.add_argument("--scheduler", default=None, metavar="ADDRESS", help="also run on this Dask cluster")
    args = ap.parse_args(argv)

    if args.audio:
        from mir.audio import is_audio_path

        paths = sorted(p for p in args.audio.rglob("*") if is_audio_path(p))
    else:
        print(f"generating {args.clips} clips of {args.seconds:.0f} s …", file=sys.stderr)
        paths = generate(HERE / "results" / f"audio-{args.clips}x{args.seconds:.0f}s", args.clips, args.seconds)
    if not paths:
        raise SystemExit("no audio files found")

    results = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version()}, "files": len(paths)}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for w in args.workers:
            print(f"mir, {w} worker(s) …", file=sys.stderr)
            m = run_mir(paths, w, Path(tmp))
            print(f"librosa loop, {w} process(es) …", file=sys.stderr)
            b = run_baseline(paths, w)
            results[f"mir_{w}"], results[f"baseline_{w}"] = m, b
            rows.append((f"end-to-end, {w} worker(s)", m["audio_seconds"] / m["wall_seconds"],
                         b["audio_seconds"] / b["wall_seconds"]))
            rows.append((f"  of which scan (hash + probe + tags), {w}w", m["audio_seconds"] / m["scan_seconds"], float("nan")))
            rows.append((f"  unchanged rescan + analyze, {w}w", m["audio_seconds"] / m["rescan_seconds"], float("nan")))
        if args.dask_workers or args.scheduler:
            where = f"{args.dask_workers} local workers" if args.dask_workers else args.scheduler
            print(f"mir on Dask ({where}) …", file=sys.stderr)
            m = results["mir_dask"] = run_dask(paths, Path(tmp), args)
            rows.append((f"end-to-end, Dask ({where}), same output: {m['same_as_in_process']}",
                         m["audio_seconds"] / m["wall_seconds"], float("nan")))
    sub = paths[: args.stage_clips]
    ms = mir_stages(sub)
    bs = run_baseline(sub, 1)
    results["stages_mir"], results["stages_baseline"] = ms, bs
    for k in ("decode", "logmel", "descriptors"):
        rows.append((f"stage {k} (1 core)", ms["audio_seconds"] / ms["stage_cpu_seconds"][k],
                     bs["audio_seconds"] / bs["stage_cpu_seconds"][k]))
    k = "analyzer (all, streamed)"
    rows.append((f"stage {k} (1 core)", ms["audio_seconds"] / ms["stage_cpu_seconds"][k], float("nan")))
    results["table"] = [{"what": r[0], "mir_rtf": r[1], "baseline_rtf": r[2]} for r in rows]

    print(f"\n{len(paths)} files, {results['mir_1']['audio_seconds'] / 60:.1f} min of audio; realtime factor (audio s / wall s)")
    print(f"{'what':48s} {'mir':>10s} {'librosa':>10s} {'speed-up':>9s}")
    for what, a, b in rows:
        ratio = f"{a / b:8.2f}x" if b == b else ""
        bs_ = f"{b:10.0f}" if b == b else f"{'-':>10s}"
        print(f"{what:48s} {a:10.0f} {bs_} {ratio}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1))
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
