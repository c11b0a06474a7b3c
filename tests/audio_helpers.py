"""Helpers for tests/test_audio.py: damaged files and fake ffmpeg/ffprobe executables."""
from __future__ import annotations

import json
import os
import struct
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

FAKE_FFMPEG = """#!{python}
# fake ffmpeg: logs its arguments, then writes a 440 Hz tone as raw float32 to stdout (or fails)
import array, json, math, sys
args = sys.argv[1:]
with open({log!r}, "a") as fh:
    fh.write(json.dumps(args) + "\\n")
if {fail!r}:
    sys.stderr.write("something\\nInvalid data found when processing input\\n")
    sys.exit(1)
sr = int(args[args.index("-ar") + 1])
seconds = float(args[args.index("-t") + 1]) if "-t" in args else {seconds!r}
tone = array.array("f", (0.3 * math.sin(2 * math.pi * 440 * i / sr) for i in range(int(seconds * sr))))
sys.stdout.buffer.write(tone.tobytes())
"""

FAKE_FFPROBE = """#!{python}
print({answer!r})
"""


def install_fake_ffmpeg(bin_dir: Path, monkeypatch, *, fail: bool = False, seconds: float = 2.0) -> Path:
    """Put fake ``ffmpeg`` and ``ffprobe`` first on PATH; return the file logging ffmpeg's arguments."""
    bin_dir.mkdir(exist_ok=True)
    log = bin_dir / "ffmpeg.log"
    probe_answer = json.dumps({
        "streams": [{"codec_name": "aac", "sample_rate": "44100", "channels": 2, "duration": f"{seconds:.6f}"}],
        "format": {"duration": f"{seconds:.6f}"},
    })
    scripts = {
        "ffmpeg": FAKE_FFMPEG.format(python=sys.executable, log=str(log), fail=fail, seconds=seconds),
        "ffprobe": FAKE_FFPROBE.format(python=sys.executable, answer=probe_answer),
    }
    for name, text in scripts.items():
        script = bin_dir / name
        script.write_text(text)
        script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    return log


def ffmpeg_calls(log: Path) -> list[list[str]]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def patch_wav_header(path: Path, *, rate: int | None = None, channels: int | None = None) -> Path:
    """Overwrite the sample rate (bytes 24-27) or channel count (bytes 22-23) of a canonical WAV header."""
    data = bytearray(path.read_bytes())
    if rate is not None:
        data[24:28] = struct.pack("<I", rate)
    if channels is not None:
        data[22:24] = struct.pack("<H", channels)
    path.write_bytes(bytes(data))
    return path


def truncate_half(path: Path) -> Path:
    """Cut ``path`` to its first half, as an interrupted copy or download would."""
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def write_raw(path: Path, y: np.ndarray, sr: int, subtype: str = "FLOAT") -> Path:
    """Write samples with soundfile directly (no validation), e.g. NaN into a float WAV."""
    sf.write(path, y, sr, subtype=subtype)
    return path


def dominant_frequency(y: np.ndarray, sr: int) -> float:
    spectrum = np.abs(np.fft.rfft(y * np.hanning(y.size)))
    return float(np.argmax(spectrum) * sr / y.size)
