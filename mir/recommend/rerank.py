"""Re-ranking recommendation lists: filters, at most N tracks per artist, diversity (MMR).

Filters act before ranking (only allowed tracks become candidates); the per-artist cap and
maximal marginal relevance act on a larger candidate pool (``pool`` × k) after ranking.

MMR picks, one at a time, the candidate maximising
``(1 - diversity) * relevance - diversity * max cosine to the tracks already picked``, with
relevance the candidate's score min-max scaled to [0, 1] within the user's pool; ``diversity`` 0
keeps the original order.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ..errors import ParameterError
from .arrays import NEG


def mmr_order(scores: np.ndarray, embeddings: np.ndarray, k: int, *, diversity: float = 0.0,
              artists: Sequence | None = None, max_per_artist: int | None = None) -> list[int]:
    """Positions (into ``scores``) of up to ``k`` picks by MMR under an optional per-artist cap.

    ``scores`` [c] (-inf = not a candidate), ``embeddings`` [c, d] unit rows, ``artists`` [c]
    (None = unknown artist, never capped).
    """
    if not 0.0 <= diversity <= 1.0:
        raise ParameterError(f"diversity must be in [0, 1], got {diversity!r}")
    if max_per_artist is not None and max_per_artist < 1:
        raise ParameterError(f"max_per_artist must be >= 1, got {max_per_artist!r}")
    ok = np.isfinite(scores)
    if not ok.any():
        return []
    lo, hi = scores[ok].min(), scores[ok].max()
    rel = np.where(ok, (scores - lo) / (hi - lo) if hi > lo else 1.0, -np.inf)
    max_sim = np.zeros(len(scores))
    counts: dict = {}
    picked: list[int] = []
    while len(picked) < k:
        value = (1.0 - diversity) * rel - diversity * max_sim if diversity else rel.copy()
        if not np.isfinite(value).any():
            break
        j = int(np.argmax(value))  # first best: ties keep the original order
        rel[j] = -np.inf
        a = artists[j] if artists is not None else None
        if max_per_artist is not None and a is not None:
            if counts.get(a, 0) >= max_per_artist:
                continue
            counts[a] = counts.get(a, 0) + 1
        picked.append(j)
        if diversity:
            max_sim = np.maximum(max_sim, embeddings @ embeddings[j])
    return picked


class Reranker:
    """Filters + per-artist cap + MMR over a :class:`~mir.recommend.trackset.TrackSet` (same track order).

    ``genres``: keep tracks of any of these genres; ``tags``: keep tracks carrying all of these
    tags; ``bpm``: ``(low, high)`` inclusive (tracks without a tempo are dropped); ``music_only``: keep
    tracks the model's music gate calls music (:func:`mir.similar.filters.music_mask`); ``pool``:
    candidates per list = ``pool * k`` when the cap or diversity is on.
    """

    def __init__(self, tracks, *, diversity: float = 0.0, max_per_artist: int | None = None,
                 genres: Sequence[str] | None = None, tags: Sequence[str] | None = None,
                 bpm: tuple[float, float] | None = None, music_only: bool = False, pool: int = 4):
        if not 0.0 <= diversity <= 1.0:
            raise ParameterError(f"diversity must be in [0, 1], got {diversity!r}")
        if max_per_artist is not None and max_per_artist < 1:
            raise ParameterError(f"max_per_artist must be >= 1, got {max_per_artist!r}")
        if bpm is not None and not (len(bpm) == 2 and 0 <= bpm[0] <= bpm[1]):
            raise ParameterError(f"bpm must be (low, high) with 0 <= low <= high, got {bpm!r}")
        self.tracks = tracks
        self.diversity = float(diversity)
        self.max_per_artist = max_per_artist
        self.genres = list(genres) if genres else None
        self.tags = list(tags) if tags else None
        self.bpm = bpm
        self.music_only = bool(music_only)
        self.pool = pool
        self._allowed = self._mask()

    def _mask(self) -> np.ndarray | None:
        t = self.tracks
        mask = np.ones(len(t), bool)
        if self.genres:
            wanted = {g.lower() for g in self.genres}
            mask &= np.array([isinstance(g, str) and g.lower() in wanted for g in t.genre])
        if self.tags:
            wanted = {x.lower() for x in self.tags}
            mask &= np.array([wanted <= {x.lower() for x in tg} for tg in t.tags])
        if self.bpm is not None:
            with np.errstate(invalid="ignore"):
                mask &= (t.tempo >= self.bpm[0]) & (t.tempo <= self.bpm[1])
        if self.music_only:
            from ..similar.filters import music_mask

            mask &= music_mask(t.music, t.model_id)
        if mask.all():
            return None
        if not mask.any():
            raise ParameterError(f"no track passes the filters (genres={self.genres}, tags={self.tags}, bpm={self.bpm}, "
                                 f"music_only={self.music_only})")
        return mask

    @property
    def active(self) -> bool:
        return self.diversity > 0 or self.max_per_artist is not None

    def allowed(self, n_items: int) -> np.ndarray | None:
        if n_items != len(self.tracks):
            raise ParameterError(f"the reranker's catalogue has {len(self.tracks)} tracks, the model {n_items}")
        return self._allowed

    def pool_size(self, k: int) -> int:
        return k * self.pool if self.active else k

    def rerank(self, items: np.ndarray, scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        if not self.active:
            return items[:, :k], scores[:, :k]
        out_i = np.full((len(items), k), -1, np.int64)
        out_s = np.full((len(items), k), NEG, np.float32)
        for r in range(len(items)):
            ok = items[r] >= 0
            cand, sc = items[r][ok], scores[r][ok]
            picks = mmr_order(sc, self.tracks.embeddings[cand], k, diversity=self.diversity,
                              artists=self.tracks.artist[cand], max_per_artist=self.max_per_artist)
            out_i[r, :len(picks)] = cand[picks]
            out_s[r, :len(picks)] = sc[picks]
        return out_i, out_s
