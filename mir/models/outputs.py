"""What the taggers return: one NamedTuple shared by the chunk model and the track head."""
from __future__ import annotations

from typing import NamedTuple

import torch


class TaggerOutput(NamedTuple):
    """What :meth:`~mir.models.ShortChunkCNN.forward` and :class:`~mir.models.track_head.TrackHead`
    return (a NamedTuple: works with ``torch.compile``)."""

    tags: torch.Tensor  # [batch, n_tags] logits
    genre: torch.Tensor  # [batch, n_genres] logits
    embedding: torch.Tensor  # [batch, embed_dim], unit L2 norm
    stats: torch.Tensor | None = None  # [batch, style dim] style statistics (mir.models.style), if the model has them
