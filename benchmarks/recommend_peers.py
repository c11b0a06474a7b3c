"""Recommenders kept as peers for benchmarks/recommend.py, not part of mir: on the project's own numbers
each loses to a simpler method of mir on every column that matters (recall, nDCG, coverage, cold users).

- :class:`BPR`: Bayesian personalised ranking of the ``implicit`` library, mir's ALS interface.
- :class:`EASE`: a closed-form item-item model (below).

EASE (Steck 2019): a closed-form item-item linear model, for small and mid-sized catalogues.

``B = argmin |Y - Y B|^2 + l2 |B|^2`` with ``diag(B) = 0``, ``Y`` the binary user × item play
matrix, is ``B = I - P diag(1 / diag(P))`` with ``P = (Y'Y + l2 I)^-1``. A user's scores are
``Y_u B``. The inverse is dense ``n_items^2`` (memory) and ``n_items^3`` (time), so the model
refuses catalogues above ``max_items``. The ridge ``l2`` ("auto") is chosen on a temporal
validation split of the training events from one eigendecomposition of the split's Gram matrix
(every grid value costs one product, not one inverse).
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import scipy.sparse as sp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mir.errors import ParameterError  # noqa: E402
from mir.recommend import Collaborative  # noqa: E402
from mir.recommend._base import Recommender  # noqa: E402
from mir.recommend.arrays import NEG, mask_unwanted  # noqa: E402
from mir.recommend.tune import relevance_credit, validation_split  # noqa: E402
from mir.topk import top_k  # noqa: E402

L2_GRID = (10.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0)
MAX_ITEMS = 10_000


def binary(Y, dtype=np.float64) -> sp.csr_matrix:
    """``Y`` as a CSR matrix with 1 where a user played a track."""
    Y = sp.csr_matrix(Y, dtype=dtype)
    Y.data[:] = 1.0
    Y.eliminate_zeros()
    return Y


def gram(Y) -> np.ndarray:
    """Dense item × item co-play counts ``Y'Y`` (float64) of the binary plays ``Y``."""
    Y = binary(Y)
    return (Y.T @ Y).toarray()


def ease_weights(G: np.ndarray, l2: float) -> np.ndarray:
    """Item-item weights ``B`` [N, N] float32 (zero diagonal) from the Gram matrix ``G`` and ridge ``l2 > 0``."""
    if not l2 > 0:
        raise ParameterError(f"regularization (l2) must be > 0, got {l2!r}")
    from scipy.linalg import lapack

    A = np.array(G, np.float64)
    A[np.diag_indices_from(A)] += l2
    c, info = lapack.dpotrf(A, lower=False)  # A is positive definite (G is a Gram matrix, l2 > 0)
    P, info2 = lapack.dpotri(c, lower=False) if info == 0 else (None, info)
    if info or info2:
        raise ParameterError(f"the co-play matrix plus l2={l2:g} is not positive definite (LAPACK info {info or info2})")
    P = np.triu(P) + np.triu(P, 1).T  # potri fills the upper triangle
    B = P / -np.diag(P)[None, :]
    np.fill_diagonal(B, 0.0)
    return B.astype(np.float32)


def validation_recall(Y, users: np.ndarray, relevant: dict, grid, k: int, block: int = 512) -> np.ndarray:
    """Mean recall@k over ``users`` of EASE fitted on ``Y`` at each ridge of ``grid`` (played items excluded).

    One eigendecomposition ``Y'Y = V diag(s) V'``: ``P = V diag(1 / (s + l2)) V'``; off the played
    items a user's scores are ``-(Y_u P)_j / P_jj`` (the ``Y_u`` term of ``Y_u B`` is on played items)."""
    Y = binary(Y)
    s, V = np.linalg.eigh(gram(Y))
    s = np.maximum(s, 0.0)
    V2 = V * V
    VT32 = np.ascontiguousarray(V.T, np.float32)  # the big product in float32, as the fitted weights are
    hits = np.zeros(len(grid))
    for lo in range(0, len(users), block):
        u = users[lo:lo + block]
        YV = np.asarray(Y[u] @ V)
        played = Y[u].toarray().astype(bool)
        for g, l2 in enumerate(grid):
            d = 1.0 / (s + l2)
            S = ((YV * d).astype(np.float32) @ VT32) / (-(V2 @ d)).astype(np.float32)[None, :]
            S[played] = NEG
            _, items = top_k(S, k)
            hits[g] += float(relevance_credit(items, u, relevant, Y.shape[1]).sum())
    return hits / max(len(users), 1)


