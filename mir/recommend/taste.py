"""Taste vectors: what a user's history says they like, in embedding space (pure functions).

Each event weighs ``log(1 + plays) * 0.5 ** (age / half_life)``, ``age`` measured back from the
user's last event; weights of repeated tracks add up. A history with enough distinct tracks is
split into up to ``n_tastes`` clusters (weighted spherical k-means, deterministic start: the
heaviest track, then the heaviest track least like the centres so far); each cluster gives a unit
taste vector and its share of the weight.
"""
from __future__ import annotations

import numpy as np

DAY = 86400.0


def event_weights(plays: np.ndarray, timestamp: np.ndarray, last: np.ndarray, half_life_days: float | None) -> np.ndarray:
    """Per-event weights; ``last`` is the user's last timestamp for each event (same units, seconds)."""
    w = np.log1p(np.asarray(plays, np.float64))
    if half_life_days:
        age = (np.asarray(last, np.float64) - np.asarray(timestamp, np.float64)) / (half_life_days * DAY)
        w = w * np.exp2(-np.maximum(age, 0.0))
    return w


def spherical_kmeans(X: np.ndarray, w: np.ndarray, k: int, *, iterations: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Weighted spherical k-means of unit rows ``X`` [m, d]: ``(centres [k, d] unit, shares [k])``.

    Shares are each cluster's share of the total weight (sum 1); an empty cluster gets share 0.
    """
    m = len(X)
    k = max(1, min(k, m))
    centres = [X[int(np.argmax(w))]]
    for _ in range(1, k):
        closest = np.max(X @ np.array(centres).T, axis=1)
        centres.append(X[int(np.argmax(w * (1.0 - closest)))])
    C = np.array(centres, dtype=np.float64)
    for _ in range(iterations):
        assign = np.argmax(X @ C.T, axis=1)
        new = np.zeros_like(C)
        np.add.at(new, assign, w[:, None] * X)
        norms = np.linalg.norm(new, axis=1)
        moved = norms > 0
        new[moved] /= norms[moved, None]
        new[~moved] = C[~moved]
        if np.allclose(new, C):
            break
        C = new
    assign = np.argmax(X @ C.T, axis=1)
    shares = np.bincount(assign, weights=w, minlength=k)
    total = shares.sum()
    shares = shares / total if total > 0 else np.full(k, 1.0 / k)
    return C, shares


def user_tastes(X: np.ndarray, w: np.ndarray, *, n_tastes: int, min_tracks: int) -> tuple[np.ndarray, np.ndarray]:
    """Taste vectors of one user from the embeddings ``X`` [m, d] of their distinct tracks and weights ``w``.

    ``k = clamp(m // min_tracks, 1, n_tastes)`` clusters; returns ``(T [n_tastes, d], shares [n_tastes])``
    padded with zero rows and zero shares.
    """
    d = X.shape[1]
    T = np.zeros((n_tastes, d), np.float32)
    shares = np.zeros(n_tastes, np.float32)
    if len(X) == 0 or not np.any(w > 0):
        return T, shares
    k = int(np.clip(len(X) // max(1, min_tracks), 1, n_tastes))
    if k == 1:
        v = w @ X
        norm = np.linalg.norm(v)
        T[0] = v / norm if norm > 0 else X[int(np.argmax(w))]
        shares[0] = 1.0
        return T, shares
    C, s = spherical_kmeans(X.astype(np.float64), w, k)
    T[:k], shares[:k] = C, s
    return T, shares


def mixture_scores(sims: np.ndarray, shares: np.ndarray, temperature: float) -> np.ndarray:
    """Score of items under a user's taste mixture: ``t * log sum_j shares_j exp(sims_j / t)``.

    ``sims`` [b, T, c] cosine of each taste with each item, ``shares`` [b, T]; the log-density of
    a mixture of von Mises-Fisher components, so an item close to any taste scores high, and a
    taste with a larger share pulls more. Rows without any taste give -inf.
    """
    with np.errstate(divide="ignore"):
        logw = np.log(shares.astype(np.float64))[:, :, None]
    z = sims.astype(np.float64) / temperature + logw
    top = np.max(z, axis=1, keepdims=True)
    safe = np.where(np.isfinite(top), top, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = temperature * (np.log(np.sum(np.exp(z - safe), axis=1)) + safe[:, 0])
    return np.where(np.isfinite(top[:, 0]), out, -np.inf).astype(np.float32)
