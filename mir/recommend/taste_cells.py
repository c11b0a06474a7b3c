"""The taste fit of :mod:`mir.recommend.affinity` at catalogue scale: normalisers summed over cells of tracks.

The model is the exact fit's (:func:`~mir.recommend.affinity.fit_taste_model`): a user's picks are
softmax choices ``P(t | u) ∝ exp(b_t + theta_u · phi_t)`` (independent, or without replacement in
first-play order), tastes under a Gaussian prior learned by EM, item biases with L2. Its cost is the
normaliser: every user against every track, ``U × N × F`` per evaluation.

Here the tracks are grouped once into ``K`` cells of similar features (k-means). In a user's
normaliser, a track the user did not pick enters with its own bias and its cell's features,
``exp(b_t + theta · c_k + theta² · v_k / 2)`` (``c_k`` the cell's mean features, ``v_k`` their
per-feature variance: the second-order term of ``theta · phi`` over the cell, diagonal); the user's
own picks enter exactly. So a normaliser is ``sum_k B_k exp(theta · c_k + theta² · v_k / 2)`` with
``B_k = sum_{t in k} exp(b_t)`` computed once per round, plus a correction on the user's picks:
``K × F`` per user instead of ``N × F``. With one track per cell (``K = N``) it is the exact
objective. Every term stays ``exp(b_t) × (positive)``, so the item biases' majorised step and the
per-user backtracking of the exact fit carry over unchanged: the surrogate objective never rises
in a bias step and each taste step is accepted only where it falls.

Per-user work is in blocks (pure functions of the block and the round's shared state), run in this
thread, on a thread pool (``threads``: NumPy releases the GIL in the products and exponentials), or
as tasks on a Dask cluster (``scheduler``).
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

import numpy as np
import scipy.linalg

from ..errors import ParameterError
from .affinity import (Tastes, _bias_step, _check_settings, _converged, _prior_update, _problem,  # the exact fit's stages
                       _start, one_blas_thread)


def auto_cells(n_items: int) -> int:
    """Cells for ``n_items`` tracks: all of them up to 2,000 (exact), then ``250 + 0.8 sqrt(n)`` (100,000
    tracks: 502; 400,000: 755; 10 M: 2,779)."""
    return n_items if n_items <= 2000 else int(250 + 0.8 * np.sqrt(n_items))


class Cells(NamedTuple):
    """Tracks grouped by features: ``assign`` [N] cell of each track, ``centre`` [K, F] mean features,
    ``spread`` [K, F] per-feature variance within the cell (0 for one-track cells)."""
    assign: np.ndarray
    centre: np.ndarray
    spread: np.ndarray


def make_cells(Phi: np.ndarray, n_cells: int, *, seed: int = 0) -> Cells:
    """k-means cells of the features ``Phi`` [N, F] (FAISS, ``seed``); ``n_cells >= N``: one track per cell."""
    Phi = np.asarray(Phi, np.float64)
    N, F = Phi.shape
    if n_cells >= N:
        return Cells(np.arange(N), Phi.copy(), np.zeros_like(Phi))
    import faiss

    X = np.ascontiguousarray(Phi, np.float32)
    km = faiss.Kmeans(F, int(n_cells), niter=20, seed=seed, verbose=False, min_points_per_centroid=1,
                      max_points_per_centroid=64)
    km.train(X)
    _, a = km.index.search(X, 1)
    used, assign = np.unique(a[:, 0], return_inverse=True)  # empty cells dropped
    K = len(used)
    count = np.bincount(assign, minlength=K).astype(np.float64)
    centre = np.stack([np.bincount(assign, Phi[:, f], K) for f in range(F)], axis=1) / count[:, None]
    second = np.stack([np.bincount(assign, Phi[:, f] ** 2, K) for f in range(F)], axis=1) / count[:, None]
    return Cells(assign, centre, np.maximum(second - centre ** 2, 0.0))


class _Round(NamedTuple):
    """What every block needs in one round (sent once per round to each worker)."""
    Phi: np.ndarray       # [N, F] float64
    Phi32: np.ndarray     # [N, F] float32
    b: np.ndarray         # [N] item biases
    cells: Cells
    logB: np.ndarray      # [K] log sum_{t in k} exp(b_t)
    cell_rows: np.ndarray  # [2F, K] float32: the cells' centres over half their spreads (scores of [theta, theta²])
    cell_cols: np.ndarray  # [K, 2F] float32: centres beside spreads (expected features)
    cell_cols64: np.ndarray
    mu: np.ndarray
    prec: np.ndarray
    curvature: tuple      # ("exact", outer [K, F*F]) or ("shared", lam [F], V [F, F])
    sequential: bool
    max_halvings: int


class _Block(NamedTuple):
    """One block of users: tastes [b, F], plays ``n`` [b], ``YPhi`` [b, F], played biases [b], noise [b],
    and their picks ``rows`` (ascending, block positions) / ``items`` in pick order."""
    theta: np.ndarray
    n: np.ndarray
    YPhi: np.ndarray
    picked_b: np.ndarray
    noise: np.ndarray
    rows: np.ndarray
    items: np.ndarray


class _Eval(NamedTuple):
    lse_sum: np.ndarray   # [b] sum of the picks' log normalisers
    M: np.ndarray         # [b, F] expected features of the picks (gradient of lse_sum)
    A: np.ndarray         # [b, K] float32 users' cell masses, summing to ``full`` (for the curvature)
    full: np.ndarray
    cell_mass: np.ndarray  # [K] sum over users of the expected pick counts per cell (all tracks as surrogate)
    pick_w: np.ndarray    # [picks] expected count on each picked entry minus its surrogate share


def _evaluate(th: np.ndarray, rows: np.ndarray, items: np.ndarray, st: _Round, grad: bool = True) -> _Eval:
    """The surrogate normalisers of users with tastes ``th`` [b, F] and picks (``rows``, ``items``);
    ``grad`` False: only ``lse_sum`` (the other fields None)."""
    import scipy.sparse as sp

    c = st.cells
    k = c.assign[items]
    b_n, F = th.shape
    th32 = th.astype(np.float32)
    # [b, K] log cell masses and the picks' exact scores, in float32 as the exact fit's scores
    C = np.hstack([th32, th32 * th32]) @ st.cell_rows + st.logB.astype(np.float32)
    h_pick = C[rows, k].astype(np.float64) + st.b[items] - st.logB[k]  # each pick as its cell sees it
    s_pick = st.b[items] + np.einsum("if,if->i", th32[rows], st.Phi32[items]).astype(np.float64)
    m = C.max(axis=1).astype(np.float64)
    np.maximum.at(m, rows, s_pick)
    C -= m[:, None].astype(np.float32)
    A = np.exp(C, out=C)
    full = A.sum(axis=1, dtype=np.float64)
    e, h = np.exp(s_pick - m[rows]), np.exp(h_pick - m[rows])
    rest = np.maximum(full - np.bincount(rows, h, b_n), 0.0)  # the never-picked tracks' surrogate mass
    if st.sequential:  # pick j's normaliser: the rest plus the picks from j on (within the row)
        after = np.cumsum(e[::-1])[::-1]
        ends = np.searchsorted(rows, rows, side="right")
        Z = rest[rows] + after - np.append(after, 0.0)[ends]
    else:
        Z = (rest + np.bincount(rows, e, b_n))[rows]
    n = np.bincount(rows, minlength=b_n)
    lse_sum = np.bincount(rows, np.log(Z), b_n) + n * m
    if not grad:
        return _Eval(lse_sum, None, None, None, None, None)
    w = 1.0 / Z
    total = np.bincount(rows, w, b_n)
    if st.sequential:
        cw = np.cumsum(w)
        starts = np.searchsorted(rows, rows, side="left")
        prefix = cw - np.append(0.0, cw)[starts]
    else:
        prefix = total[rows]
    R = A * total[:, None].astype(np.float32)  # expected picks per cell, every track as its cell sees it
    ht = total[rows] * h  # the picks' share of that, replaced by their exact expected count
    pe = prefix * e  # the picks' exact expected counts
    indptr = np.concatenate([[0], np.cumsum(n)])
    exact = sp.csr_matrix((pe, items, indptr), shape=(b_n, len(st.b))) @ st.Phi
    cellwise = (R @ st.cell_cols).astype(np.float64) - sp.csr_matrix((ht, k, indptr), shape=(b_n, len(st.logB))) @ st.cell_cols64
    M = exact + cellwise[:, :F] + cellwise[:, F:] * th
    return _Eval(lse_sum, M, A, full, R.sum(axis=0, dtype=np.float64), pe - ht)


def _objective(lse_sum, th, blk: _Block, mu, prec) -> np.ndarray:
    d = th - mu
    return lse_sum - np.einsum("uf,uf->u", th, blk.YPhi) - blk.picked_b + 0.5 * np.einsum("uf,fg,ug->u", d, prec, d)


def _sub(blk: _Block, act: np.ndarray):
    """Picks (rows renumbered 0..len(act)-1, items) of the block's users ``act`` (ascending)."""
    keep = np.isin(blk.rows, act)
    return np.searchsorted(act, blk.rows[keep]), blk.items[keep]


