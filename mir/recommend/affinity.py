"""Taste models over track features: "popularity × personal affinity", fitted per user.

A user's next new track is modelled as a multinomial (softmax) choice over the catalogue::

    P(t | u) ∝ exp(b_t + theta_u · phi_t)

``phi_t`` [F] are the track's content features (:func:`track_features`: the tagger's predicted
genre probabilities and normalised tag probabilities, or the audio embedding when a catalogue
has no predictions), ``theta_u`` [F] the user's taste, ``b_t`` an optional item bias (how
popular the track is beyond its features; learned from every user's plays, so a model with it
is collaborative). Each user's taste has a shared Gaussian prior ``N(mu, Sigma)`` whose mean and
covariance are learned from all users by EM (Laplace approximation): a user with 2 plays stays
close to the population's taste, one with 200 plays gets their own. The data are the user's
distinct played tracks (repeats say little about new picks).

Fitting is alternating steps (one of each per EM round) on user blocks of ``block`` users, so
memory is ``block × n_items``: a Newton step on each taste, backtracked until the user's objective
falls (so it is safe whatever the features' scale), and an exact majorised step on the item biases
(never raises the objective). The exact per-user Hessian costs ``n_items × F²`` per user and is
replaced by one shared at the population's choice distribution (scaled by the user's count)
when ``n_users × n_items × F²`` exceeds ``exact_limit``; the line search keeps that cheaper
step safe where the shared curvature understates a user's.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from ..errors import ParameterError


def track_features(tracks) -> np.ndarray:
    """Content features [n_tracks, F] float64 of a :class:`~mir.recommend.catalogue.TrackSet`:
    its ``features`` (predicted genre and tag probabilities) when present, else its embeddings."""
    feats = getattr(tracks, "features", None)
    return np.asarray(tracks.embeddings if feats is None else feats, np.float64)


def log_softmax_parts(S: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(P [b, N], logsumexp [b])`` of the rows of ``S`` (log-sum-exp: finite for any finite ``S``)."""
    m = S.max(axis=1, keepdims=True)
    P = np.exp(S - m)
    z = P.sum(axis=1, keepdims=True)
    P /= z
    return P, (m + np.log(z))[:, 0]


def _objective(S, lse, rows, cols, nb, theta, mu, prec) -> np.ndarray:
    """Per-user negative log posterior: ``n_u lse_u - sum_{t played} S_ut + (theta_u - mu)' prec (theta_u - mu) / 2``."""
    picked = np.bincount(rows, weights=S[rows, cols], minlength=len(S))
    d = theta - mu
    return nb * lse - picked + 0.5 * np.einsum("uf,fg,ug->u", d, prec, d)


def _bias_step(b, expected, counts, l2, span: float = 10.0, steps: int = 50) -> np.ndarray:
    """The item-bias change ``delta`` [N] minimising the separable majoriser of the choice likelihood
    (``log Z <= log Z0 + Z / Z0 - 1``): ``expected·(e^delta - 1) - counts·delta + l2 (b + delta)^2 / 2``,
    by bisection on its increasing derivative, clipped to ``[-span, span]``. The objective never rises."""
    lo, hi = np.full_like(b, -span), np.full_like(b, span)
    for _ in range(steps):
        mid = 0.5 * (lo + hi)
        up = expected * np.exp(mid) - counts + l2 * (b + mid) > 0
        hi = np.where(up, mid, hi)
        lo = np.where(up, lo, mid)
    return 0.5 * (lo + hi)


