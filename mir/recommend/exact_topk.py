"""Exact top-k over the whole catalogue, in blocks: the fast path behind every method's candidates.

Scores of a block of users against all items are one float32 BLAS product written into a
reused buffer; played items are masked in place from the CSR matrix; the top ``n`` of each row
come from a threshold (a lower bound on the row's n-th best, taken from a strided sample) and a
small selection among the entries above it, with no per-user Python loop.

:func:`mips_topk` (maximum inner product, for matrix-factorisation scores) also skips items that
cannot enter a list: items are kept in decreasing norm order, and once a user's n-th best score
is ``theta``, no item with ``|user| * |item| < theta`` can beat it (Cauchy-Schwarz). ALS item
norms follow popularity, so most of a large catalogue is never scored (exact, not approximate).
"""
from __future__ import annotations

import numpy as np

from ..topk import top_k
from .arrays import NEG, pick, played
from .taste import mixture_scores

BLOCK_BYTES = 32 << 20  # score buffer per block of users
SAMPLE_STRIDE = 16


def block_rows(n_cols: int, *, rows_max: int = 1024, per_row: int = 1) -> int:
    """Users per block so that a [rows, n_cols] float32 buffer (× ``per_row``) stays near BLOCK_BYTES."""
    return int(max(1, min(rows_max, BLOCK_BYTES // max(1, 4 * n_cols * per_row))))


def gather_above(S: np.ndarray, th: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Entries of each row of ``S`` [b, m] at or above ``th`` [b]: ``(cols [b, c], vals [b, c])``
    in column order, padded with -1 / -inf (-inf entries are never gathered)."""
    b, m = S.shape
    keep = (S >= th[:, None]) & (S > NEG)
    counts = keep.sum(axis=1)
    c = int(counts.max()) if b else 0
    cols = np.full((b, c), -1, np.int64)
    vals = np.full((b, c), NEG, np.float32)
    flat = np.flatnonzero(keep)
    rows = flat // m
    pos = np.arange(len(flat)) - np.repeat(np.cumsum(counts) - counts, counts)
    cols[rows, pos] = flat - rows * m
    vals[rows, pos] = S.ravel()[flat]
    return cols, vals


def sample_guess(S: np.ndarray, n: int, stride: int = SAMPLE_STRIDE) -> np.ndarray:
    """Per row, a likely lower bound of the row's n-th largest: the (n // 4)-th largest of every
    ``stride``-th column (about 4 n entries of the row lie above it); -inf when the sample is small."""
    b, m = S.shape
    sample = S[:, ::stride]
    r = max(1, n // 4)
    if sample.shape[1] < 4 * n:
        return np.full(b, NEG, np.float32)
    return np.partition(sample, sample.shape[1] - r, axis=1)[:, -r]


def topk_rows(S: np.ndarray, n: int, floor: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Top ``n`` of each row of ``S`` [b, m] among entries >= ``floor`` [b] (None: all finite):
    ``(cols, vals)``, the result of :func:`mir.topk.top_k` (ties by column), padded -1 / -inf.

    Only entries above a sampled guess of the n-th best are sorted; rows where the guess was too
    high (fewer than ``n`` above it) are gathered again from the floor.
    """
    b, m = S.shape
    floor = np.full(b, NEG, np.float32) if floor is None else np.asarray(floor, np.float32)
    if m <= 8 * n:
        vals, cols = top_k(np.where(S >= floor[:, None], S, NEG), n)
        return cols, vals
    guess = sample_guess(S, n)
    th = np.maximum(guess, floor)
    cols, vals = gather_above(S, th)
    short = ((cols >= 0).sum(axis=1) < n) & (th > floor)
    if short.any():
        c2, v2 = gather_above(S[short], floor[short])
        width = max(cols.shape[1], c2.shape[1])
        cols, vals = _widen(cols, width, -1), _widen(vals, width, NEG)
        cols[short], vals[short] = _widen(c2, width, -1), _widen(v2, width, NEG)
    return pick(cols, vals, n)


def _widen(a: np.ndarray, width: int, fill) -> np.ndarray:
    if a.shape[1] == width:
        return a
    out = np.full((len(a), width), fill, a.dtype)
    out[:, :a.shape[1]] = a
    return out


class NormOrder:
    """Item factors in decreasing norm order, for :func:`mips_topk`."""

    def __init__(self, item_factors: np.ndarray):
        F = np.asarray(item_factors, np.float32)
        norms = np.linalg.norm(F, axis=1)
        self.perm = np.argsort(-norms, kind="stable")  # sorted position -> item
        self.inv = np.empty_like(self.perm)
        self.inv[self.perm] = np.arange(len(self.perm))  # item -> sorted position
        self.factors = np.ascontiguousarray(F[self.perm])
        self.norms = norms[self.perm].astype(np.float64)

    def __len__(self) -> int:
        return len(self.perm)


def mips_topk(queries: np.ndarray, order: NormOrder, n: int, *, seen=None, users=None,
              allowed: np.ndarray | None = None, head: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Exact top ``n`` items by inner product for each query row: ``(items [b, n], scores [b, n])``.

    ``seen`` CSR [n_users, n_items] with ``users`` [b] (their rows; -1 = none): played items are
    excluded; ``allowed`` [n_items] bool restricts the items. Padding: -1 / -inf. Equal to a full
    scan followed by :func:`mir.topk.top_k` up to ties.
    """
    Q = np.ascontiguousarray(queries, np.float32)
    b, N = len(Q), len(order)
    n = int(min(n, N))
    if b == 0 or n <= 0:
        return np.full((b, max(n, 0)), -1, np.int64), np.full((b, max(n, 0)), NEG, np.float32)
    head = int(min(N, head if head is not None else max(16 * n, N // 16)))
    banned = None if allowed is None else np.flatnonzero(~np.asarray(allowed, bool)[order.perm])
    if seen is not None:
        p_rows, p_cols = played(seen, users)
        p_cols = order.inv[p_cols]
    # 1) the head (largest norms): every user's first guess of its n-th best score
    S = Q @ order.factors[:head].T
    _mask(S, p_rows if seen is not None else None, p_cols if seen is not None else None, banned, 0, head)
    hi, hv = topk_rows(S, n)
    theta = hv[:, -1].astype(np.float64)
    if head == N:
        return np.where(hi >= 0, order.perm[np.maximum(hi, 0)], -1), hv
    # 2) the tail: only items with |q| |item| >= theta can enter a list (small margin for rounding)
    qn = np.linalg.norm(Q.astype(np.float64), axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        need = np.where((theta > 0) & (qn > 0), theta / qn * (1 - 1e-5) - 1e-7, -np.inf)
    cut = np.searchsorted(-order.norms, -need, side="right")  # items [0, cut) have norm >= need
    cut = np.maximum(cut, head)
    by_cut = np.argsort(cut, kind="stable")
    ti = np.full((b, 0), -1, np.int64)
    tv = np.full((b, 0), NEG, np.float32)
    parts = []  # (rows, items, scores) of each block
    step = block_rows(int(cut.max()) - head, rows_max=512)
    for s in range(0, b, step):
        rows = by_cut[s:s + step]
        end = int(cut[rows].max())
        if end <= head:
            continue
        T = Q[rows] @ order.factors[head:end].T
        if seen is not None:
            sel = np.isin(p_rows, rows)
            local = np.full(b, -1, np.int64)
            local[rows] = np.arange(len(rows))
            _mask(T, local[p_rows[sel]], p_cols[sel], banned, head, end)
        else:
            _mask(T, None, None, banned, head, end)
        c, v = topk_rows(T, n, floor=theta[rows].astype(np.float32))
        parts.append((rows, np.where(c >= 0, c + head, -1), v))
    if parts:
        width = max(p[1].shape[1] for p in parts)
        ti = np.full((b, width), -1, np.int64)
        tv = np.full((b, width), NEG, np.float32)
        for rows, c, v in parts:
            ti[rows, :c.shape[1]], tv[rows, :v.shape[1]] = c, v
    cols = np.concatenate([hi, ti], axis=1)
    vals = np.concatenate([hv, tv], axis=1)
    pos, top = pick(cols, vals, n)
    return np.where(pos >= 0, order.perm[np.maximum(pos, 0)], -1), top


def _mask(S, rows, cols, banned, lo, hi) -> None:
    """Set played (``rows``, ``cols`` in sorted positions) and banned items within [lo, hi) to -inf in place."""
    if rows is not None and len(rows):
        sel = (cols >= lo) & (cols < hi) & (rows >= 0)
        S[rows[sel], cols[sel] - lo] = NEG
    if banned is not None and len(banned):
        b = banned[(banned >= lo) & (banned < hi)]
        S[:, b - lo] = NEG


def mixture_topk(tastes: np.ndarray, shares: np.ndarray, embeddings: np.ndarray, n: int, temperature: float, *,
                 seen=None, users=None, allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Exact top ``n`` items under each user's taste mixture (:func:`~mir.recommend.taste.mixture_scores`).

    ``tastes`` [b, T, d] unit rows, ``shares`` [b, T] (0 = no such taste), ``embeddings`` [N, d].
    The mixture score of an item lies within ``[L, U]`` with ``L = max_j(sim_j + t log share_j)``
    and ``U = min(L + t log T_u, max_j sim_j + t log sum_j share_j)`` (``T_u``: the user's number
    of tastes); so only items whose ``U`` reaches the n-th best ``L`` are scored exactly.
    """
    b, T, d = tastes.shape
    N = len(embeddings)
    n = int(min(n, N))
    items = np.full((b, n), -1, np.int64)
    scores = np.full((b, n), NEG, np.float32)
    if b == 0 or n <= 0:
        return items, scores
    E = np.ascontiguousarray(embeddings, np.float32)
    banned = None if allowed is None else np.flatnonzero(~np.asarray(allowed, bool))
    with np.errstate(divide="ignore"):
        logw = (temperature * np.log(shares.astype(np.float64))).astype(np.float32)  # -inf: no taste
    slack = (temperature * np.log(np.maximum((shares > 0).sum(axis=1), 1))).astype(np.float32)
    with np.errstate(divide="ignore"):  # shares normally sum to 1 (0); a small margin covers rounding
        total = (temperature * np.log(shares.astype(np.float64).sum(axis=1)) + 1e-6).astype(np.float32)
    if seen is not None:
        p_rows, p_cols = played(seen, users)
    step = block_rows(N, rows_max=256, per_row=T + 3)
    S_buf = np.empty((step * T, N), np.float32)  # reused: fresh [rows, N] arrays cost page faults
    L_buf, U_buf, T_buf = (np.empty((step, N), np.float32) for _ in range(3))
    for s in range(0, b, step):
        r = slice(s, s + step)
        m = len(tastes[r])
        S = np.matmul(tastes[r].reshape(-1, d).astype(np.float32), E.T, out=S_buf[:m * T]).reshape(m, T, N)
        L, U = L_buf[:m], U_buf[:m]  # L: lower bound of the mixture score; U: max_j sim_j, an upper bound
        tmp = T_buf[:m]
        np.add(S[:, 0], logw[r, 0, None], out=L)
        U[:] = S[:, 0]
        for j in range(1, T):  # an absent taste is a zero vector: sim 0 only loosens U, still a bound
            np.add(S[:, j], logw[r, j, None], out=tmp)
            np.maximum(L, tmp, out=L)
            np.maximum(U, S[:, j], out=U)
        if seen is not None:
            sel = (p_rows >= s) & (p_rows < s + m)
            L[p_rows[sel] - s, p_cols[sel]] = NEG
        if banned is not None and len(banned):
            L[:, banned] = NEG
        _, top = topk_rows(L, n)
        U += total[r, None]
        np.add(L, slack[r, None] + 1e-6, out=tmp)
        np.minimum(U, tmp, out=U)  # -inf where L is (played, banned)
        floor = np.where(np.isfinite(top[:, -1]), top[:, -1], NEG).astype(np.float32)
        cand, _ = gather_above(U, floor)
        sims = np.take_along_axis(S, np.maximum(cand, 0)[:, None, :], axis=2)
        exact = np.where(cand >= 0, mixture_scores(sims, shares[r], temperature), NEG)
        items[r], scores[r] = pick(cand, exact, n)
    return items, scores

