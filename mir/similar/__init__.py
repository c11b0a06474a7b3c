"""Similar tracks in a library: the library's index per model, metadata filters, queries by track,
audio file, tags and several seeds.

    from mir.similar import open_library_index, similar, Filters
    li = open_library_index(lib)                     # LIB/indexes/<model_id>/, refused when stale
    results = similar(li, tracks=["3f2a"], k=10, filters=Filters(bpm=(90, 120)))

:mod:`mir.similar.library` keeps a library's index in step with the catalogue; :mod:`mir.similar.query`
scores and explains results; :mod:`mir.similar.filters` holds the filters; a file outside the library
goes through the library's model by :mod:`mir.models.audio_file` (``mir similar --audio``). The vector
indexes themselves are :mod:`mir.index`.
"""
from .filters import Filters, filtered_search, parse_key, parse_range
from .library import LibraryIndex, build_library_index, index_status, open_library_index, update_library_index
from .query import similar

__all__ = [
    "Filters", "filtered_search", "parse_key", "parse_range",
    "LibraryIndex", "build_library_index", "update_library_index", "open_library_index", "index_status",
    "similar",
]
