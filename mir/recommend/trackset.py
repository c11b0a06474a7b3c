"""What recommenders and playlists know about tracks: embeddings plus a few descriptors.

:class:`TrackSet` is plain arrays (tests build one from synthetic data);
:func:`from_library` fills one from a library's tags stage (embeddings, genre, decided tags),
track table (artist, title, path, duration) and descriptors (tempo, key, mode).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import pandas as pd

from ..errors import CatalogError, ParameterError, TrackNotFoundError


@dataclass
class TrackSet:
    """Tracks in a fixed order; ``embeddings`` [n, d] float32 with unit rows (inner product = cosine)."""

    track_ids: np.ndarray
    embeddings: np.ndarray
    artist: np.ndarray | None = None  # [n] object (None = unknown)
    genre: np.ndarray | None = None  # [n] object
    tags: list[tuple[str, ...]] | None = None
    tempo: np.ndarray | None = None  # [n] float BPM (nan = unknown)
    key: np.ndarray | None = None  # [n] object, e.g. "A minor" (None = unknown)
    title: np.ndarray | None = None
    path: np.ndarray | None = None
    duration: np.ndarray | None = None
    model_id: str = ""
    music: np.ndarray | None = None  # [n] float probability of music (nan = the model has no music gate)
    features: np.ndarray | None = None  # [n, F] predicted genre probabilities + normalised tag probabilities
    feature_names: tuple[str, ...] = ()
    _pos: dict = field(default_factory=dict, repr=False)

    def __post_init__(self):
        self.track_ids = np.asarray(self.track_ids, dtype=str)
        emb = np.asarray(self.embeddings, dtype=np.float32)
        n = len(self.track_ids)
        if emb.ndim != 2 or emb.shape[0] != n:
            raise ParameterError(f"embeddings must have shape [n_tracks={n}, d], got {emb.shape}")
        if not np.isfinite(emb).all():
            raise ParameterError("embeddings contain NaN or infinity")
        norms = np.linalg.norm(emb, axis=1, keepdims=True)
        self.embeddings = emb / np.maximum(norms, 1e-12)
        for name in ("artist", "genre", "key", "title", "path"):
            value = getattr(self, name)
            setattr(self, name, np.full(n, None, dtype=object) if value is None else np.asarray(value, dtype=object))
        self.tempo = np.full(n, np.nan) if self.tempo is None else np.asarray(self.tempo, dtype=np.float64)
        self.duration = np.full(n, np.nan) if self.duration is None else np.asarray(self.duration, dtype=np.float64)
        self.music = np.full(n, np.nan) if self.music is None else np.asarray(self.music, dtype=np.float64)
        self.tags = [()] * n if self.tags is None else [tuple(t) for t in self.tags]
        if self.features is not None:
            feats = np.asarray(self.features, dtype=np.float32)
            if feats.ndim != 2 or feats.shape[0] != n or not np.isfinite(feats).all():
                raise ParameterError(f"features must be a finite [n_tracks={n}, F] array, got shape {feats.shape}")
            self.features = feats
            self.feature_names = tuple(self.feature_names)
        for name in ("artist", "genre", "key", "title", "path", "tempo", "duration", "music", "tags"):
            if len(getattr(self, name)) != n:
                raise ParameterError(f"{name} has {len(getattr(self, name))} entries for {n} tracks")
        self._pos = {t: i for i, t in enumerate(self.track_ids)}
        if len(self._pos) != n:
            raise ParameterError("track ids must be unique")

    def __len__(self) -> int:
        return len(self.track_ids)

    def label(self, i: int) -> str:
        """"artist - title" of track ``i`` (either alone when the other is unknown), else its path."""
        return " - ".join(str(x) for x in (self.artist[i], self.title[i]) if x) or str(self.path[i])

    def index_of(self, ref: str) -> int:
        """Position of a track id (or a unique prefix of one)."""
        if ref in self._pos:
            return self._pos[ref]
        hits = [i for t, i in self._pos.items() if t.startswith(ref)] if ref else []
        if len(hits) == 1:
            return hits[0]
        if hits:
            raise TrackNotFoundError(f"track reference {ref!r} is ambiguous ({len(hits)} tracks match); give more characters")
        raise TrackNotFoundError(f"no tagged track {ref!r} (give a track id of the library; see `mir tracks`)")


def from_library(lib, model_id: str | None = None) -> TrackSet:
    """The tagged present tracks of ``lib`` (``model_id`` None: the most recently tagging model)."""
    from ..catalog.predictions import load_tags, resolve_model_id

    model_id = resolve_model_id(lib, model_id)
    tags = load_tags(lib, model_id, embedding=True)
    if tags.empty:
        raise CatalogError(f"no present track of {str(lib.root)!r} is tagged by model {model_id!r}; run `mir tag`")
    desc = lib.descriptors()[["hash", "artist", "title", "duration", "tempo", "key", "mode"]]
    frame = tags.merge(desc, on="hash", how="left")
    key = [f"{k} {m}" if isinstance(k, str) and isinstance(m, str) else None for k, m in zip(frame["key"], frame["mode"])]
    return TrackSet(
        track_ids=frame["track_id"].to_numpy(str), embeddings=np.stack(frame["embedding"].to_numpy()),
        artist=_clean(frame["artist"]), genre=_clean(frame["genre"]), tags=[tuple(t) for t in frame["tags"]],
        tempo=pd.to_numeric(frame["tempo"], errors="coerce").to_numpy(float), key=np.asarray(key, dtype=object),
        title=_clean(frame["title"]), path=_clean(frame["path"]),
        duration=pd.to_numeric(frame["duration"], errors="coerce").to_numpy(float), model_id=model_id,
        music=frame["music"].to_numpy(float),
        features=content_features(frame), feature_names=tuple(f"genre:{g}" for g in tags.attrs.get("genres", ()))
        + tuple(f"tag:{t}" for t in tags.attrs.get("tags", ())),
    )


def content_features(frame: pd.DataFrame) -> np.ndarray | None:
    """[n, G + T] from a tags table: predicted genre probabilities, then tag probabilities scaled to
    sum 1 per track (a track's tags share its tag weight, as a mean over its tags does); None when
    the tagging model stored no probabilities."""
    if "genre_probs" not in frame or "tag_probs" not in frame or frame.empty:
        return None
    genres = np.stack(frame["genre_probs"].to_numpy()).astype(np.float64)
    tags = np.stack(frame["tag_probs"].to_numpy()).astype(np.float64)
    tags = tags / np.maximum(tags.sum(axis=1, keepdims=True), 1e-12)
    return np.hstack([genres, tags]).astype(np.float32)


def _clean(col: pd.Series) -> np.ndarray:
    return np.asarray([v if isinstance(v, str) and v.strip() else None for v in col], dtype=object)


def known_tracks(lib, tracks: TrackSet) -> tuple[Sequence[str], Sequence[str], Sequence[str]]:
    """(track ids, hashes, paths) of the tracks in ``tracks`` plus every file path of them (for events)."""
    table = lib.tracks()[["track_id", "hash"]]
    table = table[table["track_id"].isin(set(tracks.track_ids))]
    files = lib.files().merge(table, on="hash", how="inner")
    ids = list(table["track_id"]) + list(files["track_id"])
    hashes = list(table["hash"]) + list(files["hash"])
    paths = [None] * len(table) + list(files["path"])
    return ids, hashes, paths
