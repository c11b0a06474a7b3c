"""Retrieval measures of an embedding on real audio: same recording, degraded copies, k-NN style.

Conventions
-----------
- ``emb``: ``[n, d]`` finite vectors; similarity is cosine (rows are L2-normalised here).
- ``groups``: ``[n]`` recording ids (any hashable values); excerpts of one recording share one.
- Rankings sort by decreasing similarity; ties go to the lower index (a stable sort), so results
  are exact and reproducible.
- Malformed input raises :class:`~mir.errors.ParameterError`.
"""
from __future__ import annotations

import numpy as np

from ..errors import ParameterError
from .metrics import balanced_accuracy


def _unit(emb, name: str) -> np.ndarray:
    x = np.asarray(emb, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] == 0 or not np.all(np.isfinite(x)):
        raise ParameterError(f"{name} must be a non-empty finite [n, d] array, got shape {x.shape}")
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def _codes(values, n: int, name: str) -> np.ndarray:
    values = np.asarray(values)
    if values.shape != (n,):
        raise ParameterError(f"{name} must have one entry per row ({n}), got shape {values.shape}")
    return np.unique(values, return_inverse=True)[1]


def _ranked(sim: np.ndarray) -> np.ndarray:
    """Column indices of each row by decreasing similarity, ties by index."""
    return np.argsort(-sim, axis=1, kind="stable")


def same_recording_precision(emb, groups, *, k: int = 3) -> float:
    """Mean over excerpts of the fraction of its ``k`` nearest other excerpts from the same recording.

    >>> same_recording_precision([[1, 0], [1, .1], [0, 1], [.1, 1]], ["a", "a", "b", "b"], k=1)
    1.0
    """
    x = _unit(emb, "emb")
    g = _codes(groups, len(x), "groups")
    if not 1 <= k < len(x):
        raise ParameterError(f"k must be in [1, {len(x) - 1}] for {len(x)} excerpts, got {k}")
    sim = x @ x.T
    np.fill_diagonal(sim, -np.inf)
    top = _ranked(sim)[:, :k]
    return float(np.mean(g[top] == g[:, None]))


def copy_rank1(copies, originals, source) -> float:
    """Fraction of degraded copies whose most similar original is the one they were made from.

    ``copies [m, d]``, ``originals [n, d]``, ``source [m]``: index into ``originals`` of each copy's original.

    >>> copy_rank1([[1, .2], [0, 1]], [[1, 0], [.6, .8]], [0, 0])
    0.5
    """
    q, o = _unit(copies, "copies"), _unit(originals, "originals")
    src = np.asarray(source)
    if src.shape != (len(q),) or not np.issubdtype(src.dtype, np.integer) or src.min() < 0 or src.max() >= len(o):
        raise ParameterError(f"source must hold one index into originals (0..{len(o) - 1}) per copy")
    best = _ranked(q @ o.T)[:, 0]
    return float(np.mean(best == src))


def knn_predict(emb, labels, groups, *, k: int = 5) -> np.ndarray:
    """Label of each excerpt by majority vote of its ``k`` nearest excerpts from *other* recordings.

    A tie in votes goes to the tied label whose first neighbour is nearest. Returns label codes
    (indices into ``np.unique(labels)``).
    """
    x = _unit(emb, "emb")
    y = _codes(labels, len(x), "labels")
    g = _codes(groups, len(x), "groups")
    sim = x @ x.T
    sim[g[:, None] == g[None, :]] = -np.inf  # never the same recording (nor the excerpt itself)
    if np.any(np.isinf(sim).sum(axis=1) > len(x) - k):
        raise ParameterError(f"every excerpt needs at least k={k} excerpts of other recordings")
    top = _ranked(sim)[:, :k]
    pred = np.empty(len(x), dtype=np.int64)
    for i, row in enumerate(top):
        votes = np.bincount(y[row], minlength=y.max() + 1)
        tied = np.flatnonzero(votes == votes.max())
        pred[i] = next(y[j] for j in row if y[j] in tied)
    return pred


def knn_balanced_accuracy(emb, labels, groups, *, k: int = 5) -> float:
    """Balanced accuracy (mean per-label recall) of :func:`knn_predict` against ``labels``.

    >>> emb = [[1, 0], [1, .1], [.9, .2], [0, 1], [.1, 1], [.2, .9]]
    >>> knn_balanced_accuracy(emb, list("aaabbb"), [0, 1, 2, 3, 4, 5], k=1)
    1.0
    """
    y = _codes(labels, len(np.asarray(emb)), "labels")
    return balanced_accuracy(y, knn_predict(emb, labels, groups, k=k))
