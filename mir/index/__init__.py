"""Vector indexes over track embeddings: an exact reference index, FAISS indexes, storage.

One interface (:class:`VectorIndex`): ``build(ids, vectors)``, ``add``, ``remove``,
``search(queries, k) -> (scores [n, k] float32, ids [n, k] str)``; :func:`save_index` and
:func:`load_index` store it in a folder. Inner product on L2-normalised float32 vectors (cosine);
track-id strings outside, int64 labels inside.

    from mir.index import FaissIndex, ExactIndex
    idx = FaissIndex("HNSW32,Flat").build(track_ids, embeddings)
    scores, ids = idx.search(query_vectors, 10, ef_search=256)

:func:`top_k` is the one top-k helper of mir: best ``k`` columns per row as ``(scores, columns)``.
A library's index per model, filters and queries are the similarity service, :mod:`mir.similar`.
"""
from .base import PAD_ID, PAD_SCORE, VectorIndex
from .exact import ExactIndex, top_k
from .faiss_index import FaissIndex, choose_factory, resolve_factory
from .make import make_index
from .storage import load_index, read_manifest, save_index

__all__ = [
    "PAD_ID", "PAD_SCORE", "VectorIndex", "ExactIndex", "FaissIndex", "choose_factory", "resolve_factory", "make_index",
    "top_k", "load_index", "save_index", "read_manifest",
]
