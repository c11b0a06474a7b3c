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
distinct played tracks (repeats say little about new picks): independent draws from the whole
catalogue, or (given when each was first played) draws without replacement in that order, each
pick's softmax leaving out the tracks picked before. The latter is how a user's new tracks arise
(a heavy user who has already taken the popular tracks picks from the rest), and it learns item
biases closer to the true log popularity (on the demo: slope 0.69 against 0.60 at ``bias_l2=1``).

Fitting is alternating steps (one of each per EM round) on user blocks of ``block`` users, so
memory is ``block × n_items``: a Newton step on each taste, backtracked until the user's objective
falls (so it is safe whatever the features' scale), and an exact majorised step on the item biases
(never raises the objective). The exact per-user Hessian costs ``n_items × F²`` per user and is
replaced by one shared at the population's choice distribution (scaled by the user's count)
when ``n_users × n_items × F²`` exceeds ``exact_limit``; the line search keeps that cheaper
step safe where the shared curvature understates a user's.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
import scipy.linalg
import scipy.sparse as sp

from ..errors import ParameterError


def track_features(tracks) -> np.ndarray:
    """Content features [n_tracks, F] float64 of a :class:`~mir.recommend.trackset.TrackSet`:
    its ``features`` (predicted genre and tag probabilities) when present, else its embeddings."""
    feats = getattr(tracks, "features", None)
    return np.asarray(tracks.embeddings if feats is None else feats, np.float64)


