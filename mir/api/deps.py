"""Everything the HTTP front end takes from the rest of mir, in one place.

The API modules import library functions only from here. Several of them are moving (issue 12:
``mir.catalog.predictions``, the ``mir.similar`` and ``mir.tagging`` packages); re-pointing this
module is all a move needs. The few compositions below call the library's own functions in the
order the CLI does; they hold no analysis of their own.
"""
from __future__ import annotations

import os
import threading
from functools import lru_cache
from pathlib import Path

import numpy as np

from .. import __version__, audio
from ..catalog import Library, analyze, stage_versions
from ..config import get_config  # noqa: F401 - re-exported
from ..errors import AudioError, CatalogError, MirError, ModelError, ParameterError, TrackNotFoundError
from ..catalog.predictions import load_tags, model_info, resolve_model_id, tagged_models
from ..similar import Filters, LibraryIndex, index_status, open_library_index, similar, update_library_index
from ..models.audio_file import describe_file, run_tagger
from ..similar.library import track_metadata
from ..models import load_checkpoint
from ..models.inference import prepare_model
from ..recommend import from_library, load_model, make, save_model
from ..recommend.inputs import load_inputs
from ..recommend.playlist import continue_from, m3u_text, path_between, playlist_doc
from ..tagging import tag
from ..generate import generate
from ..generate.segments import load_segments
from ..generate.train import default_path as generator_path
from ..similar.filters import parse_key

__all__ = [
    "AudioError", "CatalogError", "MirError", "ModelError", "ParameterError", "TrackNotFoundError",
    "__version__", "Library", "analyze", "stage_versions", "Filters", "index_status", "open_library_index",
    "update_library_index", "LibraryIndex", "resolve_model_id", "track_metadata", "similar", "from_library",
    "load_model", "make", "save_model", "load_inputs", "continue_from", "path_between", "m3u_text", "playlist_doc",
    "load_tags", "model_info", "tag", "tagged_models", "analyze_file", "add_file", "AUDIO_EXTENSIONS", "get_config",
    "generate", "load_segments", "generator_path", "parse_key",
]

AUDIO_EXTENSIONS = frozenset(e.lstrip(".").lower() for e in audio.SUPPORTED_EXTENSIONS)
_INFER = threading.Lock()  # one forward pass at a time: CPU-bound, and the model is shared


@lru_cache(maxsize=4)
def _loaded(checkpoint: str, mtime_ns: int):
    loaded = load_checkpoint(checkpoint)
    return loaded, prepare_model(loaded.model)


def checkpoint_of(lib: Library, model_id: str) -> str:
    """The checkpoint file that tagged ``lib`` with ``model_id`` (as ``mir similar --audio`` finds it)."""
    ckpt = model_info(lib, model_id).get("checkpoint")
    if not ckpt or not os.path.isfile(ckpt):
        raise ModelError(f"the checkpoint of model {model_id} ({ckpt}) is not available, so uploads cannot be analysed; "
                         f"tag the library again with `mir tag {lib.root} --model PATH`")
    return ckpt


def analyze_file(lib: Library, model_id: str, path: str | os.PathLike) -> dict:
    """Decode ``path`` and run the library's model on it, as ``mir tag`` does for a track (not added).

    Returns tags (decided), tag and genre probabilities, genre, embedding, tempo, key, mode, duration and
    the music probability (None for a model without a music gate).
    """
    ckpt = checkpoint_of(lib, model_id)
    loaded, model = _loaded(ckpt, os.stat(ckpt).st_mtime_ns)
    duration, mel, desc = describe_file(path)
    with _INFER:  # decoding above runs in parallel; the model does not
        a = run_tagger(loaded, mel, desc, duration=duration, model=model)
    return {
        "model_id": loaded.model_id, "duration": a.duration, "tags": a.tags,
        "tag_probs": dict(zip(loaded.tags, map(float, a.tag_probs))),
        "genre": loaded.genres[int(np.argmax(a.genre_probs))],
        "genre_probs": dict(zip(loaded.genres, map(float, a.genre_probs))),
        "tempo": desc.get("tempo"), "key": desc.get("key"), "mode": desc.get("mode"),
        "embedding": [float(v) for v in a.embedding],
        "music": a.music,
    }


def add_file(lib: Library, model_id: str, path: Path) -> str:
    """Catalogue ``path`` (a file already inside the library folder) the way the CLI would:
    ``mir scan``, ``mir analyze``, ``mir tag --model``, ``mir index update``; returns its track id."""
    lib.scan([path])
    analyze(lib, workers=1)
    tag(lib, model=checkpoint_of(lib, model_id))
    if index_status(lib, model_id)["exists"]:
        update_library_index(lib, model_id)
    return str(lib.track(str(path))["track_id"])
