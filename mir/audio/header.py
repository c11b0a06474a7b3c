"""What a file's own header says about its length, read from the raw bytes.

libsndfile takes the length of WAV and AIFF files from the bytes on disk (the data size trimmed
to what is there) and the length of Ogg from its last complete page, so a file cut short opens
and decodes without complaint at the shorter length. :func:`truncation` reads the declared length
itself and says when the file holds less. (FLAC and MP3 truncation shows while decoding, see
:mod:`mir.audio.native`.)
"""
from __future__ import annotations

import os
import struct

_OGG_MAX_PAGE = 27 + 255 + 255 * 255  # header + full segment table + 255 segments of 255 bytes
_OGG_EOS = 0x04
_UNKNOWN_SIZES = frozenset({0, 0xFFFFFFFF})  # streamed WAVs leave the data size unset


def truncation(path: str | os.PathLike, fmt: str, frames: int) -> str | None:
    """A phrase saying how ``path`` is cut short, or ``None`` when its header and bytes agree.

    ``fmt`` is the mir format name (``AudioInfo.format``: ``"wav"``, ``"aiff"``, ``"ogg"``,
    ``"opus"``; other formats return ``None``) and ``frames`` the frames the decoder found
    (``AudioInfo.frames``). Unreadable or unknown headers return ``None``: this is a check on top
    of decoding, never a reason to refuse a file.
    """
    try:
        with open(path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            if fmt == "wav":
                declared = _wav_frames(fh, size)
            elif fmt == "aiff":
                declared = _aiff_frames(fh)
            elif fmt in ("ogg", "opus"):
                return _ogg_truncation(fh, size)
            else:
                return None
    except (OSError, struct.error):
        return None
    if declared is None or declared <= frames:
        return None
    return (f"the header declares {declared} frames, the file holds {frames} "
            f"({100 * frames / declared:.0f}%)")


def _chunks(fh, start: int, end: int, order: str):
    """``(id, size, data offset)`` of the RIFF/IFF chunks from ``start`` (sizes as declared)."""
    pos = start
    while pos + 8 <= end:
        fh.seek(pos)
        head = fh.read(8)
        if len(head) < 8:
            return
        cid, size = head[:4], struct.unpack(order + "I", head[4:])[0]
        yield cid, size, pos + 8
        pos += 8 + size + (size & 1)


def _wav_frames(fh, size: int) -> int | None:
    head = fh.read(12)
    if len(head) < 12 or head[8:12] != b"WAVE" or head[:4] not in (b"RIFF", b"RIFX"):
        return None  # RF64 keeps its sizes in a ds64 chunk: not checked
    order = "<" if head[:4] == b"RIFF" else ">"
    block_align = None
    for cid, csize, at in _chunks(fh, 12, size, order):
        if cid == b"fmt ":
            fh.seek(at + 12)
            block_align = struct.unpack(order + "H", fh.read(2))[0]
        elif cid == b"data":
            if csize in _UNKNOWN_SIZES or not block_align:
                return None
            return csize // block_align
    return None


def _aiff_frames(fh) -> int | None:
    head = fh.read(12)
    if len(head) < 12 or head[:4] != b"FORM" or head[8:12] not in (b"AIFF", b"AIFC"):
        return None
    fh.seek(0, os.SEEK_END)
    size = fh.tell()
    for cid, _, at in _chunks(fh, 12, size, ">"):
        if cid == b"COMM":
            fh.seek(at + 2)
            return struct.unpack(">I", fh.read(4))[0]
    return None


def _ogg_truncation(fh, size: int) -> str | None:
    """An Ogg stream ends with a complete page flagged end-of-stream; a cut file does not."""
    start = max(0, size - _OGG_MAX_PAGE)
    fh.seek(start)
    tail = fh.read()
    at = tail.rfind(b"OggS")
    while at >= 0:  # the last page is the one that ends exactly at the end of the file
        if at + 27 <= len(tail) and tail[at + 4] == 0:
            n_seg = tail[at + 26]
            table = tail[at + 27:at + 27 + n_seg]
            if len(table) == n_seg and at + 27 + n_seg + sum(table) == len(tail):
                if tail[at + 5] & _OGG_EOS:
                    return None
                return "the Ogg stream stops before its end-of-stream page"
        at = tail.rfind(b"OggS", 0, at)
    return "the file does not end with a complete Ogg page"
