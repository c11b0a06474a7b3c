"""Checks on audio files and decoded samples; each failure raises an :class:`~mir.errors.AudioError`
subclass naming the file, the problem and a hint.

The sample checks run in a fixed order: empty, non-finite, too short, silent. :func:`check_samples`
runs them on a whole signal; :func:`check_finite` and :func:`check_extent` let a streaming reader run
them block by block and at the end.
"""
from __future__ import annotations

import math
import os
import stat

import numpy as np

from ..config import get_config
from ..errors import (
    AudioNotFoundError,
    ChannelLayoutError,
    EmptyAudioError,
    InvalidSamplesError,
    ParameterError,
    SampleRateError,
    SilentAudioError,
    TooShortError,
)


def check_samples(
    y: np.ndarray,
    *,
    sr: float,
    path: str | os.PathLike | None = None,
    min_duration: float | None = None,
    silence_peak: float | None = None,
) -> np.ndarray:
    """Validate a decoded mono signal and return it unchanged.

    Parameters
    ----------
    y : np.ndarray [shape=(n,), floating dtype]
    sr : sample rate of ``y`` in Hz
    path : the file ``y`` came from, named in error messages (``None`` for in-memory audio)
    min_duration : seconds; ``None`` = ``get_config().analysis.min_duration``
    silence_peak : peak ``|y|`` at or below which audio counts as silent; ``None`` = config value

    Raises
    ------
    ParameterError : ``y`` is not a 1-D floating-point array, or ``sr`` is not positive
    EmptyAudioError, InvalidSamplesError, TooShortError, SilentAudioError
    """
    where = "<in-memory audio>" if path is None else os.fspath(path)
    if not isinstance(y, np.ndarray) or y.ndim != 1 or not np.issubdtype(y.dtype, np.floating):
        got = f"dtype={y.dtype}, ndim={y.ndim}" if isinstance(y, np.ndarray) else type(y).__name__
        raise ParameterError(f"{where}: samples must be a 1-D floating-point array, got {got}")
    if not (is_seconds(sr) and sr > 0):
        raise ParameterError(f"{where}: sample rate must be positive, got sr={sr!r}")
    if y.size:
        check_finite(y, sr=sr, path=path)
    peak = max(float(y.max()), -float(y.min())) if y.size else 0.0
    check_extent(y.size, peak, sr=sr, path=path, min_duration=min_duration, silence_peak=silence_peak)
    return y


def check_finite(y: np.ndarray, *, sr: float, path: str | os.PathLike | None, start: int | None = None) -> None:
    """Raise :class:`InvalidSamplesError` if ``y`` holds NaN or infinity.

    ``start`` is the index of ``y[0]`` when ``y`` is one block of a stream (``None``: the whole signal).
    """
    finite = np.isfinite(y)
    if finite.all():
        return
    bad = y.size - int(np.count_nonzero(finite))
    first = (start or 0) + int(np.argmin(finite))
    what = f"{bad} of {y.size} samples" if start is None else f"{bad} samples in the block from sample {start}"
    raise InvalidSamplesError(
        path,
        f"{what} are NaN or infinite (first at sample {first}, {first / sr:.3f} s)",
        "the file is corrupt or was written from a broken computation",
    )


def check_extent(
    n: int,
    peak: float,
    *,
    sr: float,
    path: str | os.PathLike | None,
    min_duration: float | None = None,
    silence_peak: float | None = None,
) -> None:
    """Raise if a signal of ``n`` samples at ``sr`` with peak ``|y|`` = ``peak`` is empty, too short or silent."""
    cfg = get_config().analysis
    min_duration = cfg.min_duration if min_duration is None else min_duration
    silence_peak = cfg.silence_peak if silence_peak is None else silence_peak
    if n == 0:
        raise EmptyAudioError(path, "no audio samples",
                              "the file holds only a header or is truncated, or offset/duration selected nothing")
    if n / sr < min_duration:
        raise TooShortError(
            path,
            f"audio lasts {n / sr:.3f} s ({n} samples at {sr:g} Hz), shorter than the minimum {min_duration:g} s",
            "min_duration in the [analysis] config sets the minimum",
        )
    if peak <= silence_peak:
        raise SilentAudioError(
            path, f"all samples are silent (peak {peak:.3g} <= silence_peak {silence_peak:g})",
            "check the recording; silence_peak in the [analysis] config sets the threshold",
        )


def is_seconds(value) -> bool:
    """True for a finite real number (not a bool)."""
    return isinstance(value, (int, float, np.number)) and not isinstance(value, bool) and math.isfinite(value)


def check_span(offset: float, duration: float | None) -> None:
    """Reject a negative or non-finite ``offset`` and a non-positive ``duration`` (seconds)."""
    if not (is_seconds(offset) and offset >= 0):
        raise ParameterError(f"offset must be a finite number of seconds >= 0, got offset={offset!r}")
    if duration is not None and not (is_seconds(duration) and duration > 0):
        raise ParameterError(f"duration must be None or seconds > 0, got duration={duration!r}")


def check_file(path: str | os.PathLike) -> str:
    """Return ``path`` as a string after checking it is a readable, non-empty regular file."""
    path = os.fspath(path)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise AudioNotFoundError(path, "file not found") from None
    except OSError as exc:
        raise AudioNotFoundError(path, f"cannot be read: {exc.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise AudioNotFoundError(path, "not a regular file", "pass an audio file, not a folder or device")
    if not os.access(path, os.R_OK):
        raise AudioNotFoundError(path, "cannot be read: permission denied")
    if st.st_size == 0:
        raise EmptyAudioError(path, "file is empty (0 bytes)", "the copy or download probably failed")
    return path


def check_layout(path: str | os.PathLike, sample_rate: float, channels: int) -> None:
    """Reject absurd header values: a sample rate outside the config's
    ``[min_file_rate, max_file_rate]`` or a channel count of 0 or above ``max_channels``."""
    cfg = get_config().analysis
    if not cfg.min_file_rate <= sample_rate <= cfg.max_file_rate:
        raise SampleRateError(
            path, f"sample rate {sample_rate} Hz is outside {cfg.min_file_rate}..{cfg.max_file_rate} Hz",
            "the header is corrupt; min_file_rate/max_file_rate in the [analysis] config set the range",
        )
    if not 1 <= channels <= cfg.max_channels:
        raise ChannelLayoutError(
            path, f"{channels} channels (mir reads 1..{cfg.max_channels})",
            "the header is corrupt, or raise max_channels in the [analysis] config",
        )
