"""Similarity queries over a library index: by track, by audio file, by tags, by several seeds.

:func:`similar` returns ranked results, each with track id, path, artist, title, score and a
short explanation (shared top tags, tempo and key closeness to the nearest seed).

Scores
------
- One seed: cosine similarity of the embeddings (the index's inner product).
- Several seeds: candidates are the union of each seed's and the seeds' mean's neighbours; a
  candidate scores the *soft minimum* of its cosines to the seeds,
  ``-τ·log(mean_j exp(-s_j/τ))`` (``τ`` = ``temperature``, 0.05), so it ranks high only when it is
  close to every seed (τ → 0: the minimum; τ → ∞: the mean).
- Tags (``tags=["piano", "slow"]``): a track's tag match is the geometric mean of its probabilities
  of the requested tags (high only when every tag is likely). Alone it ranks the library; with
  seeds the score is ``(1 - tag_weight)·seed score + tag_weight·tag match``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import pandas as pd

from ..errors import ModelError, ParameterError, TrackNotFoundError
from ..catalog.predictions import model_info
from ..index.base import PAD_ID, check_k, normalized
from ..features.keys import key_name
from .filters import PITCH_CLASSES, Filters, cap_per_group
from .library import LibraryIndex

TEMPERATURE = 0.05
TAG_WEIGHT = 0.5
POOL_MIN = 50


@dataclass
class Seed:
    """A query point: an embedding plus what the explanations compare (tags, tempo, key)."""

    label: str  # track id, or the audio file's path
    vector: np.ndarray
    track_id: str | None = None
    tags: list = field(default_factory=list)
    tempo: float | None = None
    key: str | None = None
    mode: str | None = None
    same_as: str | None = None  # an audio file's track in the library (same audio), if any
    music: float | None = None  # an audio file's music probability (models with a music gate)


def _value(v):
    return None if v is None or (isinstance(v, float) and not np.isfinite(v)) or v is pd.NA else v


def track_seed(li: LibraryIndex, ref: str) -> Seed:
    """A catalogued track (id, unique id prefix, hash or path) as a seed."""
    track_id = str(li.lib.track(ref)["track_id"])
    if track_id not in li.index:
        raise TrackNotFoundError(f"track {track_id} ({ref!r}) is not in the index of model {li.model_id}: it is missing "
                                 f"or not tagged yet (run `mir tag {li.lib.root}` then `mir index update {li.lib.root}`)")
    row = li.meta.loc[track_id]
    return Seed(track_id, li.vectors([track_id])[0], track_id, list(row["tags"]), _value(row.get("tempo")),
                _value(row.get("key")), _value(row.get("mode")))


def audio_seed(li: LibraryIndex, path: str | os.PathLike, *, checkpoint: str | os.PathLike | None = None) -> Seed:
    """An audio file analysed on the fly with the index's model (decoded, embedded, described; not added)."""
    from ..models import load_checkpoint
    from ..models.audio_file import analyse_file

    info = model_info(li.lib, li.model_id)
    ckpt = checkpoint or info.get("checkpoint")
    if not ckpt or not os.path.isfile(ckpt):
        raise ModelError(f"the checkpoint of model {li.model_id} ({ckpt}) is not available to analyse {path}; "
                         "pass --model PATH to the model's checkpoint")
    loaded = load_checkpoint(ckpt)
    if loaded.model_id != li.model_id:
        raise ModelError(f"checkpoint {ckpt} is model {loaded.model_id}, the index holds embeddings of {li.model_id}; "
                         "give the checkpoint that tagged the library")
    a = analyse_file(loaded, path)
    desc = a.descriptors
    return Seed(os.fspath(path), a.embedding, None, a.tags, float(desc["tempo"]) or None, desc["key"], desc["mode"],
                same_as=li.lib.track_of_file(path), music=a.music)


def soft_min(sims: np.ndarray, temperature: float = TEMPERATURE) -> np.ndarray:
    """Soft minimum over the last axis: ``-τ·log(mean(exp(-s/τ)))`` (stable; = s for one column)."""
    s = np.asarray(sims, dtype=np.float64)
    lo = s.min(axis=-1, keepdims=True)
    return (lo[..., 0] - temperature * np.log(np.mean(np.exp(-(s - lo) / temperature), axis=-1))).astype(np.float32)


