"""Content-addressed analysis cache: per-stage result tables and per-track arrays.

Results are keyed by (content hash, stage name, stage version). A stage version changes when
its code or parameters change (for model outputs, the model id), so bumping it recomputes only
that stage. Rows are appended as immutable Parquet *part* files, each written atomically; a
killed job loses at most the rows it had not flushed, and readers de-duplicate by hash, so a
part written twice (a crash between compaction and clean-up) never shows twice.
"""
from __future__ import annotations

import contextlib
import itertools
import os
import re
import time
from pathlib import Path

import numpy as np
import pandas as pd

from .. import atomic
from ..errors import CatalogError

_SAFE = re.compile(r"^[A-Za-z0-9_.+-]+$")


def _check_name(kind: str, value: str) -> str:
    if not value or not _SAFE.match(value):
        raise CatalogError(f"invalid {kind} {value!r}: use letters, digits and . _ + - only")
    return value


_NPY_HEADER_BYTES = 128  # fixed-size .npy v1.0 header, so it can be rewritten in place


def _npy_header(dtype: np.dtype, shape: tuple[int, int]) -> bytes:
    """A ``.npy`` v1.0 header for a Fortran-ordered array, padded to ``_NPY_HEADER_BYTES``."""
    text = repr({"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": True, "shape": shape})
    body_len = _NPY_HEADER_BYTES - 10
    body = text.ljust(body_len - 1).encode("latin1") + b"\n"
    if len(body) != body_len:
        raise CatalogError(f"array shape {shape} too large for the fixed .npy header")
    return b"\x93NUMPY\x01\x00" + body_len.to_bytes(2, "little") + body


class PartTable:
    """A table stored as a folder of Parquet parts, de-duplicated by ``key`` on read (last wins)."""

    _counter = itertools.count()

    def __init__(self, folder: str | os.PathLike, *, key: str | list[str] = "hash"):
        self.folder = Path(folder)
        self.key = [key] if isinstance(key, str) else list(key)

    def parts(self) -> list[Path]:
        if not self.folder.is_dir():
            return []
        return sorted(self.folder.glob("part-*.parquet"))

    def append(self, rows: list[dict] | pd.DataFrame) -> Path | None:
        frame = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(rows)
        if frame.empty:
            return None
        # time-ordered, unique names: later parts win on read
        name = f"part-{time.time_ns():020d}-{os.getpid()}-{next(self._counter):06d}.parquet"
        path = self.folder / name
        atomic.write_parquet(path, frame)
        return path

    def read(self, columns: list[str] | None = None) -> pd.DataFrame:
        """The de-duplicated rows; ``columns`` selects columns (the key columns are read anyway)."""
        parts = self.parts()
        if not parts:
            return pd.DataFrame(columns=columns or self.key)
        wanted = None if columns is None else list(dict.fromkeys([*self.key, *columns]))
        frames = []
        for p in parts:
            try:
                frames.append(pd.read_parquet(p, columns=wanted))
            except Exception as exc:  # an atomic write can't leave a torn part; say which file if it happens
                raise CatalogError(f"cannot read cache part {p}: {exc}; delete it and re-run the job") from exc
        frame = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
        frame = frame.drop_duplicates(subset=self.key, keep="last").reset_index(drop=True)
        return frame if columns is None else frame[columns]

    def keys(self) -> set:
        frame = self.read(columns=self.key)
        if len(self.key) == 1:
            return set(frame[self.key[0]])
        return set(map(tuple, frame[self.key].itertuples(index=False)))

    def compact(self) -> None:
        """Merge all parts into one (atomically written before the old parts are removed)."""
        parts = self.parts()
        if len(parts) <= 1:
            return
        merged = self.read().sort_values(self.key, kind="stable").reset_index(drop=True)
        new = self.append(merged)
        for p in parts:
            if p != new:
                p.unlink(missing_ok=True)
        atomic.clean_stale_temps(self.folder)


class StageStore:
    """Result rows of every analysis stage, under ``root/<stage>/<version>/``."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    def table(self, stage: str, version: str) -> PartTable:
        return PartTable(self.root / _check_name("stage", stage) / _check_name("stage version", version))

    def versions(self, stage: str) -> list[str]:
        folder = self.root / stage
        return sorted(p.name for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []


class ArrayStore:
    """Per-track arrays (e.g. log-mel spectrograms) as ``root/<stage>/<version>/<h[:2]>/<hash>.npy``."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    def path(self, stage: str, version: str, content_hash: str) -> Path:
        _check_name("stage", stage), _check_name("stage version", version), _check_name("hash", content_hash)
        return self.root / stage / version / content_hash[:2] / f"{content_hash}.npy"

    def save(self, stage: str, version: str, content_hash: str, array: np.ndarray) -> Path:
        path = self.path(stage, version, content_hash)
        atomic.save_npy(path, np.ascontiguousarray(array))
        return path

    @contextlib.contextmanager
    def column_writer(self, stage: str, version: str, content_hash: str, *, rows: int, dtype=np.float32):
        """Write a ``[rows, t]`` array one block of columns at a time, ``t`` unknown until the end.

        The ``.npy`` is stored in Fortran order, so appended columns (log-mel frames) go straight
        to disk and memory stays bounded by one block, whatever the track's length. Yields an
        ``append(block [rows, k])`` function; the file appears atomically when the block exits.
        """
        path = self.path(stage, version, content_hash)
        dtype = np.dtype(dtype)
        count = 0
        with atomic.atomic_path(path) as tmp, open(tmp, "wb") as fh:
            fh.write(b"\0" * _NPY_HEADER_BYTES)

            def append(block: np.ndarray) -> None:
                nonlocal count
                block = np.asarray(block, dtype=dtype)
                if block.ndim != 2 or block.shape[0] != rows:
                    raise CatalogError(f"column_writer for {content_hash}: block of shape {block.shape}, "
                                       f"expected ({rows}, k)")
                fh.write(np.ascontiguousarray(block.T).tobytes())
                count += block.shape[1]

            yield append
            fh.seek(0)
            fh.write(_npy_header(dtype, (rows, count)))

    def load(self, stage: str, version: str, content_hash: str, *, mmap: bool = False) -> np.ndarray:
        path = self.path(stage, version, content_hash)
        if not path.exists():
            raise CatalogError(f"no {stage} ({version}) array cached for content hash {content_hash}; run `mir analyze`")
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
