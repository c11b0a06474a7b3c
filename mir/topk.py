"""Row-wise top-k: the one selection used by the vector indexes and the recommenders."""
from __future__ import annotations

import numpy as np


def top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Best ``k`` columns of each row of ``scores`` [n, m], descending; ``-inf`` entries are never chosen.

    Returns (scores [n, k] float32, columns [n, k] int64) padded with ``-inf`` / ``-1``. Ties keep column order.

    >>> s, c = top_k(np.array([[0.5, 2.0, -np.inf]]), 4)
    >>> c.tolist(), s.tolist()
    ([[1, 0, -1, -1]], [[2.0, 0.5, -inf, -inf]])
    """
    n, m = scores.shape
    kk = min(k, m)
    out_s = np.full((n, k), -np.inf, dtype=np.float32)
    out_c = np.full((n, k), -1, dtype=np.int64)
    if kk == 0:
        return out_s, out_c
    part = np.argpartition(-scores, kk - 1, axis=1)[:, :kk] if kk < m else np.tile(np.arange(m), (n, 1))
    vals = np.take_along_axis(scores, part, axis=1)
    order = np.lexsort((part, -vals), axis=1)
    part = np.take_along_axis(part, order, axis=1)
    vals = np.take_along_axis(vals, order, axis=1)
    valid = np.isfinite(vals)
    out_s[:, :kk] = np.where(valid, vals, -np.inf)
    out_c[:, :kk] = np.where(valid, part, -1)
    return out_s, out_c