def tag_probs(meta: pd.DataFrame, tags: Sequence[str]) -> np.ndarray:
    """Each track's probabilities of ``tags`` [len(meta), len(tags)] (tags matched case-insensitively)."""
    vocab = list(meta.attrs.get("tags", []))
    lower = {t.casefold(): i for i, t in enumerate(vocab)}
    cols = []
    for t in tags:
        if t.strip().casefold() not in lower:
            raise ParameterError(f"tag {t!r} is not in the vocabulary of model {meta.attrs.get('model_id')}; "
                                 f"known tags: {', '.join(vocab[:40])}{' …' if len(vocab) > 40 else ''}")
        cols.append(lower[t.strip().casefold()])
    if not len(meta):
        return np.zeros((0, len(cols)), np.float32)
    return np.stack(meta["tag_probs"].to_numpy())[:, cols]


def tag_match(meta: pd.DataFrame, tags: Sequence[str]) -> np.ndarray:
    """Geometric mean of each track's probabilities of ``tags`` [len(meta)]."""
    probs = tag_probs(meta, tags).astype(np.float64)
    return np.exp(np.log(np.clip(probs, 1e-6, 1)).mean(axis=1)).astype(np.float32)


def neighbour_agreement(index, ids: Sequence[str], vectors: np.ndarray, labels: Sequence, k: int = 10
                        ) -> tuple[float, np.ndarray]:
    """How often neighbours share a label (e.g. genre): for each of ``ids`` (with ``vectors`` [n, d]),
    the share of its ``k`` nearest other tracks in ``index`` with the same label -> (mean, shares [n])."""
    label_of = dict(zip(ids, labels))
    _, found = index.search(vectors, k + 1)
    shares = []
    for own, row in zip(ids, found):
        others = [t for t in row if t != PAD_ID and t != own][:k]
        shares.append(np.mean([label_of.get(t) == label_of[own] for t in others]) if others else np.nan)
    shares = np.asarray(shares, dtype=np.float64)
    return float(np.nanmean(shares)), shares


# --- explanations ---------------------------------------------------------------------------------
def key_relation(key_a: str | None, mode_a: str | None, key_b: str | None, mode_b: str | None) -> str | None:
    """How key a relates to key b: same, relative, parallel, a fifth apart, or steps on the circle of fifths."""
    if not (key_a in PITCH_CLASSES and key_b in PITCH_CLASSES and mode_a and mode_b):
        return None
    pa, pb = PITCH_CLASSES.index(key_a), PITCH_CLASSES.index(key_b)
    if (pa, mode_a) == (pb, mode_b):
        return "same key"
    if pa == pb:
        return "parallel key"
    major_a = pa if mode_a == "major" else (pa + 3) % 12
    major_b = pb if mode_b == "major" else (pb + 3) % 12
    if major_a == major_b:
        return "relative key"
    fa, fb = (major_a * 7) % 12, (major_b * 7) % 12
    steps = min(abs(fa - fb), 12 - abs(fa - fb))
    return "a fifth apart" if steps == 1 else f"{steps} steps apart on the circle of fifths"


def tempo_relation(bpm: float | None, seed_bpm: float | None) -> str | None:
    if not bpm or not seed_bpm:
        return None
    r = bpm / seed_bpm
    if abs(r - 1) <= 0.04:
        return "same tempo"
    if abs(r / 2 - 1) <= 0.04:
        return "double time"
    if abs(r * 2 - 1) <= 0.04:
        return "half time"
    return f"{bpm - seed_bpm:+.0f} BPM"


