"""Finding audio files and identifying them by content.

A file's identity is the BLAKE2b hash of its bytes, so a renamed or moved file keeps its
track id and its analysis. Re-hashing is skipped when (path, size, mtime) are unchanged.
"""
from __future__ import annotations

import errno
import hashlib
import os
import stat
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


@dataclass(frozen=True)
class Unreadable:
    """An audio-named entry the walk cannot hand on as a file: the path (as text that can be
    stored: bytes that are not UTF-8 escaped as ``\\xNN``), what is wrong, what to do."""

    path: str
    problem: str
    hint: str

    @property
    def message(self) -> str:
        return f"{self.path}: {self.problem} ({self.hint})"


def content_hash(path: str | os.PathLike, *, chunk: int = 1 << 20) -> str:
    """BLAKE2b-128 of the file's bytes, as hex."""
    h = hashlib.blake2b(digest_size=HASH_BYTES)
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def track_id_of(content_hash: str) -> str:
    return content_hash[:TRACK_ID_CHARS]


def walk_audio(paths: Iterable[str | os.PathLike]) -> Iterator[FileStat | Unreadable]:
    """Every audio file under ``paths`` (files or folders), in sorted, deterministic order.

    Hidden files and folders (names starting with '.') are skipped, so a library kept inside a
    scanned folder is never scanned as music. Links to folders are not followed (no loops);
    links to files are followed. Audio-named entries that cannot be scanned come out as
    :class:`Unreadable`: dangling links, link loops, names that are not valid UTF-8, things that
    are not regular files (FIFOs, devices) and entries that vanish or refuse ``stat``.
    Folders named like audio (``x.mp3/``) are walked as folders.
    """
    for root in paths:
        root = Path(root).expanduser()
        if not root.exists():
            raise CatalogError(f"path to scan {str(root)!r} does not exist")
        if not root.is_dir():
            candidates = [root]
        else:
            candidates = []
            for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
                dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
                candidates.extend(Path(dirpath) / f for f in sorted(filenames) if not f.startswith("."))
        for p in candidates:
            if is_audio_path(p):
                yield _stat(p)


def _stat(p: Path) -> FileStat | Unreadable:
    name = storable_path(str(p.absolute()))
    if name != str(p.absolute()):
        return Unreadable(name, "the file name is not valid UTF-8 (mir stores paths as UTF-8 text)",
                          "rename the file, e.g. with `convmv -f latin1 -t utf8 --notest`")
    try:
        st = p.stat()
    except OSError as exc:
        if p.is_symlink():
            problem = ("symbolic link loop" if exc.errno == errno.ELOOP
                       else f"dangling symbolic link to {os.readlink(p)!r}")
            return Unreadable(name, problem, "fix or remove the link")
        return Unreadable(name, f"cannot be read: {exc.strerror}", "check the file and its permissions")
    if not stat.S_ISREG(st.st_mode):
        return Unreadable(name, "not a regular file", "only audio files are scanned; remove or rename it")
    return FileStat(str(p.resolve()), st.st_size, st.st_mtime_ns)


def storable_path(path: str) -> str:
    """``path`` as valid UTF-8 text: bytes that are not UTF-8 (surrogate escapes) become ``\\xNN``."""
    try:
        path.encode("utf-8")
        return path
    except UnicodeEncodeError:
        return os.fsencode(path).decode("utf-8", "backslashreplace")
