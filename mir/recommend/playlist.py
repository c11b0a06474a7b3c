"""Playlists from a track set: continue from seed tracks, or walk from one track to another.

Both build the list greedily, one track at a time, scoring every unused track ``c`` after the
previous track ``p``::

    score(c) = closeness(c) - tempo_weight * tempo_step(p, c) - key_weight * key_step(p, c)

- continuation: ``closeness = (1 - flow) * cos(c, centre of the seeds) + flow * cos(c, p)``
- path from A to B: ``closeness = cos(c, target_i)``, targets evenly spaced on the straight line
  from A's embedding to B's (normalised), so the list drifts from A towards B
- ``tempo_step``: |log2 of the tempo ratio| folded so half/double time counts as the same tempo
  (0 = same tempo, 0.5 = a tritone of tempo apart), 0 when a tempo is unknown
- ``key_step``: steps on the Camelot wheel (circle of fifths; relative major/minor one step apart),
  divided by 6; 0 when a key is unknown

Rules: no track twice (seeds included); no artist again within ``artist_gap`` tracks (seeds count
as the tracks before the list). When no track obeys the artist rule the best one is taken anyway
and counted in ``relaxed``.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from .. import atomic
from ..errors import ParameterError
from ..features.keys import PITCH_CLASSES
from ..similar.filters import music_mask, parse_key



def camelot(key: str | None) -> tuple[int, str] | None:
    """Camelot code ``(1..12, "A" minor | "B" major)`` of a key such as ``"A minor"`` or ``"Bbm"``
    (:func:`mir.similar.filters.parse_key`); None if unknown or without a mode."""
    if not isinstance(key, str):
        return None
    try:
        tonic, mode = parse_key(key)
    except ParameterError:
        return None
    if mode is None:
        return None
    pc = PITCH_CLASSES.index(tonic) + (3 if mode == "minor" else 0)  # a minor key sits with its relative major
    return ((pc * 7) % 12 + 7) % 12 + 1, "A" if mode == "minor" else "B"


def key_step(a: str | None, b: str | None) -> float:
    """Camelot wheel distance / 6 (0 same key, 1/6 neighbour or relative key); 0 when unknown."""
    ca, cb = camelot(a), camelot(b)
    if ca is None or cb is None:
        return 0.0
    d = abs(ca[0] - cb[0])
    return (min(d, 12 - d) + (ca[1] != cb[1])) / 6.0


def tempo_step(a: float, b: float) -> float:
    """|log2(a / b)| folded to [0, 0.5] (double/half time is the same pulse); 0 when unknown."""
    if not (np.isfinite(a) and np.isfinite(b)) or a <= 0 or b <= 0:
        return 0.0
    r = abs(np.log2(a / b)) % 1.0
    return float(min(r, 1.0 - r))


@dataclass
class Playlist:
    track_ids: list[str]
    scores: list[float]
    seeds: list[str]
    mode: str  # "continue" or "path"
    relaxed: int = 0  # picks that had to break the artist rule
    settings: dict = field(default_factory=dict)


def _key_codes(tracks) -> tuple[np.ndarray, np.ndarray]:
    """Camelot numbers (0 = unknown key) and minor flags of every track."""
    codes = [camelot(k) for k in tracks.key]
    return (np.array([c[0] if c else 0 for c in codes], np.int64), np.array([bool(c and c[1] == "A") for c in codes]))


def _steps(tracks, prev: int, tempo_weight: float, key_weight: float, keys) -> np.ndarray:
    out = np.zeros(len(tracks))
    if tempo_weight:
        t = tracks.tempo
        ok = np.isfinite(t) & (t > 0)
        if np.isfinite(t[prev]) and t[prev] > 0:
            r = np.zeros(len(t))
            r[ok] = np.abs(np.log2(t[ok] / t[prev])) % 1.0
            out += tempo_weight * np.minimum(r, 1.0 - r)
    num, minor = keys
    if key_weight and num[prev]:
        d = np.abs(num - num[prev])
        step = (np.minimum(d, 12 - d) + (minor != minor[prev])) / 6.0
        out += key_weight * np.where(num > 0, step, 0.0)
    return out


def _greedy(tracks, closeness, first_prev: int, history: list[int], length: int, *, tempo_weight: float,
            key_weight: float, artist_gap: int, exclude: set[int]) -> tuple[list[int], list[float], int]:
    used = np.zeros(len(tracks), bool)
    used[list(exclude)] = True
    picked, scores, relaxed = [], [], 0
    prev, recent = first_prev, list(history)
    keys = _key_codes(tracks)
    for step in range(length):
        s = closeness(step, prev) - _steps(tracks, prev, tempo_weight, key_weight, keys)
        s[used] = -np.inf
        if not np.isfinite(s).any():
            break
        blocked = {tracks.artist[i] for i in recent[-artist_gap:] if tracks.artist[i] is not None} if artist_gap else set()
        ok = np.array([a is None or a not in blocked for a in tracks.artist]) if blocked else np.ones(len(s), bool)
        if np.isfinite(s[ok]).any():
            s = np.where(ok, s, -np.inf)
        else:
            relaxed += 1
        j = int(np.argmax(s))
        picked.append(j)
        scores.append(float(s[j]))
        used[j] = True
        recent.append(j)
        prev = j
    return picked, scores, relaxed


def _check(length: int, artist_gap: int, tempo_weight: float, key_weight: float) -> None:
    if isinstance(length, bool) or not isinstance(length, (int, np.integer)) or length < 1:
        raise ParameterError(f"length must be a positive int, got {length!r}")
    if artist_gap < 0 or tempo_weight < 0 or key_weight < 0:
        raise ParameterError("artist_gap, tempo_weight and key_weight must be >= 0")


def _not_music(tracks, music_only: bool | None) -> set[int]:
    """Tracks a music-only playlist leaves out. ``None``: music-only when the tracks carry music
    probabilities (a model with a music gate), else nothing left out."""
    if music_only is None:
        music_only = not np.isnan(tracks.music).all()
    return set(np.flatnonzero(~music_mask(tracks.music, tracks.model_id)).tolist()) if music_only else set()


def continue_from(tracks, seeds: Sequence[str], length: int = 30, *, flow: float = 0.5, tempo_weight: float = 0.5,
                  key_weight: float = 0.1, artist_gap: int = 3, music_only: bool | None = None) -> Playlist:
    """``length`` tracks continuing the ``seeds`` (track ids or unique prefixes; played in this order).

    ``music_only``: leave out tracks the music gate calls non-music (seeds may be any track);
    ``None`` = when the model has a music gate."""
    _check(length, artist_gap, tempo_weight, key_weight)
    if not seeds:
        raise ParameterError("give at least one seed track")
    if not 0.0 <= flow <= 1.0:
        raise ParameterError(f"flow must be in [0, 1], got {flow!r}")
    idx = [tracks.index_of(s) for s in seeds]
    if len(set(idx)) != len(idx):
        raise ParameterError("a seed track is given twice")
    E = tracks.embeddings
    centre = E[idx].sum(axis=0)
    centre /= max(np.linalg.norm(centre), 1e-12)
    to_centre = E @ centre

    def closeness(step, prev):
        return (1.0 - flow) * to_centre + flow * (E @ E[prev])

    picked, scores, relaxed = _greedy(tracks, closeness, idx[-1], idx, length, tempo_weight=tempo_weight,
                                      key_weight=key_weight, artist_gap=artist_gap,
                                      exclude=set(idx) | _not_music(tracks, music_only))
    return Playlist([str(tracks.track_ids[i]) for i in picked], scores, [str(tracks.track_ids[i]) for i in idx],
                    "continue", relaxed, {"length": length, "flow": flow, "tempo_weight": tempo_weight,
                                          "key_weight": key_weight, "artist_gap": artist_gap})


def path_between(tracks, start: str, end: str, length: int = 30, *, tempo_weight: float = 0.5, key_weight: float = 0.1,
                 artist_gap: int = 3, music_only: bool | None = None) -> Playlist:
    """``length`` tracks from ``start`` to ``end`` (both included) drifting through embedding space;
    ``music_only`` as in :func:`continue_from`."""
    _check(length, artist_gap, tempo_weight, key_weight)
    a, b = tracks.index_of(start), tracks.index_of(end)
    if a == b:
        raise ParameterError("the path needs two different tracks (--seed and --to name the same one)")
    if length < 2:
        raise ParameterError("a path has at least 2 tracks (start and end)")
    E = tracks.embeddings
    inner = length - 2
    lam = np.arange(1, inner + 1) / (inner + 1)
    targets = (1 - lam)[:, None] * E[a] + lam[:, None] * E[b]
    targets /= np.maximum(np.linalg.norm(targets, axis=1, keepdims=True), 1e-12)

    def closeness(step, prev):
        return E @ targets[step]

    mid, scores, relaxed = _greedy(tracks, closeness, a, [a], inner, tempo_weight=tempo_weight, key_weight=key_weight,
                                   artist_gap=artist_gap, exclude={a, b} | _not_music(tracks, music_only))
    order = [a, *mid, b]
    return Playlist([str(tracks.track_ids[i]) for i in order], [float("nan"), *scores, float("nan")],
                    [str(tracks.track_ids[a]), str(tracks.track_ids[b])], "path", relaxed,
                    {"length": length, "tempo_weight": tempo_weight, "key_weight": key_weight, "artist_gap": artist_gap})


# --- export ----------------------------------------------------------------------------------------------------
def _entries(playlist: Playlist, tracks) -> list[dict]:
    out = []
    for tid, score in zip(playlist.track_ids, playlist.scores):
        i = tracks.index_of(tid)
        out.append({"track_id": tid, "path": tracks.path[i], "artist": tracks.artist[i], "title": tracks.title[i],
                    "genre": tracks.genre[i], "tempo": None if not np.isfinite(tracks.tempo[i]) else round(float(tracks.tempo[i]), 2),
                    "key": tracks.key[i], "duration": None if not np.isfinite(tracks.duration[i]) else round(float(tracks.duration[i]), 3),
                    "score": None if not np.isfinite(score) else round(score, 6)})
    return out


def shortfall(playlist: Playlist, tracks) -> str | None:
    """Why ``playlist`` holds fewer tracks than asked (None when it holds them all). A playlist never
    repeats a track, so it ends when the tagged tracks run out."""
    asked, got = playlist.settings.get("length", len(playlist.track_ids)), len(playlist.track_ids)
    if got >= asked:
        return None
    seeds = "" if playlist.mode == "path" else \
        f", {len(set(playlist.seeds))} of them the seed{'s' if len(set(playlist.seeds)) != 1 else ''}"
    return (f"{got} of {asked} tracks: the library has {len(tracks)} tagged tracks{seeds}, "
            "and a playlist never repeats a track (tag more tracks for longer playlists)")


def playlist_doc(playlist: Playlist, tracks) -> dict:
    """The JSON document of a playlist: mode, seeds, settings, ``shortfall`` (why it is shorter than
    asked, or None) and one entry per track."""
    return {"mode": playlist.mode, "seeds": playlist.seeds, "relaxed": playlist.relaxed,
            "settings": playlist.settings, "shortfall": shortfall(playlist, tracks),
            "tracks": _entries(playlist, tracks)}


def m3u_text(playlist: Playlist, tracks) -> str:
    """Extended M3U: ``#EXTINF:<seconds>,<artist> - <title>`` (an untitled track: its file name) then the
    file path, one entry per track."""
    lines = ["#EXTM3U"]
    for e in _entries(playlist, tracks):
        secs = int(round(e["duration"])) if e["duration"] is not None else -1
        name = (" - ".join(x for x in (e["artist"], e["title"]) if x)
                or (os.path.basename(e["path"]) if e["path"] else e["track_id"]))
        lines += [f"#EXTINF:{secs},{name}", e["path"] or e["track_id"]]
    return "\n".join(lines) + "\n"


def write_json(playlist: Playlist, tracks, path: str | os.PathLike) -> None:
    atomic.write_text(path, json.dumps(playlist_doc(playlist, tracks), indent=1) + "\n")


def write_m3u(playlist: Playlist, tracks, path: str | os.PathLike) -> None:
    atomic.write_text(path, m3u_text(playlist, tracks))
