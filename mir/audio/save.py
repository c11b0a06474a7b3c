"""Writing audio files atomically: wav, flac, ogg (Vorbis), opus, mp3, aiff."""
from __future__ import annotations

import os

import numpy as np
import soundfile as sf
import soxr

from ..atomic import atomic_path
from ..errors import ParameterError
from .formats import WRITE_FORMATS, format_from_extension
from .load import RESAMPLE_QUALITY
from .validate import check_finite

OPUS_RATES = frozenset({8000, 12000, 16000, 24000, 48000})


def save(
    path: str | os.PathLike,
    y: np.ndarray,
    sr: int,
    *,
    format: str | None = None,
    subtype: str | None = None,
) -> None:
    """Write ``y`` to ``path``; a reader never sees a half-written file.

    Parameters
    ----------
    path : target file; its extension picks the format unless ``format`` is given
    y : np.ndarray [shape=(n,) mono or (channels, n)], finite floats; integer subtypes clip ``|y| > 1``
    sr : sample rate of ``y`` in Hz. Opus only takes 8, 12, 16, 24 or 48 kHz: other rates are
        resampled to 48 kHz. MP3 only takes the MPEG rates (8 kHz to 48 kHz).
    format : ``"wav"``, ``"flac"``, ``"ogg"`` (Vorbis), ``"opus"``, ``"mp3"`` or ``"aiff"``
    subtype : soundfile subtype such as ``"PCM_24"`` or ``"FLOAT"``; ``None`` = the format's
        default (PCM_16 for wav/flac/aiff)

    Raises
    ------
    ParameterError : unknown format, bad ``y``/``sr``, or a combination the encoder refuses
    InvalidSamplesError : ``y`` holds NaN or infinity
    """
    path = os.fspath(path)
    fmt = (format or format_from_extension(path)).lower()
    if fmt not in WRITE_FORMATS:
        raise ParameterError(f"{path}: cannot write format {fmt!r}; mir writes {', '.join(WRITE_FORMATS)}")
    if isinstance(sr, bool) or not isinstance(sr, (int, np.integer)) or sr <= 0:
        raise ParameterError(f"{path}: sr must be a positive integer sample rate in Hz, got sr={sr!r}")
    frames = _as_frames(path, y, sr)
    if fmt == "opus" and sr not in OPUS_RATES:
        frames, sr = soxr.resample(frames, sr, 48000, quality=RESAMPLE_QUALITY), 48000
    sf_format, default_subtype = WRITE_FORMATS[fmt]
    subtype = subtype or default_subtype
    with atomic_path(path) as tmp:
        try:
            sf.write(tmp, frames, sr, format=sf_format, subtype=subtype)
        except (sf.SoundFileError, ValueError, TypeError) as exc:
            raise ParameterError(f"{path}: cannot write {fmt} (subtype={subtype}, sr={sr}): {exc}") from None


def _as_frames(path: str, y: np.ndarray, sr: int) -> np.ndarray:
    """``y`` as [shape=(n, channels)], the layout soundfile writes."""
    y = np.asarray(y)
    if y.ndim not in (1, 2) or not np.issubdtype(y.dtype, np.floating):
        raise ParameterError(f"{path}: y must be a floating-point array of shape (n,) or (channels, n), "
                             f"got dtype={y.dtype}, shape={y.shape}")
    check_finite(y.ravel(), sr=sr, path=path)
    return np.ascontiguousarray(y.reshape(1, -1).T if y.ndim == 1 else y.T)