class EASE(Recommender):
    """Collaborative: EASE item-item weights (see the module docstring) on which users played what.

    ``regularization``: the ridge ``l2`` (> 0), or "auto": the best validation recall@``tune_k``
    over ``grid`` (a temporal split of the training events, ``validation``, at most ``max_tune_users``
    users); chosen value ``regularization_``, ``tuning_`` rows ``[l2, recall]``. Catalogues of more than
    ``max_items`` tracks are refused (``B`` is dense ``n_items^2``): use ``als`` there.
    """

    name = "ease"

    def __init__(self, regularization: float | str = "auto", max_items: int = MAX_ITEMS, validation: float = 0.2,
                 tune_k: int = 50, grid: tuple = L2_GRID, max_tune_users: int = 5000, random_state: int = 0):
        self.regularization = regularization
        self.max_items = max_items
        self.validation = validation
        self.tune_k = tune_k
        self.grid = grid
        self.max_tune_users = max_tune_users
        self.random_state = random_state

    def _fit(self, X, tracks) -> None:
        if X.n_items > self.max_items:
            raise ParameterError(f"ease needs a dense {X.n_items} x {X.n_items} item matrix; it is limited to "
                                 f"max_items={self.max_items} tracks: use method 'als' for this catalogue")
        auto = isinstance(self.regularization, str) and self.regularization == "auto"
        if not auto and (isinstance(self.regularization, (str, bool)) or not float(self.regularization) > 0):
            raise ParameterError(f"regularization must be a number > 0 or 'auto', got {self.regularization!r}")
        self.tuning_ = np.zeros((0, 2))
        if auto:
            grid = [float(x) for x in self.grid]
            if not grid or not all(x > 0 for x in grid):
                raise ParameterError(f"grid must hold ridge values > 0, got {self.grid!r}")
            split = validation_split(X, self.validation, max_users=self.max_tune_users, random_state=self.random_state)
            if len(split.users) and len(grid) > 1:
                rec = validation_recall(split.train.matrix(), split.users, split.relevant, grid, self.tune_k)
                self.tuning_ = np.column_stack([grid, rec])
                self.regularization_ = grid[int(np.argmax(rec))]  # ties: the first of the grid
            else:
                self.regularization_ = grid[len(grid) // 2]
        else:
            self.regularization_ = float(self.regularization)
        self.weights_ = ease_weights(gram(self.seen_), self.regularization_)

    def _dense(self, u) -> np.ndarray:
        return np.asarray(binary(self.seen_[u], np.float32) @ self.weights_)  # float32 x float32: no upcast copy of B

    def _candidates(self, u, n, allowed, exclude_seen):
        S = self._dense(u)
        mask_unwanted(S, self.seen_, u, allowed, exclude_seen)
        scores, items = top_k(S, n)
        return items, scores

    def _score(self, u, items):
        out = np.take_along_axis(self._dense(u), np.maximum(items, 0), axis=1)
        return np.where(items >= 0, out, NEG).astype(np.float32)


class BPR(Collaborative):
    """Bayesian personalised ranking (``implicit``'s) with fixed settings, scored and served like mir's ALS."""

    name = "bpr"

    def __init__(self, factors: int = 64, regularization: float = 0.05, alpha: float = 2.0, iterations: int = 15,
                 learning_rate: float = 0.01, random_state: int = 0, num_threads: int = 0):
        super().__init__(factors=factors, regularization=regularization, alpha=alpha, iterations=iterations,
                         random_state=random_state, num_threads=num_threads)
        self.learning_rate = learning_rate

    def _make(self):
        from implicit.cpu.bpr import BayesianPersonalizedRanking

        return BayesianPersonalizedRanking(factors=self.setting("factors"), learning_rate=self.learning_rate,
                                           regularization=self.setting("regularization"), iterations=self.iterations,
                                           random_state=self.random_state, num_threads=self.num_threads)