def _block_rows(block: int, n_items: int, budget: float = 2e7) -> int:
    """Users per block: at most ``block``, and at most ``budget`` float64 scores per [users, items] array."""
    return max(1, min(block, int(budget // max(n_items, 1))))


def fit_tastes(Y, Phi: np.ndarray, *, item_bias: bool = True, iterations: int = 20, ridge: float = 1e-2,
               bias_l2: float = 1.0, block: int = 512, exact_limit: float = 2e9, max_halvings: int = 30):
    """MAP tastes under a learned Gaussian prior: ``(theta [U, F], mu [F], b [N])``.

    ``Y`` [U, N] (sparse or dense) > 0 where a user played a track; ``Phi`` [N, F] features;
    ``item_bias`` learns ``b`` (L2 ``bias_l2``), else ``b = 0`` (a purely content model);
    ``ridge`` is added to the prior covariance's diagonal (keeps it invertible, limits shrinkage).

    Each round: a Newton step on every user's taste (exact or shared curvature), backtracked per
    user (halved up to ``max_halvings`` times until the user's objective falls enough, Armijo) so
    it cannot diverge whatever the features' scale; then the item biases' exact majorised step;
    then the prior's EM update. Scores are only ever exponentiated through log-sum-exp.
    """
    if iterations < 1 or not ridge > 0 or not bias_l2 > 0 or block < 1 or max_halvings < 0:
        raise ParameterError(f"iterations and block must be >= 1, ridge and bias_l2 > 0, max_halvings >= 0; got "
                             f"{iterations}, {block}, {ridge}, {bias_l2}, {max_halvings}")
    Y = sp.csr_matrix(Y, dtype=np.float64)
    Y.data[:] = 1.0
    Y.eliminate_zeros()
    Y.sort_indices()
    U, N = Y.shape
    Phi = np.asarray(Phi, np.float64)
    if Phi.ndim != 2 or len(Phi) != N or not np.isfinite(Phi).all():
        raise ParameterError(f"features must be a finite [{N}, F] array (one row per track), got shape {Phi.shape}")
    F = Phi.shape[1]
    n = np.asarray(Y.sum(axis=1)).ravel()
    item_counts = np.asarray(Y.sum(axis=0)).ravel()
    theta, mu, b = np.zeros((U, F)), np.zeros(F), np.zeros(N)
    prec = np.eye(F)  # prior precision: starts at N(0, I)
    exact = float(U) * N * F * F <= exact_limit
    step_rows = _block_rows(block, N)
    for _ in range(iterations):
        post_cov = np.zeros((F, F))
        expected = np.zeros(N)  # sum_u n_u p_ut at the new tastes
        shared = None
        if not exact:  # curvature at the population's choice distribution (under mu)
            p0, _ = log_softmax_parts((mu @ Phi.T + b)[None, :])
            m0 = p0[0] @ Phi
            shared = (Phi * p0[0][:, None]).T @ Phi - np.outer(m0, m0)
        for lo in range(0, U, step_rows):
            hi = min(U, lo + step_rows)
            Yb = Y[lo:hi]
            rows = np.repeat(np.arange(hi - lo), np.diff(Yb.indptr))
            cols = Yb.indices
            nb = n[lo:hi]
            th = theta[lo:hi]
            S = th @ Phi.T + b
            P, lse = log_softmax_parts(S)
            f0 = _objective(S, lse, rows, cols, nb, th, mu, prec)
            grad = -(Yb @ Phi) + nb[:, None] * (P @ Phi) + (th - mu) @ prec
            if exact:
                M = P @ Phi
                H = np.einsum("un,nf,ng->ufg", P, Phi, Phi) - M[:, :, None] * M[:, None, :]
            else:
                H = np.broadcast_to(shared, (hi - lo, F, F))
            H = nb[:, None, None] * H + prec
            step = np.linalg.solve(H, grad[:, :, None])[:, :, 0]
            slope = -np.einsum("uf,uf->u", grad, step)  # directional derivative (< 0: a descent direction)
            alpha = np.ones(hi - lo)
            new = th - step
            S = new @ Phi.T + b
            P, lse = log_softmax_parts(S)
            f1 = _objective(S, lse, rows, cols, nb, new, mu, prec)
            bad = ~(f1 <= f0 + 1e-4 * alpha * slope)
            for _h in range(max_halvings):
                if not bad.any():
                    break
                r = np.flatnonzero(bad)
                alpha[r] *= 0.5
                new[r] = th[r] - alpha[r, None] * step[r]
                sel = np.isin(rows, r)
                rr = np.searchsorted(r, rows[sel])  # rows of the sub-block
                Sr = new[r] @ Phi.T + b
                Pr, lser = log_softmax_parts(Sr)
                f1[r] = _objective(Sr, lser, rr, cols[sel], nb[r], new[r], mu, prec)
                S[r], P[r] = Sr, Pr
                bad[r] = ~(f1[r] <= f0[r] + 1e-4 * alpha[r] * slope[r])
            if bad.any():  # no acceptable step (already at the optimum to rounding): keep the old taste
                r = np.flatnonzero(bad)
                new[r] = th[r]
                P[r], _ = log_softmax_parts(th[r] @ Phi.T + b)
            theta[lo:hi] = new
            post_cov += np.linalg.inv(H).sum(axis=0)
            if item_bias:  # the bias step sees the new tastes (Gauss-Seidel)
                expected += nb @ P
        mu = theta.mean(axis=0)
        D = theta - mu
        cov = (D.T @ D + post_cov) / max(U, 1) + ridge * np.eye(F)
        prec = np.linalg.inv(cov)
        if item_bias:
            b += _bias_step(b, expected, item_counts, bias_l2)
    return theta, mu, b


def scores(theta: np.ndarray, Phi: np.ndarray, b: np.ndarray | None = None) -> np.ndarray:
    """Log-odds ``theta @ Phi.T (+ b)`` [len(theta), N] float32."""
    out = np.asarray(theta, np.float64) @ np.asarray(Phi, np.float64).T
    if b is not None:
        out += b
    return out.astype(np.float32)


def zscore_dense(S: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """Standardise each row of ``S`` [b, N] over the columns ``valid`` [N] (all when None)."""
    ref = S if valid is None else S[:, valid]
    mean = ref.mean(axis=1, keepdims=True)
    std = ref.std(axis=1, keepdims=True)
    return (S - mean) / np.where(std > 1e-12, std, 1.0)


def mask_unwanted(S: np.ndarray, seen, u: np.ndarray, allowed: np.ndarray | None, exclude_seen: bool) -> np.ndarray:
    """-inf where user ``u[r]`` played the item (``exclude_seen``) or the item is not ``allowed``."""
    from ._base import played

    if exclude_seen:
        rows, cols = played(seen, u)
        S[rows, cols] = -np.inf
    if allowed is not None:
        S[:, ~np.asarray(allowed, bool)] = -np.inf
    return S
