"""Saving and loading indexes: a folder of data files and a ``manifest.json`` that names them.

Layout of a saved index (``<token>`` is new for every save)::

    FOLDER/manifest.json              what follows, written last and atomically (the commit point)
    FOLDER/labels-<token>.npy         track id of each int64 label ("" = removed), str array
    FOLDER/tombstones-<token>.npy     removed labels still stored (HNSW, refine), int64
    FOLDER/index-<token>.faiss        FAISS native format (FaissIndex)
    FOLDER/positions-<token>.npy      label of each stored vector, int64 (FaissIndex types without native ids)
    FOLDER/matrix-<token>.npy         unit vectors [n, d] float32 (ExactIndex), and rows-<token>.npy

Every data file is written atomically under a fresh name before the manifest points at it; a
killed save leaves the previous index intact (and at most orphan files, removed by the next save).
The manifest records kind, parameters, dimension, count, file sizes and BLAKE2b checksums, plus
whatever the caller adds (the library index adds model id and library state, see
:mod:`mir.similar.library`). Nothing is unpickled: NumPy arrays load with ``allow_pickle=False``.
"""
from __future__ import annotations

import hashlib
import json
import os
import secrets
import time
from pathlib import Path

import numpy as np

from .. import __version__, atomic
from ..errors import CatalogError
from .base import VectorIndex
from .exact import ExactIndex
from .faiss_index import FaissIndex, read_faiss

FORMAT = "mir-index"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
VERIFY_MAX_BYTES = 512 << 20  # verify=None: full checksum up to this total size, sizes only beyond


def file_digest(path: Path) -> str:
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def read_manifest(folder: str | os.PathLike) -> dict:
    path = Path(folder) / MANIFEST
    if not path.exists():
        raise CatalogError(f"no saved index in {str(folder)!r} (no {MANIFEST})")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CatalogError(f"{path} is unreadable ({exc}); delete the folder and build the index again") from None
    head = manifest if isinstance(manifest, dict) else {}
    if head.get("format") != FORMAT or head.get("format_version") != FORMAT_VERSION:
        raise CatalogError(f"{path} is not a {FORMAT} v{FORMAT_VERSION} manifest "
                           f"(format {head.get('format')!r} v{head.get('format_version')!r}); build the index again")
    return manifest


def save_index(index: VectorIndex, folder: str | os.PathLike, *, extra: dict | None = None) -> dict:
    """Write ``index`` into ``folder`` (see the module docstring); returns the manifest."""
    if index.dim_ is None:
        raise CatalogError("cannot save an empty index: build it first")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    token = f"{time.time_ns():x}-{secrets.token_hex(3)}"
    files = {"labels": f"labels-{token}.npy", "tombstones": f"tombstones-{token}.npy"}
    atomic.save_npy(folder / files["labels"], index.labels_)
    atomic.save_npy(folder / files["tombstones"], index.tombstones_)
    if index.kind == "faiss":
        import faiss

        files["index"] = f"index-{token}.faiss"
        atomic.write_with(folder / files["index"], lambda tmp: faiss.write_index(index.index_, str(tmp)))
        if index.inner_labels_ is not None:
            files["positions"] = f"positions-{token}.npy"
            atomic.save_npy(folder / files["positions"], index.inner_labels_)
    elif index.kind == "exact":
        files["matrix"] = f"matrix-{token}.npy"
        files["rows"] = f"rows-{token}.npy"
        atomic.save_npy(folder / files["matrix"], index.matrix_)
        atomic.save_npy(folder / files["rows"], index.row_labels_)
    else:
        raise CatalogError(f"cannot save an index of kind {index.kind!r}")
    digests = {name: file_digest(folder / name) for name in files.values()}
    manifest = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "kind": index.kind, "params": index.params(),
        "dim": int(index.dim_), "count": len(index), "files": files,
        "sizes": {name: (folder / name).stat().st_size for name in files.values()},
        "checksums": digests,
        "checksum": hashlib.blake2b("".join(digests[n] for n in sorted(digests)).encode(), digest_size=16).hexdigest(),
        "saved_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "mir_version": __version__,
        **(extra or {}),
    }
    atomic.write_text(folder / MANIFEST, json.dumps(manifest, indent=1))
    keep = set(files.values()) | {MANIFEST}
    for p in folder.iterdir():  # files of earlier saves (and temps of killed ones)
        if p.is_file() and p.name not in keep and (p.name.split("-")[0] in {"labels", "tombstones", "index", "positions", "matrix", "rows"}
                                                   or p.name.endswith(".tmp")):
            p.unlink(missing_ok=True)
    return manifest


def load_index(folder: str | os.PathLike, *, mmap: bool = False, verify: bool | None = None) -> tuple[VectorIndex, dict]:
    """Load a saved index -> ``(index, manifest)``.

    ``mmap``: memory-map the data where the format allows (exact matrices; FAISS flat, HNSW and IVF
    storage via ``IO_FLAG_MMAP``); such an index is read-only. ``verify``: check BLAKE2b checksums
    (``None``: when the files total at most 512 MiB, otherwise sizes only).
    """
    folder = Path(folder)
    manifest = read_manifest(folder)
    files = manifest["files"]
    total = 0
    for name in files.values():
        path = folder / name
        if not path.exists():
            raise CatalogError(f"index file {path} named by {folder / MANIFEST} is missing; build the index again")
        size = path.stat().st_size
        if size != manifest["sizes"][name]:
            raise CatalogError(f"index file {path} has {size} bytes, the manifest says {manifest['sizes'][name]}: "
                               "it was changed or truncated; build the index again")
        total += size
    if verify or (verify is None and total <= VERIFY_MAX_BYTES):
        for name in files.values():
            if file_digest(folder / name) != manifest["checksums"][name]:
                raise CatalogError(f"index file {folder / name} fails its checksum (corrupt); build the index again")
    labels = np.load(folder / files["labels"], allow_pickle=False)
    tombstones = np.load(folder / files["tombstones"], allow_pickle=False)
    if manifest["kind"] == "faiss":
        params = dict(manifest["params"])
        factory = params.pop("factory")
        index = FaissIndex(factory, **params)
        index.factory_ = factory
        positions = np.load(folder / files["positions"], allow_pickle=False) if "positions" in files else None
        index._set_faiss(read_faiss(folder / files["index"], mmap=mmap), positions)
        index.mmap_ = mmap
    elif manifest["kind"] == "exact":
        index = ExactIndex()
        index.matrix_ = np.load(folder / files["matrix"], mmap_mode="r" if mmap else None, allow_pickle=False)
        index.row_labels_ = np.load(folder / files["rows"], allow_pickle=False)
    else:
        raise CatalogError(f"{folder / MANIFEST}: unknown index kind {manifest['kind']!r}")
    index.dim_ = int(manifest["dim"])
    index._set_table(labels, tombstones)
    if len(index) != manifest["count"]:
        raise CatalogError(f"{folder}: {len(index)} ids stored, the manifest says {manifest['count']}; build the index again")
    return index, manifest