def explain(row: pd.Series, seed: Seed | None, tags: Sequence[str] = (), tag_probs: dict | None = None) -> dict:
    """Structured reasons and a one-line text for one result against its nearest seed."""
    why: dict = {"seed": seed.label if seed else None}
    parts = []
    if seed is not None and seed.same_as is not None and row.name == seed.same_as:
        why["same_audio"] = True
        parts.append("the query file itself")
    if seed is not None:
        mine = [str(t) for t in row["tags"]]
        shared = [t for t in seed.tags if t in mine][:4]
        why["shared_tags"] = shared
        parts.append("shared tags: " + (", ".join(shared) if shared else "none"))
        tempo, key, mode = _value(row.get("tempo")), _value(row.get("key")), _value(row.get("mode"))
        why.update(bpm=tempo, seed_bpm=seed.tempo, tempo=tempo_relation(tempo, seed.tempo),
                   key=key_name(key, mode) if key and mode else None,
                   seed_key=key_name(seed.key, seed.mode) if seed.key and seed.mode else None,
                   key_relation=key_relation(key, mode, seed.key, seed.mode))
        if tempo and seed.tempo:
            parts.append(f"{tempo:.0f} BPM vs {seed.tempo:.0f} ({why['tempo']})")
        if why["key"] and why["seed_key"]:
            parts.append(f"{why['key']} vs {why['seed_key']} ({why['key_relation']})")
    if tags:
        why["tag_probs"] = tag_probs or {}
        parts.append("tags: " + ", ".join(f"{t} {p:.2f}" for t, p in (tag_probs or {}).items()))
    why["text"] = "; ".join(parts)
    return why


# --- the query ------------------------------------------------------------------------------------
def similar(li: LibraryIndex, *, tracks: Sequence[str] = (), audio: str | os.PathLike | None = None,
            tags: Sequence[str] = (), k: int = 10, filters: Filters | None = None, exclude_seeds: bool = True,
            tag_weight: float = TAG_WEIGHT, temperature: float = TEMPERATURE,
            checkpoint: str | os.PathLike | None = None, **knobs) -> list[dict]:
    """The ``k`` tracks most similar to the seeds (tracks, an audio file) and/or matching ``tags``.

    Returns a :class:`Results` list of dicts, best first: ``rank, track_id, path, artist, title, score,
    explanation, why``; when it holds fewer than ``k``, its ``shortfall`` says why.
    ``exclude_seeds``: never return the seed tracks themselves. ``filters``: see :class:`Filters`.
    ``knobs``: search knobs of the index (``ef_search``, ``nprobe``, ``k_factor``).
    """
    k = check_k(k)
    if isinstance(tracks, str):
        tracks = [tracks]
    tags = [t for t in (tags.split(",") if isinstance(tags, str) else tags) if t.strip()]
    if not 0 <= tag_weight <= 1:
        raise ParameterError(f"tag_weight must be in [0, 1], got {tag_weight!r}")
    if temperature <= 0:
        raise ParameterError(f"temperature must be > 0, got {temperature!r}")
    seeds = [track_seed(li, t) for t in tracks]
    if audio is not None:
        seeds.append(audio_seed(li, audio, checkpoint=checkpoint))
    if not seeds and not tags:
        raise ParameterError("give at least one seed: a track, an audio file or tags")
    filters = filters or Filters()
    meta = li.meta
    exclude = {s.track_id for s in seeds if s.track_id} if exclude_seeds else set()
    match = tag_match(meta, tags) if tags else None
    seed_matrix = normalized(np.stack([s.vector for s in seeds])) if seeds else None

    if len(seeds) == 1 and not tags:  # plain nearest neighbours
        scores, ids = li.search(seed_matrix, k, filters=filters, exclude=[exclude], **knobs)
        ranked = [(t, float(s)) for t, s in zip(ids[0], scores[0]) if t != PAD_ID]
    else:
        ranked = _pooled(li, seed_matrix, match, k, filters, exclude, tag_weight, temperature, knobs)

    ids = [track_id for track_id, _ in ranked]
    nearest = np.argmax(li.vectors(ids) @ seed_matrix.T, axis=1) if seeds and ids else None
    probs = tag_probs(meta.loc[ids], tags).round(3) if tags else None
    out = []
    for rank, (track_id, score) in enumerate(ranked, 1):
        row = meta.loc[track_id]
        seed = seeds[int(nearest[rank - 1])] if nearest is not None else None
        why = explain(row, seed, tags, dict(zip(tags, probs[rank - 1].tolist())) if tags else {})
        out.append({"rank": rank, "track_id": track_id, "path": row.get("path"),
                    "artist": _value(row.get("artist")), "title": _value(row.get("title")),
                    "score": round(float(score), 6), "explanation": why.pop("text"), "why": why})
    return Results(out, k=k, shortfall=shortfall(meta, filters, exclude, k, len(out)),
                   seeds=[{"seed": s.label, "track_id": s.track_id, "same_as": s.same_as, "tags": list(s.tags),
                           "bpm": s.tempo, "key": key_name(s.key, s.mode) if s.key and s.mode else None,
                           "music": s.music} for s in seeds])


