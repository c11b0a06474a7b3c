"""Writing audio files atomically: wav, flac, ogg (Vorbis), opus, mp3, aiff; reading a written file back.

With ``ogg_serial`` and ``metadata`` a write is byte-deterministic: libsndfile gives every Ogg stream a
random serial number, so Ogg pages are rewritten with the given serial (mutagen recomputes the page
CRCs), and metadata goes in in one fixed layout (:func:`mir.audio.metadata.stamp_metadata`). FLAC, WAV and MP3
(LAME through libsndfile) are deterministic as they are.
"""
from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from ..atomic import atomic_path
from ..errors import DecodeError, ParameterError
from .formats import WRITE_FORMATS, format_from_extension
from .load import RESAMPLE_QUALITY
from .metadata import stamp_metadata
from .validate import check_finite

OPUS_RATES = frozenset({8000, 12000, 16000, 24000, 48000})


def save(
    path: str | os.PathLike,
    y: np.ndarray,
    sr: int,
    *,
    format: str | None = None,
    subtype: str | None = None,
    ogg_serial: int | None = None,
    metadata: dict[str, str] | None = None,
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
    ogg_serial : Ogg stream serial number (0 to 2**32 - 1) for ogg/opus, instead of a random one
    metadata : text fields written into the new file with :func:`~mir.audio.metadata.stamp_metadata`

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
    if ogg_serial is not None and not (isinstance(ogg_serial, (int, np.integer)) and 0 <= ogg_serial < 2**32):
        raise ParameterError(f"{path}: ogg_serial must be an int from 0 to 2**32 - 1, got {ogg_serial!r}")
    sf_format, default_subtype = WRITE_FORMATS[fmt]
    subtype = subtype or default_subtype
    with atomic_path(path) as tmp:
        try:
            sf.write(tmp, frames, sr, format=sf_format, subtype=subtype)
        except (sf.SoundFileError, ValueError, TypeError) as exc:
            raise ParameterError(f"{path}: cannot write {fmt} (subtype={subtype}, sr={sr}): {exc}") from None
        if ogg_serial is not None and sf_format == "OGG":
            Path(tmp).write_bytes(_with_ogg_serial(Path(tmp).read_bytes(), int(ogg_serial)))
        if metadata:
            stamp_metadata(tmp, metadata, format=fmt)


def decoded_stats(path: str | os.PathLike) -> tuple[int, int, int, float]:
    """Decode a written file in full, at its own rate and channels, as any reader gets it back:
    ``(frames, sample rate, channels, peak |sample|)`` (lossy codecs can overshoot the written peak)."""
    try:
        y, sr = sf.read(os.fspath(path), dtype="float32", always_2d=True)
    except Exception as exc:  # noqa: BLE001 - libsndfile raises plain RuntimeError/LibsndfileError
        raise DecodeError(path, f"does not decode ({exc})") from None
    peak = float(np.max(np.abs(y))) if y.size else 0.0
    return int(y.shape[0]), int(sr), int(y.shape[1]), peak


def _with_ogg_serial(data: bytes, serial: int) -> bytes:
    """The Ogg stream ``data`` with every page's serial number set to ``serial``."""
    from mutagen.ogg import OggPage

    src, out = io.BytesIO(data), io.BytesIO()
    while True:
        try:
            page = OggPage(src)
        except EOFError:
            break
        page.serial = serial
        out.write(page.write())
    return out.getvalue()


def _as_frames(path: str, y: np.ndarray, sr: int) -> np.ndarray:
    """``y`` as [shape=(n, channels)], the layout soundfile writes."""
    y = np.asarray(y)
    if y.ndim not in (1, 2) or not np.issubdtype(y.dtype, np.floating):
        raise ParameterError(f"{path}: y must be a floating-point array of shape (n,) or (channels, n), "
                             f"got dtype={y.dtype}, shape={y.shape}")
    check_finite(y.ravel(), sr=sr, path=path)
    return np.ascontiguousarray(y.reshape(1, -1).T if y.ndim == 1 else y.T)


def trim_trailing_silence(path: str | os.PathLike, *, floor: float = 1e-4, keep: float = 0.5) -> bool:
    """Cut the digital silence after the last sample above ``floor`` (keeping ``keep`` seconds of release),
    rewriting ``path`` atomically as FLAC; True when something was cut. Tracker-module renders leave such
    tails (a render of ``pingus-2.it`` holds 22 s of music and 70 s of zeros)."""
    y, sr = sf.read(os.fspath(path), dtype="float32", always_2d=True)
    loud = np.flatnonzero(np.abs(y).max(axis=1) > floor)
    end = 0 if loud.size == 0 else min(len(y), int(loud[-1]) + 1 + int(sr * keep))
    if end >= len(y):
        return False
    save(path, y[:end].T, sr, format="flac")
    return True
