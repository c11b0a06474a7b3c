"""One entry point for an empty index of any kind (the exact reference or FAISS)."""
from __future__ import annotations

from .base import VectorIndex
from .exact import ExactIndex
from .faiss_index import FaissIndex


def make_index(index_type: str | None = None, **params) -> VectorIndex:
    """An empty index: ``"exact"`` (the NumPy reference), ``None``/``"auto"`` (FAISS, type by size),
    ``"flat"``, ``"hnsw"``, ``"ivfpq"`` or any FAISS factory string."""
    if index_type == "exact":
        return ExactIndex()
    return FaissIndex(index_type, **params)
