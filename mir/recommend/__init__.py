"""Recommendations: listening events in, per-user track lists and playlists out.

- :mod:`~mir.recommend.events`: read and check events, :class:`Interactions`
- :mod:`~mir.recommend.trackset`: :class:`TrackSet` (embeddings, artist, genre, tags, tempo, key)
- :mod:`~mir.recommend.methods`: :class:`Popularity`, :class:`ContentBased`, :class:`Collaborative` (ALS)
- :mod:`~mir.recommend.content_taste`: :class:`ContentTaste` (taste logits over predicted genre/tag probabilities)
- :mod:`~mir.recommend.hybrid`: :class:`Hybrid`, the default ``hybrid`` (item popularity × per-user taste
  logits, plus ALS)
- :mod:`~mir.recommend.registry`: :func:`make` (a recommender by name); :mod:`~mir.recommend.persist`:
  :func:`save_model`, :func:`load_model`
- :mod:`~mir.recommend.exact_topk`: exact top-k over the whole catalogue in blocks (the candidates of
  content and ALS); :mod:`~mir.recommend.arrays`: index-space helpers shared by the methods
- :mod:`~mir.recommend.rerank`: filters, per-artist cap, MMR diversity
- :mod:`~mir.recommend.metrics`, :mod:`~mir.recommend.split`, :mod:`~mir.recommend.evaluate`: offline evaluation
- :mod:`~mir.recommend.batch`: the sharded, resumable batch job (in-process or on Dask)
- :mod:`~mir.recommend.playlist`: seed continuation and track-to-track paths
"""
from ._base import Recommender
from .trackset import TrackSet, from_library
from .content_taste import ContentTaste
from .events import EventReport, Interactions, clean_events, read_events, track_resolver
from .hybrid import Hybrid
from .methods import Collaborative, ContentBased, Popularity
from .persist import load_model, save_model
from .registry import make
from .rerank import Reranker
from .split import temporal_split

__all__ = [
    "Recommender", "load_model", "save_model", "TrackSet", "from_library", "EventReport",
    "Interactions", "clean_events", "read_events", "track_resolver", "Collaborative", "ContentBased", "Hybrid",
    "ContentTaste", "Popularity", "make", "Reranker", "temporal_split",
]
