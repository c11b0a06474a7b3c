"""A library's similarity index for one model, kept in step with the catalogue.

Stored under ``LIB/indexes/<model_id>/`` (:mod:`mir.index.storage` layout). The manifest adds::

    model_id        the model whose embeddings are indexed (stage ``tags/<model_id>``)
    index_type      the FAISS factory string (or "exact")
    tracks_digest   BLAKE2b of the sorted indexed track ids: the library state the index matches

:func:`build_library_index` indexes every present, tagged track; :func:`update_library_index`
adds newly tagged tracks and removes missing ones in place (no rebuild); :func:`open_library_index`
refuses an index whose model, dimension or track set differ from the library, naming the command
that fixes it. Writers hold the library lock; saves are atomic, so readers never see a torn index.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from ..catalog import Library
from ..catalog.predictions import load_embeddings, load_tags, model_info, resolve_model_id
from ..catalog.stages import stage_versions
from ..errors import CatalogError
from ..index.base import PAD_ID, VectorIndex
from ..index.make import make_index
from ..index.storage import MANIFEST, load_index, read_manifest, save_index
from .filters import Filters, filtered_search

FOLDER = "indexes"


# --- which model, which tracks -------------------------------------------------------------------
def index_dir(lib: Library, model_id: str) -> Path:
    lib.stages.table("tags", model_id)  # validates the name
    return lib.root / FOLDER / model_id


def tracks_digest(ids: Sequence[str]) -> str:
    return hashlib.blake2b("\n".join(sorted(map(str, ids))).encode(), digest_size=16).hexdigest()


def tagged_track_ids(lib: Library, model_id: str) -> np.ndarray:
    """Present tracks that ``model_id`` has tagged (those an up-to-date index holds), sorted."""
    hashes = lib.stages.table("tags", model_id).keys()
    tracks = lib.tracks(include_missing=False)
    return np.sort(tracks.loc[tracks["hash"].isin(hashes), "track_id"].to_numpy(str))


# --- the index object ----------------------------------------------------------------------------
@dataclass
class LibraryIndex:
    """A loaded library index: the vector index plus lazily read track metadata for filters.

    ``search`` is :func:`~mir.similar.filters.filtered_search` with :class:`Filters` resolved against
    the library (genre, tags, BPM, key, year, artists).
    """

    lib: Library
    model_id: str
    index: VectorIndex
    manifest: dict
    _meta: pd.DataFrame | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.index)

    @property
    def meta(self) -> pd.DataFrame:
        """One row per indexed track (index = track id): path, title, artist, album, genre, year,
        tempo, key, mode, genre_pred, tags, tag_probs (``attrs["tags"]`` = tag vocabulary)."""
        if self._meta is None:
            self._meta = track_metadata(self.lib, self.model_id)
        return self._meta

    def search(self, queries, k: int = 10, *, filters: Filters | None = None,
               exclude: Sequence[set] | None = None, **knobs) -> tuple[np.ndarray, np.ndarray]:
        """``k`` nearest tracks per query vector under ``filters`` -> (scores [n, k], ids [n, k])."""
        filters = filters or Filters()
        allowed = filters.allowed(self.meta) if filters.per_track else None
        artists = self.meta["artist"].dropna().to_dict() if filters.max_per_artist else None
        return filtered_search(self.index, queries, k, allowed=allowed, artists=artists,
                               max_per_artist=filters.max_per_artist, exclude=exclude, **knobs)

    def vectors(self, track_ids: Sequence[str]) -> np.ndarray:
        """Unit embeddings of ``track_ids`` [m, d] (from the index, or the library for compressed types)."""
        try:
            return self.index.vectors(track_ids)
        except RuntimeError:
            ids, _, matrix = load_embeddings(self.lib, self.model_id)
            row = {t: i for i, t in enumerate(ids)}
            return matrix[[row[t] for t in track_ids]]


def track_metadata(lib: Library, model_id: str) -> pd.DataFrame:
    """Catalogue, descriptors and tags of ``model_id`` for every present tagged track, by track id."""
    tags = load_tags(lib, model_id)
    tracks = lib.tracks(include_missing=False)
    cols = [c for c in ("hash", "title", "artist", "album", "genre", "year") if c in tracks]
    frame = tags[["track_id", "hash", "path", "tags", "genre", "tag_probs", "music"]].rename(columns={"genre": "genre_pred"})
    frame = frame.merge(tracks[cols], on="hash", how="left")
    desc = lib.stages.table("descriptors", stage_versions()["descriptors"]).read()
    desc = desc.reindex(columns=["hash", "tempo", "key", "mode"])
    frame = frame.merge(desc, on="hash", how="left")
    frame["year"] = pd.to_numeric(frame["year"].astype("string").str.extract(r"(\d{4})")[0], errors="coerce")
    frame = frame.set_index("track_id")
    frame.attrs.update(tags=list(tags.attrs["tags"]), genres=list(tags.attrs["genres"]), model_id=model_id)
    return frame


# --- build, update, open -------------------------------------------------------------------------
def _manifest_extra(model_id: str, index: VectorIndex) -> dict:
    return {"model_id": model_id, "index_type": index.params().get("factory", index.kind),
            "tracks_digest": tracks_digest(index.ids)}


def build_library_index(lib: Library, model: str | None = None, *, index_type: str | None = None,
                        folder: str | os.PathLike | None = None, **params) -> LibraryIndex:
    """Index every present track tagged by ``model`` (see :func:`resolve_model_id`) from scratch.

    ``index_type``: ``"auto"`` (default: by size), ``"exact"``, ``"flat"``, ``"hnsw"``, ``"ivfpq"`` or a
    FAISS factory string; ``params``: :class:`~mir.index.FaissIndex` options (``ef_search``, ``nprobe``, …).
    ``folder``: save a standalone index there (loaded with :func:`mir.index.load_index`; its manifest
    also names the library) instead of the library's own ``LIB/indexes/<model_id>/``, which stays as it is.
    """
    model_id = resolve_model_id(lib, model)
    with lib.lock():
        ids, _, matrix = load_embeddings(lib, model_id)
        if len(ids) == 0:
            raise CatalogError(f"no present track of library {str(lib.root)!r} is tagged by model {model_id}; "
                               f"run `mir tag {lib.root}` first")
        index = make_index(index_type, **params).build(ids, matrix)
        extra = _manifest_extra(model_id, index) | ({"library": str(lib.root)} if folder is not None else {})
        manifest = save_index(index, index_dir(lib, model_id) if folder is None else folder, extra=extra)
    return LibraryIndex(lib, model_id, index, manifest)


def update_library_index(lib: Library, model: str | None = None) -> tuple[LibraryIndex, dict]:
    """Bring the index of ``model`` in step with the library: add newly tagged tracks, remove tracks
    that are gone or missing (in place, no rebuild). Builds it when there is none.

    Returns ``(index, {"added": n, "removed": n, "built": bool})``.
    """
    model_id = resolve_model_id(lib, model)
    folder = index_dir(lib, model_id)
    if not (folder / MANIFEST).exists():
        index = build_library_index(lib, model_id)
        return index, {"added": len(index), "removed": 0, "built": True}
    with lib.lock():
        index, manifest = load_index(folder, mmap=False)
        _check_model(lib, model_id, manifest, folder)
        current = tagged_track_ids(lib, model_id)
        have = index.ids
        gone = np.setdiff1d(have, current)
        new = np.setdiff1d(current, have)
        if len(new):
            ids, _, matrix = load_embeddings(lib, model_id)
            rows = np.flatnonzero(np.isin(ids, new))
            index.add(ids[rows], matrix[rows])
        removed = index.remove(gone) if len(gone) else 0
        if len(new) or removed:
            manifest = save_index(index, folder, extra=_manifest_extra(model_id, index))
    return LibraryIndex(lib, model_id, index, manifest), {"added": int(len(new)), "removed": int(removed), "built": False}


def _check_model(lib: Library, model_id: str, manifest: dict, folder: Path) -> None:
    from ..models.builders import ModelConfig

    if manifest.get("model_id") != model_id:
        raise CatalogError(f"index in {folder} was built for model {manifest.get('model_id')!r}, not {model_id!r}; "
                           f"rebuild it with `mir index build {lib.root} --model {model_id}`")
    dim = ModelConfig.from_dict(model_info(lib, model_id)["config"]).output_dim
    if int(manifest.get("dim", -1)) != dim:
        raise CatalogError(f"index in {folder} has dimension {manifest.get('dim')}, model {model_id} embeds in {dim}; "
                           f"rebuild it with `mir index build {lib.root} --model {model_id}`")


def index_status(lib: Library, model: str | None = None) -> dict:
    """Whether the index of ``model`` exists and matches the library: ``{"model_id", "exists", "stale",
    "added", "removed", "manifest"}`` (``added``/``removed``: tracks an update would add/remove)."""
    model_id = resolve_model_id(lib, model)
    folder = index_dir(lib, model_id)
    if not (folder / MANIFEST).exists():
        return {"model_id": model_id, "exists": False, "stale": True, "added": None, "removed": None, "manifest": None}
    manifest = read_manifest(folder)
    current = tagged_track_ids(lib, model_id)
    if manifest.get("tracks_digest") == tracks_digest(current):
        return {"model_id": model_id, "exists": True, "stale": False, "added": 0, "removed": 0, "manifest": manifest}
    labels = np.load(folder / manifest["files"]["labels"], allow_pickle=False)
    have = labels[labels != PAD_ID]
    return {"model_id": model_id, "exists": True, "stale": True, "added": int(len(np.setdiff1d(current, have))),
            "removed": int(len(np.setdiff1d(have, current))), "manifest": manifest}


def open_library_index(lib: Library, model: str | None = None, *, mmap: bool = True,
                       verify: bool | None = None) -> LibraryIndex:
    """Load the index of ``model`` for queries (memory-mapped where FAISS allows).

    Refuses, with the command that fixes it, an index that is missing, built for another model or
    dimension, or stale (tracks tagged or removed since it was saved).
    """
    status = index_status(lib, model)
    model_id = status["model_id"]
    folder = index_dir(lib, model_id)
    if not status["exists"]:
        raise CatalogError(f"library {str(lib.root)!r} has no index for model {model_id}; "
                           f"build it with `mir index build {lib.root}`")
    _check_model(lib, model_id, status["manifest"], folder)
    if status["stale"]:
        raise CatalogError(f"the index of model {model_id} in {folder} is stale: {status['added']} tracks tagged "
                           f"and {status['removed']} removed since it was saved; run `mir index update {lib.root}`")
    index, manifest = load_index(folder, mmap=mmap, verify=verify)
    if manifest.get("tracks_digest") != tracks_digest(index.ids):
        raise CatalogError(f"the index files in {folder} do not match their manifest; "
                           f"rebuild with `mir index build {lib.root}`")
    return LibraryIndex(lib, model_id, index, manifest)
