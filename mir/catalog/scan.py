"""Finding audio files and identifying them by content.

A file's identity is the BLAKE2b hash of its bytes, so a renamed or moved file keeps its
track id and its analysis. Re-hashing is skipped when (path, size, mtime) are unchanged.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

from ..audio import is_audio_path
from ..errors import CatalogError

HASH_BYTES = 16  # 128-bit content hash, 32 hex characters
TRACK_ID_CHARS = 16  # track id = first 16 hex characters of the content hash


@dataclass(frozen=True)
class FileStat:
    path: str  # absolute, normalised
    size: int
    mtime_ns: int


def content_hash(path: str | os.PathLike, *, chunk: int = 1 << 20) -> str:
    """BLAKE2b-128 of the file's bytes, as hex."""
    h = hashlib.blake2b(digest_size=HASH_BYTES)
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def track_id_of(content_hash: str) -> str:
    return content_hash[:TRACK_ID_CHARS]


def walk_audio(paths: Iterable[str | os.PathLike]) -> Iterator[FileStat]:
    """Every audio file under ``paths`` (files or folders), in sorted, deterministic order.

    Hidden files and folders (names starting with '.') are skipped, so a library kept inside a
    scanned folder is never scanned as music.
    """
    for root in paths:
        root = Path(root).expanduser()
        if not root.exists():
            raise CatalogError(f"path to scan {str(root)!r} does not exist")
        if root.is_file():
            candidates = [root]
        else:
            candidates = []
            for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
                dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
                candidates.extend(Path(dirpath) / f for f in sorted(filenames) if not f.startswith("."))
        for p in candidates:
            if not is_audio_path(p):
                continue
            try:
                st = p.stat()
            except OSError:
                continue  # vanished or unreadable between listing and stat: the next scan sees it
            if not p.is_file():
                continue
            yield FileStat(str(p.resolve()), st.st_size, st.st_mtime_ns)
