"""Lossy-codec round trips in memory (no file is written): what a track sounds like after an
Ogg Vorbis or MP3 encode, for training views and robustness benchmarks.

libsndfile (through soundfile) does both encodes, as it does mir's decoding.
"""
from __future__ import annotations

import io

import numpy as np
import soundfile as sf

from ..errors import ParameterError

CODECS = {"ogg": ("OGG", "VORBIS"), "mp3": ("MP3", "MPEG_LAYER_III")}


def reencode(y: np.ndarray, sr: int, *, codec: str = "ogg") -> np.ndarray:
    """``y`` [shape=(n,)] float32 encoded with ``codec`` (``"ogg"`` or ``"mp3"``) and decoded again.

    The result has ``y``'s length (codec priming and padding are trimmed or zero-filled).
    """
    try:
        fmt, subtype = CODECS[codec]
    except KeyError:
        raise ParameterError(f"codec={codec!r} is unknown; known: {sorted(CODECS)}") from None
    y = np.asarray(y, dtype=np.float32)
    if y.ndim != 1 or y.size == 0:
        raise ParameterError(f"y must be a non-empty mono signal [n], got shape {y.shape}")
    buf = io.BytesIO()
    sf.write(buf, np.clip(y, -1.0, 1.0), int(sr), format=fmt, subtype=subtype)
    buf.seek(0)
    z, _ = sf.read(buf, dtype="float32", always_2d=False)
    out = np.zeros_like(y)
    n = min(len(y), len(z))
    out[:n] = z[:n]
    return out