class _Result(NamedTuple):
    theta: np.ndarray
    post_cov: np.ndarray  # [F, F] sum of the block's posterior covariances
    objective: float
    cell_mass: np.ndarray  # [K] at the new tastes
    pick_w: np.ndarray     # [picks] at the new tastes


def block_round(blk: _Block, st: _Round) -> _Result:
    """One round for one block of users: a backtracked Newton step on each taste (the exact fit's rule),
    then the expected pick counts at the new tastes for the item-bias step. Pure (a Dask task)."""
    with one_blas_thread():
        return _block_round(blk, st)


def _block_round(blk: _Block, st: _Round) -> _Result:
    th, nb = blk.theta, blk.n
    F = th.shape[1]
    ev = _evaluate(th, blk.rows, blk.items, st)
    f0 = _objective(ev.lse_sum, th, blk, st.mu, st.prec)
    grad = -blk.YPhi + ev.M + (th - st.mu) @ st.prec
    if st.curvature[0] == "exact":  # n_u Cov_cells(phi) + prec, the cells' spread on the diagonal
        outer = st.curvature[1]
        P = ev.A.astype(np.float64) / ev.full[:, None]
        m1 = P @ st.cells.centre
        H = (P @ outer).reshape(-1, F, F) - m1[:, :, None] * m1[:, None, :]
        H[:, np.arange(F), np.arange(F)] += P @ st.cells.spread
        Hinv = np.linalg.inv(nb[:, None, None] * H + st.prec)
        step = np.einsum("ufg,ug->uf", Hinv, grad)
        post_cov = Hinv.sum(axis=0)
    else:
        _, lam, V = st.curvature
        d = 1.0 / (nb[:, None] * lam + 1.0)
        step = ((grad @ V) * d) @ V.T
        post_cov = (V * d.sum(axis=0)) @ V.T
    slope = -np.einsum("uf,uf->u", grad, step)
    new, f1 = th.copy(), f0.copy()
    act = np.flatnonzero(-slope > blk.noise)
    alpha = np.ones(len(act))
    for _ in range(st.max_halvings + 1):
        if not len(act):
            break
        trial = th[act] - alpha[:, None] * step[act]
        rows, items = _sub(blk, act)
        lse = _evaluate(trial, rows, items, st, grad=False).lse_sum
        sub = _Block(trial, nb[act], blk.YPhi[act], blk.picked_b[act], blk.noise[act], rows, items)
        f_t = _objective(lse, trial, sub, st.mu, st.prec)
        ok = f_t <= f0[act] + 1e-4 * alpha * slope[act]
        new[act[ok]], f1[act[ok]] = trial[ok], f_t[ok]
        act, alpha = act[~ok], 0.5 * alpha[~ok]
    end = _evaluate(new, blk.rows, blk.items, st)
    return _Result(new, post_cov, float(f1.sum()), end.cell_mass, end.pick_w)


