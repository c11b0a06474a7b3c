"""Tagging: run a tagger over a library (the ``mir tag`` batch job), over loose audio files, and
write its decided genre and tags into the files' own metadata.

- :mod:`mir.tagging.job`: :func:`tag`, resumable, in this process, worker processes or on Dask
- :mod:`mir.tagging.worker`: one group of tracks through the model (the task a worker runs)
- :mod:`mir.tagging.files`: :func:`predict_files`, audio files outside a library
- :mod:`mir.tagging.writeback`: :func:`write_file_tags`

What a model wrote is read back with :mod:`mir.catalog.predictions` (``load_tags``, ``load_embeddings``, …).
"""
from .files import predict_files
from .job import TagReport, tag
from .writeback import file_tags_of, write_file_tags

__all__ = ["TagReport", "file_tags_of", "predict_files", "tag", "write_file_tags"]
