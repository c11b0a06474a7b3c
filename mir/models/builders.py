"""Model configuration, presets, and the one place that turns a config into a model.

Only this module reads :class:`ModelConfig`; model constructors take plain keyword arguments.
A checkpoint stores ``config.to_dict()`` so :func:`build_model` rebuilds the model exactly.

Presets (``n_tags`` / ``n_genres`` come from the training vocabularies)::

    preset        params (50 tags, 10 genres)  MACs per 128×160 chunk
    short_chunk   2.45 M (9.8 MB checkpoint)   613 M   Won et al. 2020 ShortChunkCNN_Res, 7 blocks 64→128…→256
    fast          0.65 M (2.6 MB checkpoint)    74 M   5 narrower blocks 16→32→64→128→128
    debug         3.5 k                         2.5 M  3 tiny blocks, for tests only
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping

from ..errors import ModelError, ParameterError

if TYPE_CHECKING:
    from torch import nn

    from .tagger import ShortChunkCNN

# The one architecture. Stored configs name it (so model ids stay what they have always been);
# a stored config naming another one is refused.
ARCH = "short_chunk_res"


#: what a model with a track head gives as the track embedding: the head's hidden layer (trained on
#: the render labels) or the backbone's mean chunk embedding (what self-supervised training shapes)
TRACK_EMBEDDINGS = ("head", "backbone")


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild a tagger (stored in every checkpoint).

    ``widths`` lists the output channels of each residual block, so ``n_blocks == len(widths)``.
    ``chunk_frames`` is the training chunk length in frames (the model itself pools globally
    and accepts any length); ``n_mels`` must match the analysis the model is fed. There is one
    architecture (the residual short-chunk CNN); presets differ only in these sizes.
    """

    n_tags: int
    n_genres: int
    n_mels: int = 128
    chunk_frames: int = 160
    widths: tuple[int, ...] = (64, 128, 128, 128, 128, 128, 256)
    embed_dim: int = 256
    dropout: float = 0.5
    track_hidden: int = 0  # width of the track-level head (mir.models.track_head); 0 = no head
    track_embedding: str = "head"  # the track embedding of a model with a head: its hidden layer, or the backbone's
    style_block: int = -1  # ≥ 0: index the style embedding of this block's statistics (mir.models.style)
    style_mfcc: int = 20  # MFCCs in the style statistics
    style_weight: float = 0.5  # weight of the MFCC part of the style embedding
    style_whiten: float = 0.0  # > 0: whiten the style embedding with this covariance shrinkage (0 = no whitening)

    def __post_init__(self):
        object.__setattr__(self, "widths", tuple(self.widths))
        for name in ("n_tags", "n_genres", "n_mels", "chunk_frames", "embed_dim"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ParameterError(f"{name} must be a positive int, got {value!r}")
        if not self.widths or any(isinstance(w, bool) or not isinstance(w, int) or w < 1 for w in self.widths):
            raise ParameterError(f"widths must be a non-empty sequence of positive ints, got {self.widths!r}")
        if isinstance(self.track_hidden, bool) or not isinstance(self.track_hidden, int) or self.track_hidden < 0:
            raise ParameterError(f"track_hidden must be an int ≥ 0, got {self.track_hidden!r}")
        if self.track_embedding not in TRACK_EMBEDDINGS:
            raise ParameterError(f"track_embedding must be one of {TRACK_EMBEDDINGS}, got {self.track_embedding!r}")
        if isinstance(self.style_block, bool) or not isinstance(self.style_block, int) or not -1 <= self.style_block < len(self.widths):
            raise ParameterError(f"style_block must be -1 (none) or a block index below {len(self.widths)}, got {self.style_block!r}")
        if isinstance(self.style_mfcc, bool) or not isinstance(self.style_mfcc, int) or not 1 <= self.style_mfcc <= self.n_mels:
            raise ParameterError(f"style_mfcc must be an int in [1, n_mels={self.n_mels}], got {self.style_mfcc!r}")
        if isinstance(self.style_weight, bool) or not isinstance(self.style_weight, (int, float)) or not self.style_weight >= 0:
            raise ParameterError(f"style_weight must be a number ≥ 0, got {self.style_weight!r}")
        if isinstance(self.style_whiten, bool) or not isinstance(self.style_whiten, (int, float)) or not 0 <= self.style_whiten <= 1:
            raise ParameterError(f"style_whiten must be a shrinkage in [0, 1] (0 = no whitening), got {self.style_whiten!r}")
        if not (isinstance(self.dropout, (int, float)) and 0.0 <= self.dropout < 1.0):
            raise ParameterError(f"dropout must be in [0, 1), got {self.dropout!r}")

    @property
    def n_blocks(self) -> int:
        return len(self.widths)

    @property
    def output_dim(self) -> int:
        """Size of the track embedding the model outputs: the style embedding's if it has a style block,
        the track head's width if it has one and its hidden layer is the embedding, else the backbone's."""
        if self.style_block >= 0:
            return 2 * self.widths[self.style_block] + 2 * self.style_mfcc
        return self.track_hidden if self.track_hidden and self.track_embedding == "head" else self.embed_dim

    def to_dict(self) -> dict[str, Any]:
        """Plain-python form (lists, not tuples) for checkpoints and JSON; carries ``"arch"`` (see :data:`ARCH`)."""
        fields = list(dataclasses.asdict(self).items())
        d = dict(fields[:2] + [("arch", ARCH)] + fields[2:])  # the key order checkpoints always had
        d["widths"] = list(self.widths)
        if not self.track_hidden:
            del d["track_hidden"]  # models without a track head keep the config (and model id) they had
        if self.track_embedding == "head":
            del d["track_embedding"]  # likewise models that index the head's hidden layer
        if self.style_block < 0:
            for key in ("style_block", "style_mfcc", "style_weight"):
                del d[key]  # and models without a style embedding
        if self.style_block < 0 or not self.style_whiten:
            del d["style_whiten"]  # and style embeddings without whitening
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ModelConfig":
        """Inverse of :meth:`to_dict`; raises :class:`ModelError` on unknown or bad fields."""
        if not isinstance(data, Mapping):
            raise ModelError(f"model config must be a mapping, got {type(data).__name__}")
        data = dict(data)
        arch = data.pop("arch", ARCH)
        if arch != ARCH:
            raise ModelError(f"model config names architecture {arch!r}; this mir builds only {ARCH!r}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ModelError(f"model config has unknown field(s) {sorted(unknown)}; known: {sorted(known)}")
        try:
            return cls(**data)
        except (TypeError, ParameterError) as exc:
            raise ModelError(f"invalid model config {dict(data)!r}: {exc}") from None


def short_chunk(*, n_tags: int, n_genres: int, **overrides) -> ModelConfig:
    """Won et al. 2020 short-chunk residual CNN (≈ 2.45 M params, ≈ 9.8 MB checkpoint, 613 M MACs/chunk)."""
    return ModelConfig(n_tags=n_tags, n_genres=n_genres, **overrides)


def fast(*, n_tags: int, n_genres: int, **overrides) -> ModelConfig:
    """Narrow, shallow variant for fast CPU inference (≈ 0.65 M params, 74 M MACs/chunk, 8× fewer)."""
    params = dict(widths=(16, 32, 64, 128, 128), embed_dim=256, dropout=0.3)
    params.update(overrides)
    return ModelConfig(n_tags=n_tags, n_genres=n_genres, **params)


def debug(*, n_tags: int = 8, n_genres: int = 4, **overrides) -> ModelConfig:
    """Tiny variant (a few thousand params) for tests; same code path as the real presets."""
    params = dict(widths=(4, 8, 8), embed_dim=16, dropout=0.1)
    params.update(overrides)
    return ModelConfig(n_tags=n_tags, n_genres=n_genres, **params)


PRESETS = {"short_chunk": short_chunk, "fast": fast, "debug": debug}


def preset(name: str, *, n_tags: int, n_genres: int, **overrides) -> ModelConfig:
    """Config of the preset called ``name`` (``short_chunk``, ``fast`` or ``debug``)."""
    try:
        factory = PRESETS[name]
    except KeyError:
        raise ParameterError(f"unknown model preset {name!r}; choose one of {', '.join(PRESETS)}") from None
    return factory(n_tags=n_tags, n_genres=n_genres, **overrides)


def build_model(config: ModelConfig) -> "ShortChunkCNN":
    """Build the (untrained, train-mode) model described by ``config``."""
    if not isinstance(config, ModelConfig):
        raise ParameterError(f"config must be a ModelConfig, got {type(config).__name__}")
    from .tagger import ShortChunkCNN  # torch: loaded when a model is built

    return ShortChunkCNN(
        n_mels=config.n_mels,
        widths=config.widths,
        embed_dim=config.embed_dim,
        dropout=config.dropout,
        n_tags=config.n_tags,
        n_genres=config.n_genres,
        track_hidden=config.track_hidden,
        track_embedding=config.track_embedding,
        style_block=config.style_block,
        style_mfcc=config.style_mfcc,
        style_weight=config.style_weight,
        style_whiten=config.style_whiten,
    )


def count_parameters(model: "nn.Module", *, trainable_only: bool = False) -> int:
    """Number of parameters (elements) in ``model``."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def conv_macs_per_chunk(config: ModelConfig, *, frames: int | None = None) -> int:
    """Multiply-accumulates of one forward pass on one chunk, counted analytically.

    Counts conv and linear layers (batch-norm, pooling and activations are negligible and
    omitted). ``frames`` defaults to ``config.chunk_frames``. FLOPs ≈ 2 × MACs.
    """
    f, t = config.n_mels, frames if frames is not None else config.chunk_frames
    macs, c_in = 0, 1
    for w in config.widths:
        f, t = math.ceil(f / 2), math.ceil(t / 2)
        pos = f * t
        macs += pos * (9 * c_in * w + 9 * w * w)
        if c_in != w:
            macs += pos * c_in * w  # 1×1 shortcut
        c_in = w
    macs += c_in * config.embed_dim + config.embed_dim * (config.n_tags + config.n_genres)
    return macs