def _run_blocks(blocks, st, threads: int, scheduler: str | None):
    if scheduler:
        from ..parallel import dask_map

        out = [None] * len(blocks)
        for i, r in dask_map(scheduler, block_round, blocks, st, scatter=True):
            out[i] = r
        return out
    if threads > 1 and len(blocks) > 1:  # BLAS is on one thread for the whole fit (a process-wide setting)
        with ThreadPoolExecutor(threads) as pool:
            return list(pool.map(lambda blk: _block_round(blk, st), blocks))
    return [_block_round(blk, st) for blk in blocks]


def _logsumexp_by(assign, x, K):
    top = np.full(K, -np.inf)
    np.maximum.at(top, assign, x)
    return top + np.log(np.bincount(assign, np.exp(x - top[assign]), K))


def fit_taste_cells(Y, Phi: np.ndarray, *, item_bias: bool = True, iterations: int = 20, ridge: float = 1e-2,
                    bias_l2: float = 1.0, block: int = 2048, exact_limit: float = 2e9, max_halvings: int = 30,
                    tol: float = 1e-4, init: Tastes | None = None, first_play=None, cells: int | str = "auto",
                    seed: int = 0, threads: int = 1, scheduler: str | None = None) -> Tastes:
    """MAP tastes under a learned Gaussian prior, the exact fit's model (:class:`~mir.recommend.affinity.Tastes`)
    with each normaliser summed over ``cells`` cells of tracks (``"auto"``: :func:`auto_cells`).

    Arguments as :func:`~mir.recommend.affinity.fit_taste_model`; ``block`` users per task, ``seed`` the
    k-means seed, ``threads`` blocks at once in this process, ``scheduler`` a Dask scheduler address to run
    the blocks on instead (each worker gets the round's shared state once). The result does not depend on
    ``threads`` or ``scheduler``. The curvature is per user (``n_u`` × the covariance of the features under the
    user's cell distribution) while ``U × K × F²`` is at most ``exact_limit``, else shared (at the
    population's taste), as in the exact fit.
    """
    with one_blas_thread():  # the products are skinny; blocks run side by side on threads or workers instead
        return _fit_cells(Y, Phi, item_bias=item_bias, iterations=iterations, ridge=ridge, bias_l2=bias_l2, block=block,
                          exact_limit=exact_limit, max_halvings=max_halvings, tol=tol, init=init, first_play=first_play,
                          cells=cells, seed=seed, threads=threads, scheduler=scheduler)