class Results(list):
    """Results of :func:`similar` (a list of dicts) with ``k`` (asked for), ``shortfall`` (None when
    ``k`` came back, else a sentence saying why fewer did) and ``seeds`` (each seed's decided tags,
    BPM and key: for an audio file, what the model and descriptors made of it)."""

    def __init__(self, items=(), *, k: int, shortfall: str | None = None, seeds: list[dict] | None = None):
        super().__init__(items)
        self.k, self.shortfall, self.seeds = k, shortfall, seeds or []


def shortfall(meta: pd.DataFrame, filters: Filters, exclude: set, k: int, found: int) -> str | None:
    """Why a query found ``found`` < ``k`` results (None when it found ``k``)."""
    if found >= k:
        return None
    seeds = f", not counting {len(exclude)} seed track{'s' if len(exclude) != 1 else ''}" if exclude else ""
    if not (filters.per_track or filters.max_per_artist):
        return f"{found} of {k} results: the index holds {len(meta)} tracks{seeds}"
    passing = int((filters.mask(meta) & ~meta.index.isin(list(exclude))).sum())
    capped = " and the per-artist cap" if filters.max_per_artist else ""
    return (f"{found} of {k} results: {passing} of the {len(meta)} indexed tracks pass the filters{capped} "
            f"({filters.describe()}){seeds}")


def _pooled(li: LibraryIndex, seeds: np.ndarray | None, match: np.ndarray | None, k: int, filters: Filters,
            exclude: set, tag_weight: float, temperature: float, knobs: dict) -> list[tuple[str, float]]:
    """Several seeds and/or tags: score a candidate pool exactly, grow it until k results survive."""
    meta = li.meta
    mask = filters.mask(meta) & ~meta.index.isin(list(exclude))
    allowed_ids = meta.index.to_numpy(str)[mask]
    n_allowed = len(allowed_ids)
    artists = meta["artist"].dropna().to_dict() if filters.max_per_artist else None
    pool = max(4 * k, POOL_MIN)
    if seeds is not None:
        queries = np.vstack([seeds, normalized(seeds.mean(axis=0, keepdims=True))]) if len(seeds) > 1 else seeds
    while True:
        cands: set[str] = set()
        if seeds is not None:
            _, ids = li.search(queries, min(pool, max(n_allowed, 1)), filters=filters,
                               exclude=[exclude] * len(queries), **knobs)
            cands.update(t for t in ids.ravel().tolist() if t != PAD_ID)
        if match is not None:
            order = np.argsort(-match[mask], kind="stable")[:pool]
            cands.update(allowed_ids[order].tolist())
        cand = np.asarray(sorted(cands), dtype=str)
        if len(cand) == 0:
            return []  # similar() says why
        score = np.zeros(len(cand), np.float32)
        if seeds is not None:
            score = soft_min(li.vectors(list(cand)) @ seeds.T, temperature)
        if match is not None:
            m = match[meta.index.get_indexer(cand)]
            score = m if seeds is None else (1 - tag_weight) * score + tag_weight * m
        order = np.lexsort((cand, -score))
        cand, score = cand[order], score[order]
        keep = cap_per_group(cand, artists, filters.max_per_artist)[:k]
        if len(keep) >= k or pool >= n_allowed:
            return [(str(cand[i]), float(score[i])) for i in keep]
        pool *= 4
