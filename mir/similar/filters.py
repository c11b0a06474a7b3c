"""Filters on search results that never cost the caller results.

:class:`Filters` describes what may come back (genre, tags, BPM range, key, year, excluded tracks
or artists, at most N per artist). Per-track conditions become an ``allowed`` id set that the index
applies *during* the search (FAISS ``IDSelector``); the per-artist cap and per-query exclusions are
applied after it. :func:`filtered_search` widens the search (more candidates, wider ``ef_search``
/ ``nprobe``) until ``k`` results survive or the index is exhausted, so a filter never returns
fewer than ``k`` results when ``k`` qualifying tracks exist. A small ``allowed`` set (see
:meth:`mir.index.FaissIndex.subset_exact_max`) is searched exactly over its stored vectors instead,
so nothing needs widening there.

Metadata frame (``meta``): one row per track, index = track id, columns used when present:
``artist``, ``genre`` (the file's own metadata), ``genre_pred`` (the model's prediction), ``tags`` (list of decided tags),
``tempo`` (BPM), ``key`` (tonic, e.g. "A"), ``mode`` ("major"/"minor"), ``year`` (int or NaN),
``music`` (probability that the track is music, from a model's music gate; NaN without one).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd

from ..errors import ParameterError
from ..features.keys import PITCH_CLASSES
from ..index.base import PAD_ID, PAD_SCORE, VectorIndex, check_k
from ..models.gate import MUSIC_THRESHOLD  # music-only keeps tracks at or above it

_FLATS = {"DB": "C#", "EB": "D#", "GB": "F#", "AB": "G#", "BB": "A#", "CB": "B", "FB": "E", "E#": "F", "B#": "C"}
MAX_ROUNDS = 40


def music_mask(music, model_id: str = "") -> np.ndarray:
    """Boolean ``[n]``: music probability ``>= MUSIC_THRESHOLD``; :class:`ParameterError` when the
    model has no music gate (``music`` None or all NaN). The one music-only rule of similar,
    recommend and playlists."""
    values = None if music is None else pd.to_numeric(pd.Series(np.asarray(music, dtype=object)),
                                                         errors="coerce").to_numpy(float)
    if values is None or (len(values) and np.isnan(values).all()):
        raise ParameterError(f"music-only needs music probabilities, but model {model_id or '(unknown)'} has no music "
                             "gate; tag with a model that has a music gate: mir train-gate --music DIR --nonmusic DIR "
                             "--model M --out M2, then mir tag LIB --model M2")
    return np.nan_to_num(values, nan=0.0) >= MUSIC_THRESHOLD


def parse_key(text: str) -> tuple[str, str | None]:
    """``"A minor"``, ``"Am"``, ``"a min"``, ``"Bb major"``, ``"F#"`` -> (tonic, mode or None)."""
    m = re.fullmatch(r"\s*([A-Ga-g])([#b♯♭]?)\s*(major|minor|maj|min|m|M)?\s*", text or "")
    if not m:
        raise ParameterError(f"key {text!r} is not understood; write e.g. 'A minor', 'Am', 'Bb major' or 'F#'")
    tonic = (m.group(1).upper() + m.group(2).replace("♯", "#").replace("♭", "b")).upper()
    tonic = _FLATS.get(tonic, tonic)
    if tonic not in PITCH_CLASSES:
        raise ParameterError(f"key {text!r}: unknown tonic {tonic!r}")
    mode = m.group(3)
    mode = None if mode is None else ("minor" if mode in ("minor", "min", "m") else "major")
    return tonic, mode


def parse_range(text: str | Sequence | None, name: str) -> tuple[float | None, float | None] | None:
    """``"90-120"``, ``"90-"``, ``"-120"``, ``"100"`` or a pair -> (low, high), inclusive."""
    if text is None:
        return None
    if not isinstance(text, str):
        lo, hi = text
        return (None if lo is None else float(lo), None if hi is None else float(hi))
    m = re.fullmatch(r"\s*(\d+(?:\.\d*)?)?\s*(-|\.\.)?\s*(\d+(?:\.\d*)?)?\s*", text)
    if not m or (m.group(1) is None and m.group(3) is None):
        raise ParameterError(f"{name} range {text!r} is not understood; write e.g. '90-120', '90-' or '-120'")
    lo = None if m.group(1) is None else float(m.group(1))
    hi = None if m.group(3) is None else float(m.group(3))
    if m.group(2) is None:
        hi = lo
    if lo is not None and hi is not None and lo > hi:
        raise ParameterError(f"{name} range {text!r} is empty (low > high)")
    return lo, hi


@dataclass(frozen=True)
class Filters:
    """What results may be. Empty fields do not filter.

    genres : any of these predicted genres (the model's, case-insensitive)
    file_genres : any of these genres in the files' own metadata (case-insensitive; a track whose
        file has no genre fails)
    tags : all of these decided tags (case-insensitive)
    bpm, year : inclusive ``(low, high)`` ranges (``None`` = open end); tracks without a value fail
    keys : any of these keys (``"A minor"``, ``"Am"``; a bare tonic ``"A"`` matches both modes)
    exclude_tracks, exclude_artists : never return these (artists case-insensitive)
    max_per_artist : at most this many results by one artist (tracks without an artist are not capped)
    music_only : only tracks the model's music gate calls music (:func:`music_mask`)
    """

    genres: tuple[str, ...] = ()
    file_genres: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    bpm: tuple[float | None, float | None] | None = None
    keys: tuple[str, ...] = ()
    year: tuple[float | None, float | None] | None = None
    exclude_tracks: tuple[str, ...] = ()
    exclude_artists: tuple[str, ...] = ()
    max_per_artist: int | None = None
    music_only: bool = False

    def __post_init__(self):
        for name in ("genres", "file_genres", "tags", "keys", "exclude_tracks", "exclude_artists"):
            value = getattr(self, name)
            if isinstance(value, str):
                object.__setattr__(self, name, (value,))
            else:
                object.__setattr__(self, name, tuple(value))
        for name in ("bpm", "year"):
            object.__setattr__(self, name, parse_range(getattr(self, name), name))
        for key in self.keys:
            parse_key(key)
        if self.max_per_artist is not None and (isinstance(self.max_per_artist, bool) or int(self.max_per_artist) < 1):
            raise ParameterError(f"max_per_artist must be a positive int, got {self.max_per_artist!r}")

    @property
    def per_track(self) -> bool:
        """Whether any per-track condition is set (so an ``allowed`` set is needed)."""
        return bool(self.genres or self.file_genres or self.tags or self.bpm or self.keys or self.year
                    or self.exclude_tracks or self.exclude_artists or self.music_only)

    def describe(self) -> str:
        """The conditions set, as the command line writes them (``--genre reel --bpm 90-120``)."""
        def rng(r):
            return "-".join("" if v is None else f"{v:g}" for v in r)

        parts = [(f"--genre {','.join(self.genres)}", self.genres),
                 (f"--file-genre {','.join(self.file_genres)}", self.file_genres),
                 (f"--with-tags {','.join(self.tags)}", self.tags), (f"--bpm {rng(self.bpm or ())}", self.bpm),
                 (" ".join(f"--key {k!r}" for k in self.keys), self.keys), (f"--year {rng(self.year or ())}", self.year),
                 (f"{len(self.exclude_tracks)} excluded tracks", self.exclude_tracks),
                 (f"--exclude-artist {','.join(self.exclude_artists)}", self.exclude_artists),
                 (f"--max-per-artist {self.max_per_artist}", self.max_per_artist),
                 ("--music-only", self.music_only)]
        return " ".join(text for text, value in parts if value)

    def mask(self, meta: pd.DataFrame) -> np.ndarray:
        """Boolean [len(meta)]: rows of ``meta`` that pass every per-track condition."""
        ok = np.ones(len(meta), dtype=bool)
        if self.music_only:
            ok &= music_mask(meta["music"] if "music" in meta else None, meta.attrs.get("model_id", ""))
        for wanted, column in ((self.genres, "genre_pred"), (self.file_genres, "genre")):
            if wanted:
                names = {g.casefold() for g in wanted}
                ok &= _column(meta, column).map(lambda g: isinstance(g, str) and g.casefold() in names).to_numpy(bool)
        if self.tags:
            wanted = {t.casefold() for t in self.tags}
            ok &= _column(meta, "tags").map(
                lambda ts: ts is not None and not isinstance(ts, float) and wanted <= {str(t).casefold() for t in ts}
            ).to_numpy(bool)
        if self.bpm:
            ok &= _in_range(pd.to_numeric(_column(meta, "tempo"), errors="coerce").to_numpy(float), self.bpm)
        if self.year:
            ok &= _in_range(pd.to_numeric(_column(meta, "year"), errors="coerce").to_numpy(float), self.year)
        if self.keys:
            tonic = _column(meta, "key").astype(object).to_numpy()
            mode = _column(meta, "mode").astype(object).to_numpy()
            hit = np.zeros(len(meta), dtype=bool)
            for key in self.keys:
                t, m = parse_key(key)
                hit |= (tonic == t) & ((mode == m) if m else True)
            ok &= hit
        if self.exclude_tracks:
            ok &= ~np.isin(meta.index.to_numpy(str), np.asarray(self.exclude_tracks, dtype=str))
        if self.exclude_artists:
            banned = {a.casefold() for a in self.exclude_artists}
            ok &= ~_column(meta, "artist").map(lambda a: isinstance(a, str) and a.casefold() in banned).to_numpy(bool)
        return ok

    def allowed(self, meta: pd.DataFrame) -> np.ndarray | None:
        """Track ids that pass the per-track conditions, or None when there are none."""
        return meta.index.to_numpy(str)[self.mask(meta)] if self.per_track else None


def _column(meta: pd.DataFrame, name: str) -> pd.Series:
    if name not in meta:
        return pd.Series([None] * len(meta), index=meta.index, dtype=object)
    return meta[name]


def _in_range(values: np.ndarray, rng: tuple[float | None, float | None]) -> np.ndarray:
    lo, hi = rng
    ok = np.isfinite(values)
    if lo is not None:
        ok &= values >= lo
    if hi is not None:
        ok &= values <= hi
    return ok


def cap_per_group(ids: Sequence[str], groups: dict[str, str] | None, max_per_group: int | None,
                  exclude: set | frozenset = frozenset()) -> np.ndarray:
    """Positions of ``ids`` (best first) kept after dropping ``exclude`` and capping each group."""
    keep, seen = [], {}
    for i, t in enumerate(ids):
        if t == PAD_ID or t in exclude:
            continue
        if max_per_group is not None and groups is not None:
            g = groups.get(t)
            if isinstance(g, str) and g:
                g = g.casefold()
                if seen.get(g, 0) >= max_per_group:
                    continue
                seen[g] = seen.get(g, 0) + 1
        keep.append(i)
    return np.asarray(keep, dtype=np.int64)


def _widen(index: VectorIndex, level: int, knobs: dict) -> dict:
    """Search knobs of round ``level``: the caller's (or the index's defaults) times ``2**level``."""
    if level == 0:
        return dict(knobs)
    wide = dict(knobs)
    for key, value in index.widened(level).items():
        wide[key] = max(value, (knobs.get(key) or 0) * 2 ** level)
    return wide


def filtered_search(index: VectorIndex, queries, k: int, *, allowed: Sequence[str] | None = None,
                    artists: dict[str, str] | None = None, max_per_artist: int | None = None,
                    exclude: Sequence[set] | None = None, **knobs) -> tuple[np.ndarray, np.ndarray]:
    """:meth:`VectorIndex.search` that keeps ``k`` results under filters.

    ``allowed`` is applied during the search; ``exclude`` (one set of track ids per query, e.g. the
    seed itself) and the per-artist cap (``artists``: track id -> artist) after it. Each round that
    leaves fewer than ``k`` results doubles the candidates and widens the index's knobs, until ``k``
    survive or the search was exhaustive. Returns ``(scores [n, k], ids [n, k])``, padded as ``search``.
    """
    k = check_k(k)
    x = np.asarray(queries, dtype=np.float32)
    x = x[None, :] if x.ndim == 1 else x
    # the index remembers these labels for this very ``allowed`` object, so the searches reuse them
    n_candidates = len(index) if allowed is None else len(index._allowed_labels(allowed))
    if exclude is not None and len(exclude) != len(x):
        raise ParameterError(f"exclude has {len(exclude)} sets for {len(x)} queries")
    post = exclude is not None or max_per_artist is not None
    out_s = np.full((len(x), k), PAD_SCORE, np.float32)
    out_i = np.full((len(x), k), PAD_ID, dtype=object)
    todo = np.arange(len(x))
    extra = max((len(e) for e in exclude), default=0) if exclude is not None else 0
    fetch = min(max(k + extra, 1) * (2 if max_per_artist else 1), max(n_candidates, 1))
    for level in range(MAX_ROUNDS):
        wide = _widen(index, level, knobs)
        scores, ids = index.search(x[todo], fetch, allowed=allowed, **wide)
        still = []
        for row, q in enumerate(todo):
            keep = cap_per_group(ids[row], artists, max_per_artist, exclude[q] if exclude is not None else frozenset()) \
                if post else np.flatnonzero(ids[row] != PAD_ID)
            keep = keep[:k]
            out_s[q, :len(keep)] = scores[row, keep]
            out_i[q, :len(keep)] = ids[row, keep]
            if len(keep) < k:
                still.append(q)
        exhausted = fetch >= n_candidates and index.is_exhaustive(
            n_allowed=None if allowed is None else n_candidates, **wide)
        if not still or exhausted or n_candidates == 0:
            break
        todo = np.asarray(still)
        fetch = min(fetch * 2, n_candidates)
    return out_s, out_i.astype(str)
