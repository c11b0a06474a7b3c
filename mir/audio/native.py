"""Reading through libsndfile (soundfile): opening with error mapping and header checks, frame spans,
reads that turn decoder failures and truncation into :class:`~mir.errors.DecodeError`.

Truncated files: a decoder error (FLAC, Opus) or decoding fewer frames than the header declares
(MP3, Ogg) raises ``DecodeError``. Truncated WAV/AIFF load the frames present: libsndfile trims
the declared length to the bytes on disk, so the loss cannot be seen from here. A truncated Ogg
whose length cannot be read at all has no frames and fails as empty audio.
"""
from __future__ import annotations

import contextlib
import math
from typing import Iterator

import numpy as np
import soundfile as sf

from ..errors import ChannelLayoutError, DecodeError, MissingDecoderError, ParameterError
from . import ffmpeg
from .formats import FFMPEG_EXTENSIONS, NATIVE_EXTENSIONS, extension, format_from_extension
from .validate import check_layout

# libsndfile error codes SFE_CHANNEL_COUNT_ZERO, SFE_CHANNEL_COUNT, SFE_BAD_CHANNEL_COUNT
_CHANNEL_ERRORS = frozenset({32, 33, 34})
# libsndfile reports MP3 data it cannot sync to as SFE_BAD_FILE, "File does not exist ..."
_MISREPORTED_UNRECOGNISED = 7
# MP3 lengths without a Xing header are estimates: only a larger shortfall counts as truncation
SHORT_READ_TOLERANCE = 0.01


@contextlib.contextmanager
def open_soundfile(path: str) -> Iterator[sf.SoundFile | None]:
    """Open ``path`` with libsndfile and check its header; yield ``None`` when ffmpeg must decode it.

    Raises the matching ``AudioError`` when neither libsndfile nor ffmpeg can take the file.
    """
    try:
        f = sf.SoundFile(path)
    except sf.SoundFileError as exc:
        f, reason = None, exc
    if f is None:
        _require_ffmpeg(path, reason)
        yield None
        return
    with f:
        check_layout(path, f.samplerate, f.channels)
        yield f


def check_span(offset: float, duration: float | None) -> None:
    """Reject a negative or non-finite ``offset`` and a non-positive ``duration`` (seconds)."""
    if not (math.isfinite(offset) and offset >= 0):
        raise ParameterError(f"offset must be a finite number of seconds >= 0, got offset={offset!r}")
    if duration is not None and not (math.isfinite(duration) and duration > 0):
        raise ParameterError(f"duration must be None or seconds > 0, got duration={duration!r}")


def seek_span(f: sf.SoundFile, path: str, offset: float, duration: float | None) -> int:
    """Seek ``f`` to ``offset`` seconds; return how many frames ``duration`` seconds spans there,
    clipped to the end of the file."""
    start = int(offset * f.samplerate)
    if start and start >= f.frames:
        raise ParameterError(f"{path}: offset={offset} s is at or past the end of the audio ({f.frames / f.samplerate:.3f} s)")
    count = f.frames - start
    if duration is not None:
        count = min(count, int(duration * f.samplerate))
    if start:
        try:
            f.seek(start)
        except sf.SoundFileError as exc:
            raise DecodeError(path, f"cannot seek to {offset} s ({_reason(exc)})", "the file is corrupt") from None
    return count


def read(f: sf.SoundFile, path: str, frames: int, out: np.ndarray | None = None) -> np.ndarray:
    """Read up to ``frames`` frames as float32 [shape=(n, channels)], into ``out`` when given."""
    try:
        return f.read(frames, dtype="float32", always_2d=True, out=None if out is None else out[:frames])
    except sf.SoundFileError as exc:
        raise DecodeError(path, f"decoding failed after frame {f.tell()} ({_reason(exc)})",
                          "the file is truncated or corrupt") from None


def check_complete(path: str, got: int, expected: int) -> None:
    """Raise :class:`DecodeError` when clearly fewer frames decoded than the header declares."""
    if got < expected * (1 - SHORT_READ_TOLERANCE):
        raise DecodeError(path, f"truncated: decoded {got} of the {expected} frames the header declares",
                          "copy or download the file again")


def to_mono(block: np.ndarray) -> np.ndarray:
    """Channel mean of ``block`` [shape=(n, channels)] -> new float32 array [shape=(n,)]."""
    return block.mean(axis=1, dtype=np.float32) if block.shape[1] > 1 else block[:, 0].copy()


def _require_ffmpeg(path: str, exc: sf.SoundFileError) -> None:
    """Return when ffmpeg should decode a file libsndfile refused; otherwise raise the right error."""
    ext, fmt = extension(path), format_from_extension(path) or "extension-less"
    if getattr(exc, "code", None) in _CHANNEL_ERRORS:
        raise ChannelLayoutError(path, f"bad channel count in the header ({_reason(exc)})", "the header is corrupt")
    if ext in NATIVE_EXTENSIONS:
        raise DecodeError(path, f"cannot decode as {fmt} ({_reason(exc)})",
                          f"the file is corrupt, truncated or not really {fmt}")
    if ffmpeg.available():
        return
    if ext in FFMPEG_EXTENSIONS:
        raise MissingDecoderError(path, f"no decoder for {fmt} files", "install ffmpeg to decode them")
    raise DecodeError(path, f"not a recognised audio format ({_reason(exc)})", "install ffmpeg to decode other formats")


def _reason(exc: sf.SoundFileError) -> str:
    if getattr(exc, "code", None) == _MISREPORTED_UNRECOGNISED:
        return "libsndfile: data not recognised"
    return f"libsndfile: {getattr(exc, 'error_string', None) or exc}".rstrip(".")
