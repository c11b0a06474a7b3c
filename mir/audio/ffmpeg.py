"""Fallback decoder for containers libsndfile cannot read (m4a, aac, wma, ...): ffmpeg and ffprobe
subprocesses. ffmpeg downmixes and resamples itself and writes raw float32 mono to a pipe.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from typing import Iterator

import numpy as np

from ..errors import DecodeError, MissingDecoderError
from .formats import AudioInfo, format_from_extension


def available() -> bool:
    """True when an ``ffmpeg`` executable is on ``PATH`` (looked up on every call)."""
    return shutil.which("ffmpeg") is not None


def probe(path: str) -> AudioInfo:
    """Header of the first audio stream of ``path``, read with ffprobe."""
    cmd = ["ffprobe", "-v", "error", "-select_streams", "a:0", "-of", "json",
           "-show_entries", "stream=codec_name,sample_rate,channels,duration:format=duration", _input(path)]
    out = _run(path, cmd)
    try:
        data = json.loads(out)
        stream = data["streams"][0]
        sample_rate, channels = int(stream["sample_rate"]), int(stream["channels"])
        duration = float(stream.get("duration") or data["format"]["duration"])
    except (ValueError, KeyError, IndexError, TypeError):
        raise DecodeError(path, "ffprobe found no audio stream with a known length",
                          "the file is corrupt or not audio") from None
    frames = round(duration * sample_rate)
    return AudioInfo(path, format_from_extension(path), str(stream.get("codec_name", "")).upper(),
                     sample_rate, channels, frames, frames / sample_rate)


def decode(path: str, *, sr: int, offset: float = 0.0, duration: float | None = None,
           channels: int = 1) -> np.ndarray:
    """Whole selection of ``path`` as float32 at ``sr``: mono [shape=(n,)], or ffmpeg's downmix to
    ``channels`` [shape=(channels, n)] when ``channels > 1``."""
    y = _floats(_run(path, _command(path, sr, offset, duration, channels)))
    return y if channels == 1 else np.ascontiguousarray(y[: len(y) // channels * channels].reshape(-1, channels).T)


def blocks(path: str, *, sr: int, block_frames: int, offset: float = 0.0,
           duration: float | None = None) -> Iterator[np.ndarray]:
    """Float32 mono blocks at ``sr`` of ``block_frames`` samples (the last may be shorter)."""
    with tempfile.TemporaryFile() as err, _popen(path, _command(path, sr, offset, duration), err) as proc:
        while chunk := proc.stdout.read(4 * block_frames):
            if len(chunk) >= 4:
                yield _floats(chunk)
        if proc.wait():
            err.seek(0)
            raise _failed(path, "ffmpeg", err.read())


def _command(path: str, sr: int, offset: float, duration: float | None, channels: int = 1) -> list[str]:
    cmd = ["ffmpeg", "-nostdin", "-v", "error"]
    if offset:
        cmd += ["-ss", repr(float(offset))]
    if duration is not None:
        cmd += ["-t", repr(float(duration))]
    return cmd + ["-i", _input(path), "-vn", "-ac", str(int(channels)), "-ar", str(int(sr)), "-f", "f32le", "pipe:1"]


def _input(path: str) -> str:
    """``path`` as an ffmpeg input that cannot read as an option or a protocol (``-x.m4a``, ``a:b.m4a``)."""
    return "file:" + os.path.abspath(path)


def _run(path: str, cmd: list[str]) -> bytes:
    try:
        proc = subprocess.run(cmd, capture_output=True, stdin=subprocess.DEVNULL, check=False)
    except OSError as exc:
        raise _missing(path, cmd[0], exc) from None
    if proc.returncode:
        raise _failed(path, cmd[0], proc.stderr)
    return proc.stdout


def _popen(path: str, cmd: list[str], stderr) -> subprocess.Popen:
    try:
        return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=stderr, stdin=subprocess.DEVNULL)
    except OSError as exc:
        raise _missing(path, cmd[0], exc) from None


def _floats(raw: bytes) -> np.ndarray:
    usable = len(raw) - len(raw) % 4
    return np.frombuffer(raw[:usable], dtype="<f4").astype(np.float32)


def _missing(path: str, program: str, exc: OSError) -> MissingDecoderError:
    fmt = format_from_extension(path)
    return MissingDecoderError(path, f"cannot run {program} to decode {fmt} ({exc.strerror})",
                               "install ffmpeg (it provides ffprobe too)")


def _failed(path: str, program: str, stderr: bytes) -> DecodeError:
    lines = stderr.decode("utf-8", "replace").strip().splitlines()
    reason = lines[-1] if lines else "no message"
    return DecodeError(path, f"{program} failed: {reason}", "the file is corrupt, truncated or not audio")
