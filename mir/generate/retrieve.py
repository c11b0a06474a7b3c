"""Retrieval for generation: the library's similarity index, embeddings and seeds.

Every import from the similarity service (today ``mir.index``), from tagging results and from the
recommenders' event reading lives in this one module, so they can be re-pointed in one place.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from ..catalog import Library
from ..errors import ParameterError
from ..catalog.predictions import load_embeddings, load_tags, resolve_model_id
from ..index.base import PAD_ID, normalized
from ..similar import Filters, LibraryIndex, open_library_index, parse_key, similar

__all__ = ["Filters", "LibraryIndex", "Retrieved", "embeddings", "load_tags", "open_library_index", "parse_key",
           "resolve_model_id", "retrieve", "user_vector"]


@dataclass
class Retrieved:
    """Neighbours of the seeds: track ids, scores (best first), and the seeds as the provenance names them."""

    model_id: str
    track_ids: list[str]
    scores: list[float]
    seeds: dict = field(default_factory=dict)


def user_vector(li: LibraryIndex, user: str, events: str | os.PathLike) -> tuple[np.ndarray, list[str]]:
    """A listener's taste: the normalised play-weighted mean embedding of the tracks they played."""
    from ..recommend.inputs import load_inputs

    inputs = load_inputs(li.lib, events, model_id=li.model_id)
    inter = inputs.interactions
    pos = np.flatnonzero(inter.users == str(user))
    if not len(pos):
        raise ParameterError(f"user {user!r} has no usable event in {events}")
    rows = inter.user_idx == pos[0]
    items, plays = inter.item_idx[rows], inter.plays[rows]
    played = [str(t) for t in inter.items[np.unique(items)]]
    played = [t for t in played if t in li.index]
    if not played:
        raise ParameterError(f"none of the tracks user {user!r} played is in the index of model {li.model_id}")
    weights = {t: 0.0 for t in played}
    for i, p in zip(items, plays):
        t = str(inter.items[i])
        if t in weights:
            weights[t] += np.log1p(p)
    vecs = li.vectors(played)
    w = np.array([weights[t] for t in played])[:, None]
    return normalized((vecs * w).sum(axis=0, keepdims=True))[0], played


def retrieve(li: LibraryIndex, *, tracks: Sequence[str] = (), audio: str | os.PathLike | None = None,
             tags: Sequence[str] = (), user: str | None = None, events: str | os.PathLike | None = None,
             k: int = 20, filters: Filters | None = None) -> Retrieved:
    """The ``k`` nearest tracks to the seeds, as ``mir similar`` ranks them (seed tracks included:
    generation in a track's style may use the track itself)."""
    if user is not None:
        if events is None:
            raise ParameterError("--user needs --events FILE (the listening history to read the taste from)")
        vec, played = user_vector(li, user, events)
        scores, ids = li.search(vec[None, :], k, filters=filters)
        keep = ids[0] != PAD_ID
        return Retrieved(li.model_id, [str(t) for t in ids[0][keep]], [float(s) for s in scores[0][keep]],
                         {"user": str(user), "events": os.fspath(events), "played": len(played)})
    tracks = [str(li.lib.track(t)["track_id"]) for t in tracks]
    if not tracks and audio is None and not tags:
        raise ParameterError("give seeds: --track ID…, --audio FILE, --tags T,… or --user U --events F")
    found = similar(li, tracks=tracks, audio=audio, tags=tags, k=k, filters=filters, exclude_seeds=False)
    return Retrieved(li.model_id, [r["track_id"] for r in found], [float(r["score"]) for r in found],
                     {"tracks": tracks, "audio": None if audio is None else os.fspath(audio),
                      "tags": [t for t in (tags.split(",") if isinstance(tags, str) else tags) if t.strip()]})


def embeddings(lib: Library, model_id: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(track_ids, hashes, unit embeddings [n, d])`` of every present track tagged by ``model_id``."""
    return load_embeddings(lib, model_id)
