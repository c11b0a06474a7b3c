"""Robustness at scale: the damaged-file corpus of the tests, N cases, through scan + analyse, and
one hours-long file through analyse, with time and peak memory.

    python benchmarks/robustness.py --n 1000 --long-hours 2 --out robustness.json

Part 1 writes ``--n`` cases (tests/robustness_corpus.py repeated with new content), runs
`mir scan` and `mir analyze` on them in a child process, and checks every case as the tests do
(analysed, or listed with a message naming the file). Part 2 writes one ``--long-hours`` WAV
(44.1 kHz stereo 16-bit by default) and analyses it alone in a child process; its peer, in the
same run, is a child that only imports mir, so the table shows what analysing the file adds.
Peak memory is each child's maximum resident set size (``ru_maxrss``).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import soundfile as sf

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE.parent / "tests"))
import robustness_corpus as corpus  # noqa: E402


def run_child(code: str, mir_path: Path) -> tuple[dict, float, float]:
    """Run ``code`` (which sets a dict ``RESULT``) in a fresh Python with ``mir_path`` first on its path;
    returns (RESULT, wall seconds, the child's peak resident memory in MB)."""
    code = textwrap.dedent(code) + textwrap.dedent("""
        import json as _json, resource as _resource
        RESULT["peak_mb"] = _resource.getrusage(_resource.RUSAGE_SELF).ru_maxrss / 1024
        print(_json.dumps(RESULT))
    """)
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(mir_path)})
    seconds = time.perf_counter() - start
    if proc.returncode:
        raise SystemExit(f"child failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    return result, seconds, result.pop("peak_mb")


def corpus_run(root: Path, n: int, workers: int, mir_path: Path) -> dict:
    per_copy = len(corpus.cases(root / "probe"))
    copies = max(1, math.ceil(n / per_copy))
    start = time.perf_counter()
    cases = corpus.build(root / "music", copies=copies)
    write_s = time.perf_counter() - start
    lib = root / "lib"
    code = f"""
        import contextlib, io, json, time
        from mir.cli.main import main
        times, codes = {{}}, {{}}
        with contextlib.redirect_stderr(io.StringIO()) as err:
            for argv in ({["scan", str(lib), str(root / "music")]!r}, {["analyze", str(lib), "--workers", str(workers)]!r}):
                t = time.perf_counter()
                with contextlib.redirect_stdout(io.StringIO()):
                    codes[argv[0]] = main(argv)
                times[argv[0]] = time.perf_counter() - t
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            main(["failures", {str(lib)!r}, "--json"])
        RESULT = {{"times": times, "codes": codes, "traceback": "Traceback" in err.getvalue(),
                   "listed": json.loads(out.getvalue())}}
    """
    result, seconds, peak = run_child(code, mir_path)
    corpus.restore_permissions(root / "music")
    from mir.catalog import Library, stage_versions

    library = Library(lib)
    files = dict(zip(library.files()["path"], library.files()["hash"]))
    tracks = set(library.tracks(include_missing=False)["hash"])
    analysed = set.intersection(*(library.stages.table(s, v).keys() for s, v in stage_versions().items()))
    by_path: dict[str, list] = {}
    for r in result["listed"]:
        by_path.setdefault(r["path"], []).append(r)
    bad = []
    for case in cases:
        h = files.get(case.path)
        v = corpus.verdict(case, by_path.get(case.path, []), h, h in tracks and h in analysed)
        if v:
            bad.append((case.name, v))
    failed_paths = {r["path"] for r in result["listed"] if r["level"] == "error"}
    warned_paths = {r["path"] for r in result["listed"] if r["level"] == "warning"}
    return {
        "cases": len(cases), "copies": copies, "write_s": write_s, "scan_s": result["times"]["scan"],
        "analyze_s": result["times"]["analyze"], "child_s": seconds, "peak_mb": peak,
        "exit_codes": result["codes"], "traceback": result["traceback"],
        "analysed": len(tracks & analysed), "failed_files": len(failed_paths), "warned_files": len(warned_paths),
        "violations": len(bad), "violation_examples": bad[:10], "workers": workers,
    }


def write_long(path: Path, hours: float, sr: int, channels: int) -> float:
    """A ``hours``-long 16-bit WAV of slowly changing tones, written in one-minute blocks."""
    start = time.perf_counter()
    with sf.SoundFile(path, "w", sr, channels, subtype="PCM_16") as f:
        for minute in range(math.ceil(hours * 60)):
            y = corpus.clip(minute, seconds=60.0, sr=sr, channels=channels)
            f.write(0.5 * y)
    return time.perf_counter() - start


def long_run(root: Path, hours: float, sr: int, channels: int, mir_path: Path) -> dict:
    music = root / "long"
    music.mkdir(parents=True)
    write_s = write_long(music / "long.wav", hours, sr, channels)
    lib = root / "long-lib"
    peer, _, peer_mb = run_child("import mir.catalog, mir.audio, mir.features\nRESULT = {}", mir_path)
    code = f"""
        from mir.catalog import Library, analyze
        lib = Library.open_or_create({str(lib)!r})
        lib.scan([{str(music)!r}])
        r = analyze(lib, workers=1)
        RESULT = {{"done": r.done, "failed": r.failed, "messages": [f["message"] for f in r.failures]}}
    """
    result, seconds, peak = run_child(code, mir_path)
    size = (music / "long.wav").stat().st_size
    shutil.rmtree(music)
    return {"hours": hours, "sample_rate": sr, "channels": channels, "file_mb": size / 2**20, "write_s": write_s,
            "analyze_s": seconds, "peak_mb": peak, "import_only_peak_mb": peer_mb, **result}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=1000, help="corpus cases (whole copies of the test corpus)")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="analysis worker processes")
    ap.add_argument("--long-hours", type=float, default=2.0, help="length of the long file (0: skip it)")
    ap.add_argument("--long-rate", type=int, default=44100)
    ap.add_argument("--long-channels", type=int, default=2)
    ap.add_argument("--dir", default=None, help="work folder (default: a temporary one, removed after)")
    ap.add_argument("--mir", default=str(HERE.parent), help="the mir source tree to measure (default: this one)")
    ap.add_argument("--out", default="robustness.json", help="JSON results")
    args = ap.parse_args()
    work = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="mir-robustness-"))
    work.mkdir(parents=True, exist_ok=True)
    results = {"machine": platform.platform(), "cpus": os.cpu_count(), "mir": args.mir,
               "command": " ".join(sys.argv)}
    try:
        if args.long_hours > 0:
            results["long"] = long_run(work, args.long_hours, args.long_rate, args.long_channels, Path(args.mir))
        if args.n > 0:
            results["corpus"] = corpus_run(work, args.n, args.workers, Path(args.mir))
    finally:
        corpus.restore_permissions(work)
        if not args.dir:
            shutil.rmtree(work, ignore_errors=True)
    Path(args.out).write_text(json.dumps(results, indent=1))
    if "corpus" in results:
        c = results["corpus"]
        print(f"corpus: {c['cases']} cases ({c['copies']} copies), {args.workers} workers")
        print(f"  {'written':>10} {'scan':>8} {'analyze':>8} {'peak RSS':>9} {'tracks analysed':>15} "
              f"{'files failed':>12} {'files warned':>12} {'violations':>10} {'traceback':>9}")
        print(f"  {c['write_s']:9.1f}s {c['scan_s']:7.1f}s {c['analyze_s']:7.1f}s {c['peak_mb']:7.0f}MB "
              f"{c['analysed']:15d} {c['failed_files']:12d} {c['warned_files']:12d} {c['violations']:10d} "
              f"{str(c['traceback']):>9}")
        for name, why in c["violation_examples"]:
            print(f"  violation {name}: {why}")
    if "long" in results:
        g = results["long"]
        print(f"long file: {g['hours']:g} h, {g['sample_rate']} Hz, {g['channels']} ch, {g['file_mb']:.0f} MB on disk")
        print(f"  {'analyse':>8} {'peak RSS':>9} {'import-only peer':>17} {'done':>5} {'failed':>7}")
        print(f"  {g['analyze_s']:7.1f}s {g['peak_mb']:7.0f}MB {g['import_only_peak_mb']:15.0f}MB {g['done']:5d} {g['failed']:7d}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