def log_softmax_parts(S: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(P [b, N], logsumexp [b])`` of the rows of ``S`` (log-sum-exp: finite for any finite ``S``).
    ``P`` keeps ``S``'s dtype; the log-sum-exp is float64 (the row sums are accumulated in float64)."""
    m = S.max(axis=1, keepdims=True)
    P = np.exp(S - m)
    z = P.sum(axis=1, keepdims=True, dtype=np.float64)
    P /= z.astype(P.dtype)
    return P, (m + np.log(z))[:, 0]


class Tastes(NamedTuple):
    """A fitted taste model: tastes ``theta`` [U, F], prior mean ``mu`` [F] and precision ``prec``
    [F, F], item biases ``b`` [N], EM ``rounds`` run, ``objective`` per round (per play)."""
    theta: np.ndarray
    mu: np.ndarray
    b: np.ndarray
    prec: np.ndarray
    rounds: int
    objective: np.ndarray


def _evaluate(theta, PhiT32, b32):
    """Softmax at ``theta`` [b, F] over the scores ``theta @ Phi.T + b``, in float32 and unnormalised:
    ``(E [b, N] = exp(S - rowmax), z [b] = E's row sums (float64), lse [b] float64)``; ``P = E / z``."""
    S = theta.astype(np.float32) @ PhiT32
    if b32 is not None:
        S += b32
    m = S.max(axis=1, keepdims=True)
    S -= m
    np.exp(S, out=S)
    z = S.sum(axis=1).astype(np.float64)  # >= 1: the row's largest term is exp(0)
    return S, z, m[:, 0].astype(np.float64) + np.log(z)


def _objective(lse_sum, theta, picked_phi, picked_b, mu, prec) -> np.ndarray:
    """Per-user negative log posterior: ``lse_sum_u - sum_{t played} (theta_u·phi_t + b_t) + (theta_u - mu)' prec (theta_u - mu) / 2``
    (``lse_sum``: the picks' log normalisers, :func:`_normalisers`; the played scores exactly, from
    ``picked_phi = Y Phi`` and ``picked_b = Y b``)."""
    d = theta - mu
    return lse_sum - np.einsum("uf,uf->u", theta, picked_phi) - picked_b + 0.5 * np.einsum("uf,fg,ug->u", d, prec, d)


def _normalisers(E, z, lse, nb, seq):
    """``(lse_sum [b], scale [b], delta)`` of users' picks from the unnormalised softmax ``E`` [b, N] (rows
    summing to ``z``, log-sum-exp ``lse``): the sum of the picks' log normalisers, and the expected pick
    counts ``W[u, t] = sum_j P_j(t)`` (the gradient of ``lse_sum`` in the scores) kept implicit as
    ``W = scale[:, None] * E + delta`` (:func:`_expected_features`, :func:`_expected_counts`), so no
    ``[b, N]`` copy is made. ``seq`` None: ``nb`` independent picks from the whole catalogue (``n_u lse_u``,
    ``W = n_u P``, ``delta`` None). Else ``(rows, items)``: each row's picks in order (``rows`` ascending),
    drawn without replacement: pick ``j``'s normaliser leaves out the row's earlier picks,
    ``Z_j = (mass never picked) + sum_{i >= j} e_i`` (sums of positive terms); ``delta`` is a sparse
    ``[b, N]`` correction on the picked entries."""
    if seq is None:
        return nb * lse, nb / z, None
    rows, items = seq
    e = E[rows, items].astype(np.float64)
    E[rows, items] = 0.0
    rest = E.sum(axis=1, dtype=np.float64)  # mass of the tracks the user never picked
    E[rows, items] = e.astype(E.dtype)
    after = np.cumsum(e[::-1])[::-1]  # sum_{i >= j} over the whole array
    ends = np.searchsorted(rows, rows, side="right")  # first index after each pick's row
    tail = np.append(after, 0.0)[ends]
    Z = rest[rows] + after - tail
    w = 1.0 / Z
    cw = np.cumsum(w)
    starts = np.searchsorted(rows, rows, side="left")
    prefix = cw - np.append(0.0, cw)[starts]  # sum_{j <= i} 1 / Z_j within the row
    total = np.zeros(len(E))
    np.add.at(total, rows, w)
    lse_sum = (lse - np.log(z)) * nb
    np.add.at(lse_sum, rows, np.log(Z))
    delta = sp.csr_matrix((e * (prefix - total[rows]), (rows, items)), shape=E.shape)
    return lse_sum, total, delta


def _expected_features(EPhi, scale, delta, Phi32) -> np.ndarray:
    """``W Phi`` [b, F] float64 of :func:`_normalisers`' implicit ``W``, from ``EPhi = E @ Phi`` (float64)."""
    M = EPhi * scale[:, None]
    if delta is not None:
        M += delta @ Phi32
    return M


def _expected_counts(E, scale, delta, keep) -> np.ndarray:
    """Column sums [N] float64 of :func:`_normalisers`' implicit ``W`` over the rows ``keep`` (bool mask)."""
    out = (np.where(keep, scale, 0.0).astype(np.float32) @ E).astype(np.float64)
    if delta is not None:
        out += np.asarray(delta[np.flatnonzero(keep)].sum(axis=0)).ravel()
    return out


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
    """Users per block: at most ``block``, and at most ``budget`` scores per [users, items] array."""
    return max(1, min(block, int(budget // max(n_items, 1))))


def fit_tastes(Y, Phi: np.ndarray, **kwargs):
    """MAP tastes under a learned Gaussian prior: ``(theta [U, F], mu [F], b [N])``; see :func:`fit_taste_model`."""
    fit = fit_taste_model(Y, Phi, **kwargs)
    return fit.theta, fit.mu, fit.b


def fit_taste_model(Y, Phi: np.ndarray, *, item_bias: bool = True, iterations: int = 20, ridge: float = 1e-2,
                    bias_l2: float = 1.0, block: int = 512, exact_limit: float = 2e9, max_halvings: int = 30,
                    tol: float = 1e-4, init: Tastes | None = None, first_play=None) -> Tastes:
    """MAP tastes under a learned Gaussian prior (:class:`Tastes`).

    ``Y`` [U, N] (sparse or dense) > 0 where a user played a track; ``Phi`` [N, F] features;
    ``item_bias`` learns ``b`` (L2 ``bias_l2``), else ``b = 0`` (a purely content model);
    ``ridge`` is added to the prior covariance's diagonal (keeps it invertible, limits shrinkage).

    Each round: a Newton step on every user's taste (exact or shared curvature), backtracked per
    user (halved up to ``max_halvings`` times until the user's objective falls enough, Armijo) so
    it cannot diverge whatever the features' scale; then the item biases' exact majorised step;
    then the prior's EM update. Scores are computed in float32 and only ever exponentiated through
    log-sum-exp (float64 sums); the played tracks' scores enter the objective exactly.

    Stopping: at most ``iterations`` rounds; earlier once a round moves the tastes and biases by
    less than ``tol`` of their norm (``||(theta, b)_k - (theta, b)_k-1|| <= tol ||(theta, b)_k||``;
    ``tol=0``: always ``iterations``). ``objective``: the mean negative log posterior per play after each round's
    taste step (under that round's prior; it need not fall as the prior tightens). A user whose Newton decrement is
    below the float32 noise of their objective keeps their taste for that round (nothing to gain).
    ``init``: a previous fit on the same users and tracks (e.g. on a subset of the events) to
    start from (a warm start: fewer rounds to the same optimum). ``first_play`` [U, N] (sparse or
    dense, the pattern of ``Y``): when each user first played each track (any increasing key, e.g.
    timestamps); given, a user's tracks are picks *without replacement* in that order (each pick's
    softmax leaves out the tracks picked before: a heavy user who has taken the popular tracks
    says so through the rest), else independent picks from the whole catalogue. Runs with one BLAS thread: the
    products are skinny (``F`` columns), where BLAS threads cost more than they give.
    """
    with one_blas_thread():
        return _fit_taste_model(Y, Phi, item_bias=item_bias, iterations=iterations, ridge=ridge, bias_l2=bias_l2,
                                block=block, exact_limit=exact_limit, max_halvings=max_halvings, tol=tol, init=init,
                                first_play=first_play)


def _pick_order(first_play, Y):
    """``(indptr, items)``: each user's tracks of ``Y`` (CSR, sorted indices) in ``first_play`` order."""
    F = sp.csr_matrix(first_play, dtype=np.float64)
    F.sort_indices()
    if F.shape != Y.shape or F.nnz != Y.nnz or not (np.array_equal(F.indptr, Y.indptr)
                                                    and np.array_equal(F.indices, Y.indices)):
        raise ParameterError(f"first_play must have the shape {Y.shape} and the nonzero pattern of the plays "
                             f"(one time per played track), got shape {F.shape} with {F.nnz} entries")
    rows = np.repeat(np.arange(Y.shape[0]), np.diff(Y.indptr))
    order = np.lexsort((F.indices, F.data, rows))
    return Y.indptr, F.indices[order]


def _picks(order, users):
    """``(rows, items)`` of :func:`_normalisers` for ``users`` (global indices), or None (independent picks)."""
    if order is None:
        return None
    indptr, items = order
    counts = indptr[users + 1] - indptr[users]
    rows = np.repeat(np.arange(len(users)), counts)
    idx = np.repeat(indptr[users] - np.cumsum(counts) + counts, counts) + np.arange(counts.sum())
    return rows, items[idx]


class _Problem(NamedTuple):
    """The fixed inputs of a taste fit (:func:`_problem`)."""
    Y: sp.csr_matrix  # [U, N] 1 where a user played a track (sorted indices)
    order: tuple | None  # (indptr, items): each user's picks in first-play order (:func:`_pick_order`), or None
    Phi: np.ndarray  # [N, F] float64 features
    Phi32: np.ndarray  # the same in float32
    PhiT32: np.ndarray  # [F, N] float32, contiguous
    n: np.ndarray  # [U] distinct tracks per user
    item_counts: np.ndarray  # [N] users per track
    YPhi: np.ndarray  # [U, F] sum of each user's played tracks' features


def _check_settings(iterations, ridge, bias_l2, block, max_halvings, tol) -> None:
    if iterations < 1 or not ridge > 0 or not bias_l2 > 0 or block < 1 or max_halvings < 0 or not tol >= 0:
        raise ParameterError(f"iterations and block must be >= 1, ridge and bias_l2 > 0, max_halvings and tol >= 0; got "
                             f"{iterations}, {block}, {ridge}, {bias_l2}, {max_halvings}, {tol}")


def _problem(Y, Phi, first_play) -> _Problem:
    """Stage 1: the plays as a binary CSR matrix, the pick order, the features in both precisions."""
    Y = sp.csr_matrix(Y, dtype=np.float64)
    Y.data[:] = 1.0
    Y.eliminate_zeros()
    Y.sort_indices()
    N = Y.shape[1]
    order = None if first_play is None else _pick_order(first_play, Y)
    Phi = np.asarray(Phi, np.float64)
    if Phi.ndim != 2 or len(Phi) != N or not np.isfinite(Phi).all():
        raise ParameterError(f"features must be a finite [{N}, F] array (one row per track), got shape {Phi.shape}")
    Phi32 = Phi.astype(np.float32)
    return _Problem(Y, order, Phi, Phi32, np.ascontiguousarray(Phi32.T), np.asarray(Y.sum(axis=1)).ravel(),
                    np.asarray(Y.sum(axis=0)).ravel(), np.asarray(Y @ Phi))


def _start(init: Tastes | None, U: int, N: int, F: int, item_bias: bool):
    """Stage 2: ``(theta, mu, b, prec)`` to start from: zero tastes under the prior N(0, I), or ``init``."""
    if init is None:
        return np.zeros((U, F)), np.zeros(F), np.zeros(N), np.eye(F)
    if init.theta.shape != (U, F) or init.b.shape != (N,):
        raise ParameterError(f"init must be a fit on the same {U} users, {N} tracks and {F} features; got tastes "
                             f"{init.theta.shape} and {init.b.shape[0]} biases")
    theta, mu, prec = np.array(init.theta, np.float64), np.array(init.mu, np.float64), np.array(init.prec, np.float64)
    return theta, mu, np.array(init.b, np.float64) if item_bias else np.zeros(N), prec


def _shared_curvature(Phi, mu, b, prec):
    """The choice curvature at the population's taste ``mu``, as ``(lam, V)`` with ``V' prec V = I`` and
    ``V' A V = diag(lam)`` (``A = sum_t p_t phi_t phi_t' - m m'``): a user's Hessian is taken as ``n_u A``."""
    p0, _ = log_softmax_parts((mu @ Phi.T + b)[None, :])
    m0 = p0[0] @ Phi
    shared = (Phi * p0[0][:, None]).T @ Phi - np.outer(m0, m0)
    lam, V = scipy.linalg.eigh(shared, prec)
    return np.maximum(lam, 0.0), V


def _softmax_state(theta, data: _Problem, b32, nb, seq, exact: bool, outer):
    """Users' choice model at tastes ``theta`` [b, F]: ``(lse_sum, M, H, (E, scale, delta))``: the picks' log
    normalisers, the expected picks' features ``M = W Phi``, the exact per-user curvature ``H`` [b, F, F]
    (``sum_t p_t phi_t phi_t' - m m'``; None unless ``exact``) and :func:`_normalisers`' implicit ``W``."""
    E, z, lse = _evaluate(theta, data.PhiT32, b32)
    lse, scale, delta = _normalisers(E, z, lse, nb, seq)
    EPhi = (E @ data.Phi32).astype(np.float64)
    M = _expected_features(EPhi, scale, delta, data.Phi32)
    H = None
    if exact:
        F = data.Phi.shape[1]
        P64 = E.astype(np.float64) / z[:, None]
        second = (P64 @ outer).reshape(-1, F, F) if outer is not None else \
            np.einsum("un,nf,ng->ufg", P64, data.Phi, data.Phi)
        m1 = EPhi / z[:, None]
        H = second - m1[:, :, None] * m1[:, None, :]
    return lse, M, H, (E, scale, delta)


def _newton_step(grad, nb, prec, H=None, shared=None):
    """``(step [b, F], sum of the users' posterior covariances [F, F])``: ``(n_u H_u + prec)^-1 grad_u`` with
    the exact curvature ``H``, else with the shared one (``(lam, V)`` of :func:`_shared_curvature`)."""
    if H is not None:
        Hinv = np.linalg.inv(nb[:, None, None] * H + prec)
        return np.einsum("ufg,ug->uf", Hinv, grad), Hinv.sum(axis=0)
    lam, V = shared  # (n_u A + prec)^-1 = V diag(1 / (n_u lam + 1)) V'
    d = 1.0 / (nb[:, None] * lam + 1.0)
    return ((grad @ V) * d) @ V.T, (V * d.sum(axis=0)) @ V.T


class _Block(NamedTuple):
    """One block of users in a round: rows ``lo:hi``, their play counts, picked features and biases, picks."""
    lo: int
    hi: int
    nb: np.ndarray
    picked_phi: np.ndarray
    picked_b: np.ndarray
    seq: tuple | None


def _line_search(data: _Problem, blk: _Block, th, step, slope, at0, mu, prec, b32, noise, max_halvings, expected):
    """Backtracking (Armijo) along ``-step`` from tastes ``th`` whose ``(lse_sum, M, objective)`` are ``at0``:
    a user's step is halved up to ``max_halvings`` times until their objective falls enough; users whose
    decrease would be below ``noise`` keep their taste. Returns ``(theta, lse_sum, M, objective, stay)``
    (``stay``: users left at their old taste); with ``expected`` [N], adds the accepted tastes' expected
    pick counts to it in place (for the bias step)."""
    new, lse1, M1, f1 = th.copy(), at0[0].copy(), at0[1].copy(), at0[2].copy()
    f0 = at0[2]
    act = np.flatnonzero(-slope > noise)  # the others are at their optimum to rounding
    alpha = np.ones(len(act))
    stay = np.ones(len(th), bool)
    for _h in range(max_halvings + 1):
        if not len(act):
            break
        trial = th[act] - alpha[:, None] * step[act]
        E, z, lse_t = _evaluate(trial, data.PhiT32, b32)
        lse_t, scale, delta = _normalisers(E, z, lse_t, blk.nb[act], _picks(data.order, blk.lo + act))
        f_t = _objective(lse_t, trial, blk.picked_phi[act], blk.picked_b[act], mu, prec)
        ok = f_t <= f0[act] + 1e-4 * alpha * slope[act]
        good = act[ok]
        new[good], lse1[good], f1[good] = trial[ok], lse_t[ok], f_t[ok]
        M1[good] = _expected_features((E @ data.Phi32).astype(np.float64), scale, delta, data.Phi32)[ok]
        stay[good] = False
        if expected is not None:  # the bias step sees the new tastes (Gauss-Seidel)
            expected += _expected_counts(E, scale, delta, ok)
        act, alpha = act[~ok], 0.5 * alpha[~ok]
    return new, lse1, M1, f1, stay


def _prior_update(theta, post_cov, ridge):
    """EM update of the tastes' Gaussian prior: ``(mu, prec)`` from the tastes and their posterior covariances."""
    U, F = theta.shape
    mu = theta.mean(axis=0)
    D = theta - mu
    cov = (D.T @ D + post_cov) / max(U, 1) + ridge * np.eye(F)
    return mu, np.linalg.inv(cov)


def _converged(theta, before, b, delta, tol) -> bool:
    """Whether a round moved the tastes and biases by at most ``tol`` of their norm."""
    moved = np.sum((theta - before) ** 2) + np.sum(delta ** 2)
    return moved <= tol ** 2 * (np.sum(theta ** 2) + np.sum(b ** 2))


def _fit_taste_model(Y, Phi, *, item_bias, iterations, ridge, bias_l2, block, exact_limit, max_halvings, tol, init,
                     first_play=None):
    """:func:`fit_taste_model`'s rounds: per block of users a Newton step on each taste with a line search;
    then the item biases' majorised step; then the prior's EM update."""
    _check_settings(iterations, ridge, bias_l2, block, max_halvings, tol)
    data = _problem(Y, Phi, first_play)
    (U, N), F = data.Y.shape, data.Phi.shape[1]
    theta, mu, b, prec = _start(init, U, N, F, item_bias)
    exact = float(U) * N * F * F <= exact_limit
    # the exact curvature as one product with the features' outer products [N, F*F] (when small)
    outer = (data.Phi[:, :, None] * data.Phi[:, None, :]).reshape(N, F * F) if exact and N * F * F <= 2e7 else None
    step_rows = _block_rows(block, N)
    # softmax state at the accepted tastes (reused next round while b is unchanged: no item bias)
    lse_c, M_c, cached = np.zeros(U), np.zeros((U, F)), False
    noise = 1e-6 * (data.n + 1.0)  # float32 rounding of a user's objective, roughly
    history = []
    for _ in range(iterations):
        before = theta.copy()
        post_cov = np.zeros((F, F))
        expected = np.zeros(N) if item_bias else None  # sum_u n_u p_ut at the new tastes
        total = 0.0
        b32 = b.astype(np.float32) if item_bias else None
        picked_b = data.Y @ b
        shared = None if exact else _shared_curvature(data.Phi, mu, b, prec)
        for lo in range(0, U, step_rows):
            hi = min(U, lo + step_rows)
            blk = _Block(lo, hi, data.n[lo:hi], data.YPhi[lo:hi], picked_b[lo:hi], _picks(data.order, np.arange(lo, hi)))
            th = theta[lo:hi]
            if cached and not exact:
                lse0, M0, H, soft0 = lse_c[lo:hi], M_c[lo:hi], None, None
            else:
                lse0, M0, H, soft0 = _softmax_state(th, data, b32, blk.nb, blk.seq, exact, outer)
            f0 = _objective(lse0, th, blk.picked_phi, blk.picked_b, mu, prec)
            grad = -blk.picked_phi + M0 + (th - mu) @ prec
            step, cov = _newton_step(grad, blk.nb, prec, H, shared)
            post_cov += cov
            slope = -np.einsum("uf,uf->u", grad, step)  # directional derivative (< 0: a descent direction)
            new, lse1, M1, f1, stay = _line_search(data, blk, th, step, slope, (lse0, M0, f0), mu, prec, b32,
                                                   noise[lo:hi], max_halvings, expected)
            theta[lo:hi] = new
            lse_c[lo:hi], M_c[lo:hi] = lse1, M1
            total += float(f1.sum())
            if item_bias:  # users left at their old taste count at it
                expected += _expected_counts(*soft0, stay)
        cached = not item_bias
        history.append(total / max(data.n.sum(), 1.0))
        mu, prec = _prior_update(theta, post_cov, ridge)
        delta = _bias_step(b, expected, data.item_counts, bias_l2) if item_bias else np.zeros(N)
        b += delta
        if _converged(theta, before, b, delta, tol):
            break
    return Tastes(theta, mu, b, prec, len(history), np.array(history))


def scores(theta: np.ndarray, Phi: np.ndarray, b: np.ndarray | None = None) -> np.ndarray:
    """Log-odds ``theta @ Phi.T (+ b)`` [len(theta), N] float32 (computed in float32)."""
    out = np.asarray(theta, np.float32) @ np.asarray(Phi, np.float32).T
    if b is not None:
        out += np.asarray(b, np.float32)
    return out


def one_blas_thread():
    """Context: BLAS on one thread (the products here are skinny; BLAS threads cost more than they give)."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(1, "blas")
