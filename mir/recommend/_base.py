"""The recommender contract shared by every method, and the exact content search.

Every recommender works in index space: users and items are positions in the fitted
:class:`~mir.recommend.events.Interactions` (items = the catalogue's track order). A method
implements two steps, so that hybrids and re-ranking can combine them:

- ``_candidates(u, n, allowed, exclude_seen)`` -> ``(items [b, n] int64, scores [b, n] float32)``,
  best first, padded with item -1 / score -inf;
- ``_score(u, items [b, c])`` -> ``[b, c]`` float32 scores of given items (-inf where item is -1).

:meth:`Recommender.recommend` turns them into a table of ranked track ids per user, with a
popularity fallback for users without history and optional re-ranking.

State: hyper-parameters are ``__init__`` arguments (JSON values); learned state ends in ``_``
and is NumPy arrays or scipy CSR matrices, so :func:`save_model` / :func:`load_model` store it as
``.npz`` (no pickle) + ``.json``.
"""
from __future__ import annotations

import inspect
import json
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from .. import atomic
from ..errors import ParameterError

NEG = np.float32(-np.inf)
SEARCH_CHUNK = 256  # queries scored at once by the exact search


# --- exact content search ------------------------------------------------------------------------------------
def search_embeddings(embeddings: np.ndarray, queries: np.ndarray, n: int, *,
                      allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Exact maximum-inner-product search: ``(idx [m, n] int64, sims [m, n] float32)``, best first.

    ``embeddings`` [n_items, d] and ``queries`` [m, d] are unit rows (inner product = cosine);
    ``allowed`` [n_items] bool restricts the result (padding: -1 / -inf). For a few ad-hoc queries;
    the recommenders use the blocked scans of :mod:`mir.recommend.scan` or a :mod:`mir.index` index.
    """
    queries = np.asarray(queries, np.float32)
    parts = []
    for start in range(0, len(queries), SEARCH_CHUNK):  # bounded memory: chunk × n_items scores at a time
        sims = queries[start:start + SEARCH_CHUNK] @ embeddings.T
        if allowed is not None:
            sims[:, ~allowed] = NEG
        parts.append(topk(sims, n))
    if not parts:
        return topk(np.zeros((0, len(embeddings)), np.float32), n)
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def max_seen(seen, u: np.ndarray) -> int:
    """The most items any of users ``u`` has played (rows of the CSR ``seen``)."""
    return int(np.max(seen.indptr[u + 1] - seen.indptr[u])) if len(u) else 0


def pick(cand: np.ndarray, scores: np.ndarray, n: int):
    """The ``n`` best of candidates ``cand`` [b, c] by ``scores`` [b, c] -> ``(items, scores)``, -1 padded."""
    idx, vals = topk(scores, n)
    items = np.where(idx >= 0, np.take_along_axis(cand, np.maximum(idx, 0), axis=1), -1)
    return items, vals


def zscore_rows(s: np.ndarray) -> np.ndarray:
    """Standardise each row over its finite entries (others stay -inf); constant rows become 0."""
    ok = np.isfinite(s)
    cnt = np.maximum(ok.sum(axis=1, keepdims=True), 1)
    x = np.where(ok, s, 0.0).astype(np.float64)
    mean = x.sum(axis=1, keepdims=True) / cnt
    var = (np.where(ok, x - mean, 0.0) ** 2).sum(axis=1, keepdims=True) / cnt
    std = np.sqrt(var)
    z = np.where(std > 1e-12, (x - mean) / np.where(std > 1e-12, std, 1.0), 0.0)
    return np.where(ok, z, -np.inf)


def topk(scores: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Row-wise top ``n`` of ``scores`` [b, m]: ``(idx, values)`` by decreasing value, ties by index.

    Entries at -inf are returned as index -1.
    """
    b, m = scores.shape
    n = int(min(n, m))
    if n <= 0:
        return np.zeros((b, 0), np.int64), np.zeros((b, 0), np.float32)
    if n < m:
        part = np.argpartition(-scores, n - 1, axis=1)[:, :n]
    else:
        part = np.broadcast_to(np.arange(m), (b, m))
    vals = np.take_along_axis(scores, part, axis=1)
    order = np.lexsort((part, -vals), axis=1)
    idx = np.take_along_axis(part, order, axis=1).astype(np.int64)
    vals = np.take_along_axis(vals, order, axis=1).astype(np.float32)
    idx[~np.isfinite(vals) & (vals < 0)] = -1
    return idx, vals


def gather_rows(matrix: np.ndarray, items: np.ndarray) -> np.ndarray:
    """``matrix[items]`` with -1 entries mapped to row 0 (callers mask them)."""
    return matrix[np.where(items >= 0, items, 0)]


def played(seen, users: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(rows, cols)`` of the played items of ``users`` (row r = users[r]; users < 0 have none)."""
    users = np.asarray(users, np.int64)
    ok = users >= 0
    lo = np.where(ok, seen.indptr[np.maximum(users, 0)], 0)
    hi = np.where(ok, seen.indptr[np.maximum(users, 0) + 1], 0)
    counts = hi - lo
    rows = np.repeat(np.arange(len(users)), counts)
    starts = np.repeat(lo - (np.cumsum(counts) - counts), counts)
    return rows, seen.indices[np.arange(len(rows)) + starts].astype(np.int64)


def seen_mask(seen, users: np.ndarray, items: np.ndarray) -> np.ndarray:
    """[b, c] bool: user ``users[r]`` has played ``items[r, c]`` (CSR ``seen`` [n_users, n_items])."""
    rows, cols = played(seen, users)
    if len(rows) == 0:
        return np.zeros(items.shape, bool)
    m = seen.shape[1] + 1  # key = row * m + item
    done = np.sort(rows * m + cols)
    keys = items + np.arange(len(items))[:, None] * m
    pos = np.minimum(np.searchsorted(done, keys), len(done) - 1)
    return (done[pos] == keys) & (items >= 0)


def dedupe_rows(items: np.ndarray) -> np.ndarray:
    """Replace repeated entries within each row by -1 (keeps the first)."""
    order = np.argsort(items, axis=1, kind="stable")
    s = np.take_along_axis(items, order, axis=1)
    dup = np.zeros_like(s, dtype=bool)
    dup[:, 1:] = s[:, 1:] == s[:, :-1]
    out = items.copy()
    np.put_along_axis(out, order, np.where(dup, -1, s), axis=1)
    return out


# --- the base class -----------------------------------------------------------------------------------------
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
        idx, vals = topk(scores, n)
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


# --- persistence (no pickle) ------------------------------------------------------------------------------
def _learned(model) -> dict:
    return {k: v for k, v in vars(model).items() if k.endswith("_") and not k.startswith("_")}


def _flatten(model, prefix: str, arrays: dict) -> dict:
    import scipy.sparse as sp

    meta = {"class": type(model).__name__, "params": {}, "arrays": [], "csr": [], "children": {}}
    for k, v in model.get_params().items():
        if isinstance(v, Recommender):
            meta["children"][k] = _flatten(v, f"{prefix}{k}.", arrays)
        else:
            meta["params"][k] = v
    for k, v in _learned(model).items():
        if isinstance(v, Recommender):
            meta["children"][k] = _flatten(v, f"{prefix}{k}.", arrays)
        elif sp.issparse(v):
            v = v.tocsr()
            for part in ("data", "indices", "indptr"):
                arrays[f"{prefix}{k}.{part}"] = getattr(v, part)
            arrays[f"{prefix}{k}.shape"] = np.asarray(v.shape, np.int64)
            meta["csr"].append(k)
        elif isinstance(v, np.ndarray):
            if v.dtype == object:
                v = v.astype(str)
            arrays[prefix + k] = v
            meta["arrays"].append(k)
        elif isinstance(v, (int, float, str, bool, np.integer, np.floating)) or v is None:
            meta["params"]["@" + k] = v.item() if isinstance(v, np.generic) else v
        else:
            raise ParameterError(f"cannot store learned attribute {k!r} of type {type(v).__name__}")
    return meta


def save_model(model: Recommender, folder: str | os.PathLike) -> None:
    """Write a fitted recommender as ``model.json`` + ``model.npz`` in ``folder`` (atomically)."""
    import io

    model._check_fitted()
    arrays: dict = {}
    meta = _flatten(model, "", arrays)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    folder = Path(folder)
    atomic.write_bytes(folder / "model.npz", buf.getvalue())
    atomic.write_text(folder / "model.json", json.dumps(meta, indent=1, sort_keys=True))


def _rebuild(meta: dict, prefix: str, arrays) -> Recommender:
    import scipy.sparse as sp

    from . import methods

    cls = getattr(methods, meta["class"], None)
    if not (isinstance(cls, type) and issubclass(cls, Recommender)):
        raise ParameterError(f"unknown recommender class {meta['class']!r} in a saved model")
    params = {k: v for k, v in meta["params"].items() if not k.startswith("@")}
    init = set(inspect.signature(cls.__init__).parameters)
    for k, child in meta["children"].items():
        if k in init:
            params[k] = _rebuild(child, f"{prefix}{k}.", arrays)
    model = cls(**params)
    for k, child in meta["children"].items():
        if k not in init:
            setattr(model, k, _rebuild(child, f"{prefix}{k}.", arrays))
    for k, v in meta["params"].items():
        if k.startswith("@"):
            setattr(model, k[1:], v)
    for k in meta["arrays"]:
        setattr(model, k, arrays[prefix + k])
    for k in meta["csr"]:
        shape = tuple(int(x) for x in arrays[f"{prefix}{k}.shape"])
        setattr(model, k, sp.csr_matrix((arrays[f"{prefix}{k}.data"], arrays[f"{prefix}{k}.indices"],
                                         arrays[f"{prefix}{k}.indptr"]), shape=shape))
    return model


def load_model(folder: str | os.PathLike) -> Recommender:
    """Read a recommender written by :func:`save_model`."""
    folder = Path(folder)
    try:
        meta = json.loads((folder / "model.json").read_text())
        with np.load(folder / "model.npz", allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except (OSError, ValueError) as exc:
        raise ParameterError(f"cannot read a saved recommender in {str(folder)!r}: {exc}") from exc
    return _rebuild(meta, "", arrays)