def _fit_cells(Y, Phi, *, item_bias, iterations, ridge, bias_l2, block, exact_limit, max_halvings, tol, init, first_play,
               cells, seed, threads, scheduler) -> Tastes:
    _check_settings(iterations, ridge, bias_l2, block, max_halvings, tol)
    if threads < 1:
        raise ParameterError(f"threads must be >= 1, got {threads}")
    if not isinstance(cells, Cells) and cells != "auto" and (isinstance(cells, str) or int(cells) < 1):
        raise ParameterError(f"cells must be a number >= 1 or 'auto', got {cells!r}")
    data = _problem(Y, Phi, first_play)
    (U, N), F = data.Y.shape, data.Phi.shape[1]
    Y, Phi, Phi32, n, item_counts, YPhi = data.Y, data.Phi, data.Phi32, data.n, data.item_counts, data.YPhi
    cl = cells if isinstance(cells, Cells) else make_cells(Phi, auto_cells(N) if cells == "auto" else int(cells), seed=seed)
    K = len(cl.centre)
    indptr, items = data.order if data.order is not None else (Y.indptr, Y.indices)
    theta, mu, b, prec = _start(init, U, N, F, item_bias)
    cell_rows = np.vstack([cl.centre.T, 0.5 * cl.spread.T]).astype(np.float32)
    cell_cols64 = np.hstack([cl.centre, cl.spread])
    cell_cols = cell_cols64.astype(np.float32)
    exact = float(U) * K * F * F <= exact_limit
    outer = (cl.centre[:, :, None] * cl.centre[:, None, :]).reshape(K, F * F) if exact else None
    rows_per = max(1, min(block, int(2e7 // max(K, 1))))
    spans = [(lo, min(U, lo + rows_per)) for lo in range(0, U, rows_per)]
    noise = 1e-6 * (n + 1.0)
    history = []
    for _ in range(iterations):
        before = theta.copy()
        logB = _logsumexp_by(cl.assign, b, K)
        if exact:
            curvature = ("exact", outer)
        else:  # the population's cell distribution under mu
            s = cl.centre @ mu + 0.5 * cl.spread @ (mu * mu) + logB
            p = np.exp(s - s.max())
            p /= p.sum()
            m0 = p @ cl.centre
            shared = (cl.centre * p[:, None]).T @ cl.centre - np.outer(m0, m0) + np.diag(p @ cl.spread)
            lam, V = scipy.linalg.eigh(shared, prec)
            curvature = ("shared", np.maximum(lam, 0.0), V)
        st = _Round(Phi, Phi32, b, cl, logB, cell_rows, cell_cols, cell_cols64, mu, prec, curvature, first_play is not None, max_halvings)
        picked_b = Y @ b
        blocks = []
        for lo, hi in spans:
            a, z = indptr[lo], indptr[hi]
            rows = np.repeat(np.arange(hi - lo), np.diff(indptr[lo:hi + 1]))
            blocks.append(_Block(theta[lo:hi], n[lo:hi], YPhi[lo:hi], picked_b[lo:hi], noise[lo:hi], rows, items[a:z]))
        results = _run_blocks(blocks, st, threads, scheduler)
        theta = np.concatenate([r.theta for r in results])
        post_cov = sum(r.post_cov for r in results)
        history.append(sum(r.objective for r in results) / max(n.sum(), 1.0))
        mu, prec = _prior_update(theta, post_cov, ridge)
        if item_bias:
            cell_mass = sum(r.cell_mass for r in results)
            expected = np.exp(b - logB[cl.assign]) * cell_mass[cl.assign]
            expected += np.bincount(items, np.concatenate([r.pick_w for r in results]), N)
            delta = _bias_step(b, np.maximum(expected, 0.0), item_counts, bias_l2)
        else:
            delta = np.zeros(N)
        b = b + delta
        if _converged(theta, before, b, delta, tol):
            break
    return Tastes(theta, mu, b, prec, len(history), np.array(history))


FITS = ("auto", "exact", "cells")


def is_exact(n_items: int, fit: str = "auto", cells: int | str | Cells = "auto") -> bool:
    """Whether :func:`fit_taste` runs the exact fit for a catalogue of ``n_items`` tracks."""
    if fit not in FITS:
        raise ParameterError(f"fit must be one of {', '.join(FITS)}; got {fit!r}")
    return fit == "exact" or (fit == "auto" and isinstance(cells, str) and cells == "auto" and auto_cells(n_items) >= n_items)


def cells_for(Phi: np.ndarray, fit: str = "auto", cells: int | str | Cells = "auto", seed: int = 0):
    """``cells`` made once for several fits over the same tracks: the :class:`Cells` :func:`fit_taste` would
    make (unchanged when that fit is exact or ``cells`` is already made)."""
    if isinstance(cells, Cells) or is_exact(len(Phi), fit, cells):
        return cells
    n = auto_cells(len(Phi)) if cells == "auto" else int(cells)
    if n < 1:
        raise ParameterError(f"cells must be a number >= 1 or 'auto', got {cells!r}")
    return make_cells(Phi, n, seed=seed)


def fit_taste(Y, Phi: np.ndarray, *, fit: str = "auto", cells: int | str | Cells = "auto", threads: int = 1,
              scheduler: str | None = None, **kwargs) -> Tastes:
    """The taste fit by name: ``"exact"`` (:func:`~mir.recommend.affinity.fit_taste_model`, every track in every
    normaliser), ``"cells"`` (:func:`fit_taste_cells`) or ``"auto"``: exact while :func:`auto_cells` keeps one
    track per cell (up to 2,000 tracks, e.g. the demo), else cells. ``cells``: a number, "auto" or
    :class:`Cells` already made (:func:`cells_for`). ``kwargs``: the fits' shared arguments."""
    if is_exact(np.shape(Phi)[0], fit, cells):
        from .affinity import fit_taste_model

        return fit_taste_model(Y, Phi, **kwargs)
    return fit_taste_cells(Y, Phi, cells=cells, threads=threads, scheduler=scheduler, **kwargs)
