"""The hybrid's lists without a dense ``[users, tracks]`` matrix: its standardised blend as inner products.

The hybrid (:mod:`mir.recommend.hybrid`) ranks by ``z(b_t + theta_u · phi_t) + w z(x_u · y_t)`` (ALS on
played tracks; on never-played tracks the taste term stands in for ALS and an offset ``c`` is added),
where ``z`` standardises each user's scores over the catalogue. A row's mean and standard deviation
of ``q · v_t`` over a set of tracks are ``q · mean(v)`` and ``sqrt(q' Cov(v) q)``: closed forms from
the tracks' moments, computed once. So each user's blend is an inner product plus a constant:

- played tracks: ``[q/s, w x/s'] · [v_t, y_t] - m/s - w m'/s'`` with ``q = [1, theta]``, ``v_t = [b_t, phi_t]``;
- never-played tracks: ``(1 + w) (q · v_t - m) / s + c``;

and the exact top-k of each part comes from :func:`~mir.recommend.exact_topk.mips_topk`, merged.
Cold-start users' content lists (``theta_c · phi_t``) and the "prior" lists are the same products with
other query vectors. Equal to the dense computation up to float32 rounding (ties may order differently).
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .arrays import NEG, pick
from .exact_topk import NormOrder, mips_topk


class Moments(NamedTuple):
    """Mean [D] and covariance [D, D] (population, float64) of item vectors: a row's standardisation."""
    mean: np.ndarray
    cov: np.ndarray


def moments(V: np.ndarray) -> Moments:
    V = np.asarray(V, np.float64)
    if len(V) == 0:
        return Moments(np.zeros(V.shape[1]), np.zeros((V.shape[1], V.shape[1])))
    mean = V.mean(axis=0)
    D = V - mean
    return Moments(mean, D.T @ D / len(V))


def row_stats(Q: np.ndarray, mom: Moments) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation of ``Q [b, D] @ V.T`` over the rows of ``V`` (std 1 where ~0, as
    :func:`~mir.recommend.arrays.zscore_rows`)."""
    Q = np.asarray(Q, np.float64)
    m = Q @ mom.mean
    var = np.einsum("bd,de,be->b", Q, mom.cov, Q)
    s = np.sqrt(np.maximum(var, 0.0))
    return m, np.where(s > 1e-12, s, 1.0)


class Queries(NamedTuple):
    """Per user: the played tracks' query [b, 1+F(+f)] and constant [b], the never-played ones' [b, 1+F], [b]."""
    played: np.ndarray
    played_c: np.ndarray
    never: np.ndarray
    never_c: np.ndarray


class BlendIndex:
    """Item vectors of a fitted hybrid split into played and never-played tracks, in norm order.

    ``V`` [N, 1+F]: ``[b_t, phi_t]``; ``Y`` [N, f] ALS item factors or None; ``never`` [N] bool;
    ``seen`` CSR [n_users, N] of played tracks (excluded from lists).
    """

    def __init__(self, V: np.ndarray, Y: np.ndarray | None, never: np.ndarray, seen):
        self.V = np.asarray(V, np.float64)
        self.never = np.asarray(never, bool)
        self.P, self.Nv = np.flatnonzero(~self.never), np.flatnonzero(self.never)
        self.taste = moments(self.V)  # the taste term is standardised over the whole catalogue
        self.Y = None if Y is None else np.asarray(Y, np.float64)
        self.als = None if Y is None else moments(self.Y[self.P])  # ALS over played tracks
        full = self.V if Y is None else np.hstack([self.V, self.Y])
        self.full = full.astype(np.float32)
        self.order_p = NormOrder(full[self.P])
        self.order_n = NormOrder(self.V[self.Nv]) if len(self.Nv) else None
        self.seen_p = seen[:, self.P].tocsr()  # the never-played columns are empty
        self.seen_p.sort_indices()

    def queries(self, q: np.ndarray, x: np.ndarray | None, w: np.ndarray, c: np.ndarray) -> Queries:
        """Queries for taste rows ``q`` [b, 1+F], ALS rows ``x`` [b, f] (None: no ALS term), weights ``w`` [b]
        and offsets ``c`` [b] on never-played tracks; ``w`` 0 and ``c`` 0 give the taste term alone."""
        m, s = row_stats(q, self.taste)
        qs = q / s[:, None]
        never = (1.0 + w)[:, None] * qs
        never_c = -(1.0 + w) * m / s + c
        if self.Y is None:
            return Queries(qs, -m / s, never, never_c)
        if x is None:
            return Queries(np.hstack([qs, np.zeros((len(q), self.Y.shape[1]))]), -m / s, never, never_c)
        ma, sa = row_stats(x, self.als)
        xs = (w / sa)[:, None] * x
        return Queries(np.hstack([qs, xs]), -m / s - w * ma / sa, never, never_c)

    def topk_never(self, Q: Queries, n: int, allowed=None) -> tuple[np.ndarray, np.ndarray]:
        """Top ``n`` never-played tracks (catalogue positions, scores)."""
        b = len(Q.never)
        if self.order_n is None:
            return np.full((b, 0), -1, np.int64), np.full((b, 0), NEG, np.float32)
        i, s = mips_topk(Q.never, self.order_n, n, allowed=None if allowed is None else allowed[self.Nv])
        return np.where(i >= 0, self.Nv[np.maximum(i, 0)], -1), (s + Q.never_c[:, None]).astype(np.float32)

    def topk_played(self, Q: Queries, n: int, users, *, exclude_seen: bool = True, allowed=None):
        """Top ``n`` played tracks (not played by the user when ``exclude_seen``): (catalogue positions, scores)."""
        i, s = mips_topk(Q.played, self.order_p, n, seen=self.seen_p if exclude_seen else None, users=users,
                         allowed=None if allowed is None else allowed[self.P])
        return np.where(i >= 0, self.P[np.maximum(i, 0)], -1), (s + Q.played_c[:, None]).astype(np.float32)

    def topk(self, Q: Queries, n: int, users, *, exclude_seen: bool = True, allowed=None):
        """The blend's top ``n`` over the whole catalogue: ``(items [b, n], scores [b, n])``."""
        pi, ps = self.topk_played(Q, n, users, exclude_seen=exclude_seen, allowed=allowed)
        ni, ns = self.topk_never(Q, n, allowed)
        return merge(pi, ps, ni, ns, n)

    def score(self, Q: Queries, items: np.ndarray) -> np.ndarray:
        """The blend's scores [b, c] float32 of ``items`` [b, c] (-inf where -1)."""
        safe = np.maximum(items, 0)
        F1 = self.V.shape[1]
        sp_ = np.einsum("bd,bcd->bc", Q.played.astype(np.float32), self.full[safe]) + Q.played_c[:, None]
        sn = np.einsum("bd,bcd->bc", Q.never.astype(np.float32), self.full[safe][:, :, :F1]) + Q.never_c[:, None]
        out = np.where(self.never[safe], sn, sp_)
        return np.where(items >= 0, out, NEG).astype(np.float32)


def merge(ai, av, bi, bv, n):
    """The ``n`` best of two lists per row (items disjoint)."""
    return pick(np.concatenate([ai, bi], axis=1), np.concatenate([av, bv], axis=1), n)
