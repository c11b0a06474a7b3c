"""Similarity search over track embeddings: an exact reference index, FAISS indexes, storage, filters.

One interface (:class:`VectorIndex`): ``build(ids, vectors)``, ``add``, ``remove``,
``search(queries, k) -> (scores [n, k] float32, ids [n, k] str)``; :func:`save_index` and
:func:`load_index` store it in a folder.
Inner product on L2-normalised float32 vectors (cosine); track-id strings outside, int64 labels inside.

    from mir.index import FaissIndex, ExactIndex
    idx = FaissIndex("HNSW32,Flat").build(track_ids, embeddings)
    scores, ids = idx.search(query_vectors, 10, ef_search=256)

A library's index per model lives under ``LIB/indexes/<model_id>/`` (:mod:`mir.index.library`);
queries by track, audio, tags and several seeds are in :mod:`mir.index.similar`.
"""
from .base import PAD_ID, PAD_SCORE, VectorIndex
from .exact import ExactIndex
from .faiss_index import FaissIndex, choose_factory, resolve_factory
from .filters import Filters, filtered_search, parse_key, parse_range
from .make import make_index
from .library import LibraryIndex, build_library_index, index_status, open_library_index, update_library_index
from .storage import load_index, read_manifest, save_index


__all__ = [
    "PAD_ID", "PAD_SCORE", "VectorIndex", "ExactIndex", "FaissIndex", "choose_factory", "resolve_factory", "make_index",
    "Filters", "filtered_search", "parse_key", "parse_range",
    "LibraryIndex", "build_library_index", "update_library_index", "open_library_index", "index_status",
    "load_index", "save_index", "read_manifest",
]
