"""The exact reference index: brute-force inner product over a NumPy matrix.

Slow beyond ~10⁵ vectors but always right: FAISS indexes are tested against it, and it serves
small collections (see :func:`mir.index.choose_factory`).
"""
from __future__ import annotations

import numpy as np

from ..topk import top_k
from .base import VectorIndex

BLOCK = 4096  # queries per matrix product (bounds the [queries, n] score block)


class ExactIndex(VectorIndex):
    """Exact search (the reference). Removal deletes rows; nothing is approximate.

    >>> import numpy as np
    >>> idx = ExactIndex().build(["a", "b"], np.eye(2))
    >>> idx.search([[1.0, 0.1]], 2)[1].tolist()
    [['a', 'b']]
    """

    kind = "exact"

    def _reset(self, dim: int, train: np.ndarray) -> None:
        self.matrix_ = np.zeros((0, dim), dtype=np.float32)
        self.row_labels_ = np.zeros(0, dtype=np.int64)

    def _add(self, labels: np.ndarray, x: np.ndarray) -> None:
        self.matrix_ = np.concatenate([self.matrix_, x])
        self.row_labels_ = np.concatenate([self.row_labels_, labels])

    def _remove(self, labels: np.ndarray) -> bool:
        keep = ~np.isin(self.row_labels_, labels)
        self.matrix_ = self.matrix_[keep]
        self.row_labels_ = self.row_labels_[keep]
        return True

    def _search(self, x: np.ndarray, k: int, allowed: np.ndarray | None, **knobs):
        rows = None
        if allowed is not None:
            rows = np.flatnonzero(np.isin(self.row_labels_, allowed))
        matrix = self.matrix_ if rows is None else self.matrix_[rows]
        row_labels = self.row_labels_ if rows is None else self.row_labels_[rows]
        out_s = np.empty((len(x), k), np.float32)
        out_l = np.empty((len(x), k), np.int64)
        for start in range(0, len(x), BLOCK):
            s, c = top_k(x[start:start + BLOCK] @ matrix.T, k)
            out_s[start:start + BLOCK] = s
            out_l[start:start + BLOCK] = np.where(c >= 0, row_labels[np.maximum(c, 0)] if len(row_labels) else -1, -1)
        return out_s, out_l

    def _vectors(self, labels: np.ndarray) -> np.ndarray:
        pos = {lab: i for i, lab in enumerate(self.row_labels_.tolist())}
        return self.matrix_[[pos[lab] for lab in labels.tolist()]]
