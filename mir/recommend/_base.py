"""The recommender contract shared by every method.

Every recommender works in index space: users and items are positions in the fitted
:class:`~mir.recommend.events.Interactions` (items = the catalogue's track order). A method
implements two steps, so that hybrids and re-ranking can combine them:

- ``_candidates(u, n, allowed, exclude_seen)`` -> ``(items [b, n] int64, scores [b, n] float32)``,
  best first, padded with item -1 / score -inf;
- ``_score(u, items [b, c])`` -> ``[b, c]`` float32 scores of given items (-inf where item is -1).

:meth:`Recommender.recommend` turns them into a table of ranked track ids per user, with a
popularity fallback for users without history and optional re-ranking.

State: hyper-parameters are ``__init__`` arguments (JSON values); learned state ends in ``_``
and is NumPy arrays or scipy CSR matrices, so :mod:`~mir.recommend.persist` stores it as
``.npz`` (no pickle) + ``.json``.
"""
from __future__ import annotations

import inspect
from typing import Sequence

import numpy as np
import pandas as pd

from ..errors import ParameterError
from ..topk import top_k
from .arrays import NEG


class Recommender:
    """Base class: see the module docstring. Subclasses set ``name`` and implement ``_fit``,
    ``_candidates`` and ``_score``."""

    name = "base"
    needs_tracks = False

    def get_params(self) -> dict:
        sig = inspect.signature(type(self).__init__)
        return {p: getattr(self, p) for p in sig.parameters if p != "self"}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.get_params().items())})"

    # fitting --------------------------------------------------------------------------------------------
    def fit(self, interactions, tracks=None) -> "Recommender":
        """Learn from ``interactions`` (items in the order of ``tracks``, when a method needs tracks)."""
        if self.needs_tracks:
            if tracks is None:
                raise ParameterError(f"{type(self).__name__} needs the tracks (embeddings) of the catalogue")
            if len(tracks) != interactions.n_items or not np.array_equal(tracks.track_ids, interactions.items):
                raise ParameterError("interactions must be built over the catalogue's track order "
                                     "(Interactions.from_events(events, tracks.track_ids))")
        if len(interactions) == 0:
            raise ParameterError("no events to learn from (all rows were skipped? see the event report)")
        self.users_ = np.asarray(interactions.users, dtype=str)
        self.items_ = np.asarray(interactions.items, dtype=str)
        self.seen_ = interactions.matrix()
        self.item_users_ = np.bincount(self.seen_.indices, minlength=interactions.n_items).astype(np.int64)
        self.user_plays_ = np.asarray(self.seen_.sum(axis=1), dtype=np.float64).ravel()
        self._fit(interactions, tracks)
        return self

    def _fit(self, interactions, tracks) -> None:
        raise NotImplementedError

    def _check_fitted(self) -> None:
        if not hasattr(self, "seen_"):
            raise ParameterError(f"{type(self).__name__} is not fitted yet; call fit(interactions) first")

    # scoring --------------------------------------------------------------------------------------------
    def _candidates(self, u, n, allowed, exclude_seen):
        raise NotImplementedError

    def _score(self, u, items):
        raise NotImplementedError

    def _popular(self, b: int, n: int, allowed: np.ndarray | None):
        """Most played items (distinct users), ``b`` identical rows."""
        scores = np.log1p(self.item_users_.astype(np.float32))[None, :]
        if allowed is not None:
            scores = np.where(allowed, scores, NEG)
        vals, idx = top_k(scores, n)
        return np.repeat(idx, b, axis=0), np.repeat(vals, b, axis=0)

    def user_index(self, users: Sequence[str] | None) -> np.ndarray:
        """Positions of user ids in the fitted users (-1 for users the model has not seen)."""
        self._check_fitted()
        if users is None:
            return np.arange(len(self.users_), dtype=np.int64)
        return pd.Index(self.users_).get_indexer(np.asarray(users, dtype=str)).astype(np.int64)

    def recommend(self, users: Sequence[str] | None = None, k: int = 50, *, exclude_seen: bool = True,
                  rerank=None, batch_size: int = 512) -> pd.DataFrame:
        """Top ``k`` tracks per user: DataFrame ``user, rank (1-based), track_id, score``.

        ``users``: user ids (None: every fitted user); users without history get the most popular
        tracks. ``exclude_seen`` drops what the user already played. ``rerank``: a
        :class:`~mir.recommend.rerank.Reranker` (filters, per-artist cap, diversity).
        """
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ParameterError(f"k must be a positive int, got {k!r}")
        names = self.users_ if users is None else np.asarray(users, dtype=str)
        u_all = self.user_index(users)
        frames = []
        for start in range(0, len(u_all), batch_size):
            u = u_all[start:start + batch_size]
            items, scores = self.recommend_index(u, k, exclude_seen=exclude_seen, rerank=rerank)
            frames.append(_to_frame(names[start:start + batch_size], items, scores, self.items_))
        if not frames:
            return pd.DataFrame({"user": pd.Series(dtype=str), "rank": pd.Series(dtype=np.int16),
                                 "track_id": pd.Series(dtype=str), "score": pd.Series(dtype=np.float32)})
        return pd.concat(frames, ignore_index=True)

    def recommend_index(self, u: np.ndarray, k: int, *, exclude_seen: bool = True, rerank=None):
        """Index-space top ``k`` for user positions ``u`` (-1 = unknown): ``(items [b, k], scores [b, k])``."""
        self._check_fitted()
        u = np.asarray(u, dtype=np.int64)
        allowed = rerank.allowed(len(self.items_)) if rerank is not None else None
        n = rerank.pool_size(k) if rerank is not None else k
        items = np.full((len(u), n), -1, np.int64)
        scores = np.full((len(u), n), NEG, np.float32)
        warm = (u >= 0) & (self.user_plays_[np.maximum(u, 0)] > 0)
        if warm.any():
            ci, cs = self._candidates(u[warm], n, allowed, exclude_seen)
            items[warm, :ci.shape[1]], scores[warm, :cs.shape[1]] = ci, cs
        if (~warm).any():
            pi, ps = self._popular(int((~warm).sum()), n, allowed)
            items[~warm, :pi.shape[1]], scores[~warm, :ps.shape[1]] = pi, ps
        if rerank is not None:
            items, scores = rerank.rerank(items, scores, k)
        return items[:, :k], scores[:, :k]


def _to_frame(users: np.ndarray, items: np.ndarray, scores: np.ndarray, item_ids: np.ndarray) -> pd.DataFrame:
    b, k = items.shape
    ok = items >= 0
    ranks = np.cumsum(ok, axis=1)
    return pd.DataFrame({
        "user": np.repeat(users, k)[ok.ravel()],
        "rank": ranks[ok].astype(np.int16),
        "track_id": item_ids[items[ok]],
        "score": scores[ok].astype(np.float32),
    })


def clone(model: Recommender) -> Recommender:
    """An unfitted copy with the same hyper-parameters."""
    return type(model)(**model.get_params())
