"""Taggers: a short-chunk residual CNN with tag and genre heads and a shared embedding.

Build from a config, save and load checkpoints::

    from mir.models import short_chunk, build_model, save_checkpoint, load_checkpoint
    config = short_chunk(n_tags=50, n_genres=10)
    model = build_model(config)
    out = model(logmel)            # TaggerOutput(tags=logits, genre=logits, embedding=unit vectors)
    vec = model.embed(logmel)      # [batch, embed_dim], L2-normalised
"""
from typing import TYPE_CHECKING

from ..lazy import lazy_getattr

# names are imported on first use (PEP 562), so that ``mir.models.decisions`` and other torch-free
# modules load without torch
_WHERE = {
    **dict.fromkeys(("ModelConfig", "build_model", "conv_macs_per_chunk", "count_parameters", "debug", "fast",
                     "preset", "short_chunk"), "builders"),
    **dict.fromkeys(("FORMAT", "FORMAT_VERSION", "LoadedModel", "load_checkpoint", "model_id", "save_checkpoint"),
                    "checkpoint"),
    "TaggerOutput": "outputs",
    "ShortChunkCNN": "tagger",
}

if TYPE_CHECKING:
    from .builders import (ModelConfig, build_model, conv_macs_per_chunk, count_parameters, debug, fast, preset,
                           short_chunk)
    from .checkpoint import FORMAT, FORMAT_VERSION, LoadedModel, load_checkpoint, model_id, save_checkpoint
    from .outputs import TaggerOutput
    from .tagger import ShortChunkCNN


__getattr__ = lazy_getattr(__name__, _WHERE)


__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "LoadedModel",
    "ModelConfig",
    "ShortChunkCNN",
    "TaggerOutput",
    "build_model",
    "conv_macs_per_chunk",
    "count_parameters",
    "debug",
    "fast",
    "load_checkpoint",
    "model_id",
    "preset",
    "save_checkpoint",
    "short_chunk",
]
