"""Short-chunk CNN tagger: one shared backbone, a shared embedding, a tag head and a genre head.

Architecture after Won, Ferraro, Bogdanov & Serra (2020), "Evaluation of CNN-based automatic
music tagging models" (``ShortChunkCNN_Res``): batch-norm on the log-mel input, a stack of
residual 3×3 conv blocks that each halve frequency and time, global max pooling, then a dense
layer. Here that dense layer is the *embedding* (``embed_dim``, layer-normed) shared by two
linear heads: multi-label tags (sigmoid per tag) and single-label genre (softmax).

Conventions
-----------
- input ``x``: log-mel, ``[batch, n_mels, frames]`` (or ``[batch, 1, n_mels, frames]``), float.
  Training uses fixed chunks (``ModelConfig.chunk_frames``, ≈ 3.7 s at 43 frames/s); global
  pooling makes any ``frames ≥ 1`` legal at inference.
- outputs are **logits**; callers apply ``sigmoid`` (tags) / ``softmax`` (genre).
- ``TaggerOutput.embedding`` and :meth:`ShortChunkCNN.embed` are L2-normalised, so a dot
  product is a cosine similarity.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from ..errors import ParameterError
from .blocks import ResBlock2d
from .outputs import TaggerOutput
from .style import StyleStats
from .track_head import TrackHead, pooled_dim


class ShortChunkCNN(nn.Module):
    """Residual short-chunk CNN with shared embedding and two heads.

    Parameters
    ----------
    n_mels : int
        Mel bands of the input (frequency axis).
    widths : sequence of int
        Output channels of each residual block; one block per entry, each with stride 2.
    embed_dim : int
        Size of the shared embedding (input of both heads, output of :meth:`embed`).
    dropout : float
        Dropout before the heads (training only).
    n_tags, n_genres : int
        Sizes of the tag and genre vocabularies.
    track_hidden : int
        Width of the optional track-level head (:mod:`mir.models.track_head`), which turns a
        whole track's chunk outputs plus its descriptors into track outputs; 0 = none (track
        outputs are means over chunks).
    track_embedding : str
        With a track head: ``"head"`` (its hidden layer) or ``"backbone"`` (the mean chunk embedding).
    style_block, style_mfcc, style_weight, style_whiten : int, int, float, float
        ``style_block ≥ 0``: that block's channel statistics and the input's ``style_mfcc`` MFCC
        statistics form each chunk's ``stats`` (:mod:`mir.models.style`); the track's style
        embedding (MFCC part weighted by ``style_weight``, whitened with covariance shrinkage
        ``style_whiten`` when > 0) is then what the model indexes.
    """

    def __init__(
        self,
        *,
        n_mels: int,
        widths: Sequence[int],
        embed_dim: int,
        dropout: float,
        n_tags: int,
        n_genres: int,
        track_hidden: int = 0,
        track_embedding: str = "head",
        style_block: int = -1,
        style_mfcc: int = 20,
        style_weight: float = 0.5,
        style_whiten: float = 0.0,
    ):
        super().__init__()
        widths = [int(w) for w in widths]
        self.n_mels = int(n_mels)
        self.input_norm = nn.BatchNorm2d(1)
        blocks, c_in = [], 1
        for w in widths:
            blocks.append(ResBlock2d(in_channels=c_in, out_channels=w, stride=2))
            c_in = w
        self.blocks = nn.Sequential(*blocks)
        self.project = nn.Linear(c_in, embed_dim)
        self.embed_norm = nn.LayerNorm(embed_dim)
        self.dropout = nn.Dropout(dropout)
        self.tag_head = nn.Linear(embed_dim, n_tags)
        self.genre_head = nn.Linear(embed_dim, n_genres)
        self._init_weights()
        if not -1 <= style_block < len(widths):
            raise ParameterError(f"style_block must be -1 (none) or a block index in [0, {len(widths)}), got {style_block}")
        self.style_block = int(style_block)
        self.style = (StyleStats(channels=widths[style_block], n_mels=self.n_mels, n_mfcc=style_mfcc,
                                 mfcc_weight=style_weight, shrinkage=style_whiten) if style_block >= 0 else None)
        self.track_head = (TrackHead(in_dim=pooled_dim(embed_dim, n_tags, n_genres), hidden=track_hidden,
                                     n_tags=n_tags, n_genres=n_genres, dropout=dropout, embedding=track_embedding,
                                     backbone_dim=embed_dim) if track_hidden else None)

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)

    @property
    def n_tags(self) -> int:
        return self.tag_head.out_features

    @property
    def n_genres(self) -> int:
        return self.genre_head.out_features

    @property
    def embed_dim(self) -> int:
        return self.project.out_features

    def _as_image(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 3:
            x = x.unsqueeze(1)
        if x.dim() != 4 or x.shape[1] != 1 or x.shape[2] != self.n_mels or x.shape[3] < 1:
            raise ParameterError(
                f"x must be a log-mel batch [batch, n_mels={self.n_mels}, frames] "
                f"(or [batch, 1, {self.n_mels}, frames]), got shape {tuple(x.shape)}"
            )
        return x

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Un-normalised shared embedding ``[batch, embed_dim]`` (input of both heads)."""
        return self._features(x)[0]

    def _features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The shared embedding and, for a model with a style block, the chunks' style statistics."""
        mel = self._as_image(x)
        x, stats = self.input_norm(mel), None
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i == self.style_block:
                stats = self.style(x, mel)
        x = torch.amax(x, dim=(2, 3))  # global max pool over what is left of freq and time
        return self.embed_norm(self.project(x)), stats

    def forward(self, x: torch.Tensor) -> TaggerOutput:
        h, stats = self._features(x)
        z = self.dropout(F.relu(h))
        return TaggerOutput(tags=self.tag_head(z), genre=self.genre_head(z), embedding=F.normalize(h, dim=-1),
                            stats=stats)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """L2-normalised embedding ``[batch, embed_dim]``."""
        return F.normalize(self.features(x), dim=-1)
