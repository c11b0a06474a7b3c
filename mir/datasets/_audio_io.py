"""Writing the rendered clips through :mod:`mir.audio`: deterministic bytes, metadata, a decode check.

Every clip's Ogg serial number derives from the clip (see :func:`mir.audio.save`), so a build gives
the same bytes on every run.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .. import audio
from ..audio.save import decoded_stats
from ..errors import AudioError, DatasetError, ParameterError

FORMATS = ("flac", "wav", "ogg", "mp3")


def save(path: str | os.PathLike, y: np.ndarray, sr: int, *, fmt: str, tags: dict[str, str] | None = None,
         serial: int = 0) -> bytes:
    """Atomically write ``y`` (float, shape ``(n, channels)``) to ``path`` as ``fmt`` with ``tags``;
    returns the final file bytes."""
    if fmt not in FORMATS:
        raise DatasetError(f"unknown audio format {fmt!r}; known: {sorted(FORMATS)}")
    try:
        audio.save(path, np.asarray(y).T, sr, format=fmt, ogg_serial=serial & 0x7FFFFFFF, metadata=tags)
    except ParameterError as exc:
        raise DatasetError(str(exc)) from None
    return Path(path).read_bytes()


def decode_stats(path: str | os.PathLike) -> tuple[int, int, int, float]:
    """(frames, sample rate, channels, peak |sample|) of an audio file, by decoding it fully."""
    try:
        return decoded_stats(path)
    except AudioError as exc:
        raise DatasetError(str(exc)) from None
