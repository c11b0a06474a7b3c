"""Writing the rendered clips: encode, tag, verify (private stand-in for ``mir.audio.save``/``write_tags``).

Encoding is byte-deterministic: libsndfile gives every Ogg stream a random serial number, so Ogg
pages are rewritten with a serial derived from the clip (mutagen recomputes the page CRCs).
FLAC, WAV and MP3 (LAME through libsndfile) are deterministic as they are.
"""
from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np

from .. import atomic
from ..errors import DatasetError

FORMATS = {  # extension -> (libsndfile format, subtype)
    "flac": ("FLAC", "PCM_16"),
    "wav": ("WAV", "PCM_16"),
    "ogg": ("OGG", "VORBIS"),
    "mp3": ("MP3", "MPEG_LAYER_III"),
}


def _fixed_ogg_serial(data: bytes, serial: int) -> bytes:
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


def encode(y: np.ndarray, sr: int, fmt: str, *, serial: int = 0x6D697200) -> bytes:
    """``y`` (float, shape ``(n, channels)``) encoded as ``fmt`` (a key of :data:`FORMATS`)."""
    import soundfile as sf

    if fmt not in FORMATS:
        raise DatasetError(f"unknown audio format {fmt!r}; known: {sorted(FORMATS)}")
    major, subtype = FORMATS[fmt]
    buf = io.BytesIO()
    sf.write(buf, y, sr, format=major, subtype=subtype)
    data = buf.getvalue()
    if fmt == "ogg":
        data = _fixed_ogg_serial(data, serial & 0x7FFFFFFF)
    return data


def write_tags(path: str | os.PathLike, tags: dict[str, str], *, fmt: str | None = None) -> None:
    """Write ``title``/``artist``/``album``/``genre``/``comment`` (and any other text keys) into the file.

    ``fmt`` names the container when the file name does not (temp files).
    """
    path = Path(path)
    ext = fmt or path.suffix.lower().lstrip(".")
    if ext in ("flac", "ogg"):
        if ext == "flac":
            from mutagen.flac import FLAC as _Kind
        else:
            from mutagen.oggvorbis import OggVorbis as _Kind
        f = _Kind(path)
        if f.tags is None:
            f.add_tags()
        for k, v in tags.items():
            f.tags[k.upper()] = [str(v)]
        f.save()
        return
    from mutagen.id3 import COMM, ID3, TALB, TCON, TIT2, TPE1, TXXX

    frames = {"title": TIT2, "artist": TPE1, "album": TALB, "genre": TCON}
    if ext == "mp3":
        id3 = ID3()
    elif ext == "wav":
        from mutagen.wave import WAVE

        wav = WAVE(path)
        if wav.tags is None:
            wav.add_tags()
        id3 = wav.tags
    else:
        raise DatasetError(f"{path}: cannot write tags to .{ext} files")
    for k, v in tags.items():
        if k in frames:
            id3.add(frames[k](encoding=3, text=[str(v)]))
        elif k == "comment":
            id3.add(COMM(encoding=3, lang="eng", desc="", text=[str(v)]))
        else:
            id3.add(TXXX(encoding=3, desc=k.upper(), text=[str(v)]))
    if ext == "mp3":
        id3.save(path, v2_version=4)
    else:
        wav.save()


def save(path: str | os.PathLike, y: np.ndarray, sr: int, *, fmt: str, tags: dict[str, str] | None = None,
         serial: int = 0) -> bytes:
    """Atomically write ``y`` to ``path`` as ``fmt`` with ``tags``; returns the final file bytes."""
    data = encode(y, sr, fmt, serial=serial)
    path = Path(path)
    with atomic.atomic_path(path) as tmp:
        tmp.write_bytes(data)
        if tags:
            write_tags(tmp, tags, fmt=fmt)
        data = tmp.read_bytes()
    return data


def decode_stats(path: str | os.PathLike) -> tuple[int, int, int, float]:
    """(frames, sample rate, channels, peak |sample|) of an audio file, by decoding it fully."""
    import soundfile as sf

    try:
        y, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as exc:  # libsndfile raises plain RuntimeError/LibsndfileError
        raise DatasetError(f"{path}: does not decode ({exc})") from None
    peak = float(np.max(np.abs(y))) if y.size else 0.0
    return int(y.shape[0]), int(sr), int(y.shape[1]), peak
