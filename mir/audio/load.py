"""Whole-file decoding: :func:`load` returns the float32 mono waveform at the analysis rate."""
from __future__ import annotations

import math
import os

import numpy as np
import soundfile as sf
import soxr

from ..config import get_config
from ..errors import ParameterError
from . import ffmpeg, native
from .validate import check_file, check_samples, check_span

RESAMPLE_QUALITY = "HQ"  # soxr "HQ" = librosa.load's default res_type "soxr_hq"


def load(
    path: str | os.PathLike,
    *,
    sr: int | None = None,
    offset: float = 0.0,
    duration: float | None = None,
    check: bool = True,
    stereo: bool = False,
) -> np.ndarray:
    """Decode ``path`` to a float32 mono waveform at ``sr`` (or two channels with ``stereo``).

    Channels are averaged, then resampled with soxr HQ, so the result matches
    ``librosa.load(path, sr=sr, mono=True, offset=offset, duration=duration)[0]``, except for MP3
    offsets: libsndfile's MP3 seek is not sample-accurate, so mir decodes up to the offset.
    Other formats seek and read only ``[offset, offset + duration)`` seconds. Formats libsndfile
    cannot read (m4a, aac, wma, ...) go through ffmpeg when it is installed.

    Parameters
    ----------
    path : audio file
    sr : target sample rate in Hz; ``None`` = ``get_config().analysis.sample_rate``
    offset : seconds to skip at the start
    duration : seconds to read; ``None`` = to the end
    check : validate the result with :func:`check_samples` (config ``min_duration``, ``silence_peak``)
    stereo : return ``[2, n]``: a stereo file's own channels, a mono file's one channel twice, more channels
        mixed down to their mean (twice); through ffmpeg, its stereo downmix

    Returns
    -------
    y : np.ndarray [shape=(n,) or (2, n) with ``stereo``, dtype=float32], n = ceil(frames read * sr / file rate)

    Raises
    ------
    AudioError subclass naming the file (not found, empty, undecodable, truncated, missing decoder,
    absurd header, and with ``check`` NaN/inf, too short, silent); ParameterError for bad arguments.
    """
    sr = target_rate(sr)
    check_span(offset, duration)
    path = check_file(path)
    with native.open_soundfile(path) as f:
        if f is None:
            y = ffmpeg.decode(path, sr=sr, offset=offset, duration=duration, channels=2 if stereo else 1)
        elif stereo:
            y = resample(_read_stereo(f, path, offset, duration), f.samplerate, sr)
        else:
            y = resample(_read_mono(f, path, offset, duration), f.samplerate, sr)
    if check:
        check_samples(y.mean(axis=0) if stereo else y, sr=sr, path=path)
    return y


def resample(y: np.ndarray, orig_sr: int, sr: int) -> np.ndarray:
    """soxr HQ resampling of ``y`` [shape=(n,) or (channels, n)] to exactly ``ceil(n * sr / orig_sr)``
    samples (as librosa)."""
    if orig_sr == sr:
        return y
    n = y.shape[-1]
    out = soxr.resample(np.ascontiguousarray(y.T), orig_sr, sr, quality=RESAMPLE_QUALITY).T
    return fix_length(np.ascontiguousarray(out), math.ceil(n * sr / orig_sr))


def fix_length(y: np.ndarray, n: int) -> np.ndarray:
    """``y`` [shape=(..., m)] trimmed or zero-padded to ``n`` samples on its last axis."""
    if y.shape[-1] >= n:
        return y[..., :n]
    return np.concatenate([y, np.zeros((*y.shape[:-1], n - y.shape[-1]), dtype=y.dtype)], axis=-1)


def target_rate(sr: int | None) -> int:
    """``sr``, or the configured analysis rate when ``None``; rejects non-positive or fractional rates."""
    sr = get_config().analysis.sample_rate if sr is None else sr
    if isinstance(sr, bool) or not isinstance(sr, (int, np.integer)) or sr <= 0:
        raise ParameterError(f"sr must be a positive integer sample rate in Hz, got sr={sr!r}")
    return int(sr)


def _read_stereo(f: sf.SoundFile, path: str, offset: float, duration: float | None) -> np.ndarray:
    """[2, n]: the file's two channels, or its channel mean twice when it has one or more than two."""
    count = native.seek_span(f, path, offset, duration)
    block = native.read(f, path, count)
    native.check_complete(path, len(block), count)
    if block.shape[1] == 2:
        return np.ascontiguousarray(block.T)
    mono = native.to_mono(block)
    return np.stack([mono, mono])


def _read_mono(f: sf.SoundFile, path: str, offset: float, duration: float | None) -> np.ndarray:
    count = native.seek_span(f, path, offset, duration)
    block = native.read(f, path, count)
    native.check_complete(path, len(block), count)
    return native.to_mono(block)
