"""Index-space array helpers shared by every recommender (no recommender logic here).

Users and items are row and column positions; a CSR ``seen`` [n_users, n_items] holds what each
user played. Lists are ``(items [b, n] int64, scores [b, n] float32)`` padded with item -1 and
score ``NEG`` (-inf).
"""
from __future__ import annotations

import numpy as np

from ..topk import top_k

NEG = np.float32(-np.inf)


def max_seen(seen, u: np.ndarray) -> int:
    """The most items any of users ``u`` has played (rows of the CSR ``seen``)."""
    return int(np.max(seen.indptr[u + 1] - seen.indptr[u])) if len(u) else 0


def pick(cand: np.ndarray, scores: np.ndarray, n: int):
    """The ``n`` best of candidates ``cand`` [b, c] by ``scores`` [b, c] -> ``(items [b, n], scores [b, n])``,
    padded -1 / -inf."""
    vals, idx = top_k(scores, n)
    if cand.shape[1] == 0:
        return np.full(idx.shape, -1, np.int64), vals
    items = np.where(idx >= 0, np.take_along_axis(cand, np.maximum(idx, 0), axis=1), -1)
    return items, vals


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


def mask_unwanted(S: np.ndarray, seen, u: np.ndarray, allowed: np.ndarray | None, exclude_seen: bool) -> np.ndarray:
    """-inf where user ``u[r]`` played the item (``exclude_seen``) or the item is not ``allowed``."""
    if exclude_seen:
        rows, cols = played(seen, u)
        S[rows, cols] = -np.inf
    if allowed is not None:
        S[:, ~np.asarray(allowed, bool)] = -np.inf
    return S


def zscore_rows(S: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """Standardise each row of ``S`` [b, N] (finite) by the mean and standard deviation of its columns
    ``valid`` [N] bool (all when None), in ``S``'s dtype; a constant row is only centred."""
    ref = S if valid is None else S[:, valid]
    mean = ref.mean(axis=1, keepdims=True)
    std = ref.std(axis=1, keepdims=True)
    return (S - mean) / np.where(std > 1e-12, std, 1.0)
