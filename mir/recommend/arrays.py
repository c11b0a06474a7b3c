"""Index-space array helpers shared by every recommender (no recommender logic here).

Users and items are row and column positions; a CSR ``seen`` [n_users, n_items] holds what each
user played. Lists are ``(items [b, n] int64, scores [b, n] float32)`` padded with item -1 and
score ``NEG`` (-inf).
"""
from __future__ import annotations

import numpy as np

NEG = np.float32(-np.inf)


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


def mask_unwanted(S: np.ndarray, seen, u: np.ndarray, allowed: np.ndarray | None, exclude_seen: bool) -> np.ndarray:
    """-inf where user ``u[r]`` played the item (``exclude_seen``) or the item is not ``allowed``."""
    if exclude_seen:
        rows, cols = played(seen, u)
        S[rows, cols] = -np.inf
    if allowed is not None:
        S[:, ~np.asarray(allowed, bool)] = -np.inf
    return S
