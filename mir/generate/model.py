"""The sequence model: a small causal Transformer over segment tokens, conditioned on a vector.

Input at position ``i``: embedding of the previous token (a start token at 0) + embedding of the bar
position of the token being predicted + a learned position embedding. A conditioning vector
(neighbours' mean embedding, tempo, key, optional tag probabilities; see :func:`condition_vector`) is
projected to the model width and added at every position. Output: logits over the codebook. A
generator's next-token distribution is these interpolated with a bigram and a cache (:mod:`.mixture`).

Checkpoints are one ``torch.save`` dict read with ``weights_only=True``: format ``mir.generator``,
``config``, ``state_dict``, ``codebook`` (mean, scale, centres), ``mixture`` (weights, bigram, unigram,
cache settings), ``model_id`` (hash of weights, config
and codebook), ``tagger_id`` (whose embeddings condition it), ``metrics`` and ``analysis`` fingerprint.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..atomic import atomic_path
from ..errors import ModelError, ParameterError
from ..features.descriptors import PITCH_CLASSES
from .codebook import Codebook
from .mixture import Mixture

FORMAT = "mir.generator"
FORMAT_VERSION = 1
MAX_BAR = 4  # bar positions 0..3 (metres 3 and 4)


@dataclass(frozen=True)
class GeneratorConfig:
    n_tokens: int
    cond_dim: int
    d_model: int = 128
    n_layers: int = 2
    n_heads: int = 4
    context: int = 64
    dropout: float = 0.1

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "GeneratorConfig":
        return cls(**d)


PRESETS = {
    "small": dict(d_model=128, n_layers=2, n_heads=4, context=64, dropout=0.1),
    "debug": dict(d_model=16, n_layers=1, n_heads=2, context=16, dropout=0.0),
}


def make_config(preset: str, *, n_tokens: int, cond_dim: int) -> GeneratorConfig:
    if preset not in PRESETS:
        raise ParameterError(f"unknown generator preset {preset!r}; choose one of {sorted(PRESETS)}")
    return GeneratorConfig(n_tokens=n_tokens, cond_dim=cond_dim, **PRESETS[preset])


class TokenTransformer(nn.Module):
    def __init__(self, config: GeneratorConfig):
        super().__init__()
        c = config
        self.config = c
        self.token = nn.Embedding(c.n_tokens + 1, c.d_model)  # last row: start token
        self.bar = nn.Embedding(MAX_BAR, c.d_model)
        self.pos = nn.Embedding(c.context, c.d_model)
        self.cond = nn.Sequential(nn.Linear(c.cond_dim, c.d_model), nn.GELU(), nn.Linear(c.d_model, c.d_model))
        layer = nn.TransformerEncoderLayer(c.d_model, c.n_heads, 4 * c.d_model, c.dropout, batch_first=True,
                                           norm_first=True, activation="gelu")
        self.blocks = nn.TransformerEncoder(layer, c.n_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(c.d_model)
        self.head = nn.Linear(c.d_model, c.n_tokens)

    @property
    def start_token(self) -> int:
        return self.config.n_tokens

    def forward(self, prev: torch.Tensor, bar: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """prev, bar [b, t] long (t <= context), cond [b, cond_dim] -> logits [b, t, n_tokens]."""
        t = prev.shape[1]
        x = self.token(prev) + self.bar(bar.clamp(0, MAX_BAR - 1)) + self.pos.weight[:t][None]
        x = x + self.cond(cond)[:, None, :]
        mask = torch.triu(torch.full((t, t), float("-inf"), device=prev.device), diagonal=1)
        return self.head(self.norm(self.blocks(x, mask=mask, is_causal=True)))


# --- conditioning ---------------------------------------------------------------------------------
def key_vector(key: str | None, mode: str | None) -> np.ndarray:
    """One-hot of 24 keys (12 major, then 12 minor); zeros when unknown."""
    v = np.zeros(24, np.float32)
    if key in PITCH_CLASSES and mode in ("major", "minor"):
        v[PITCH_CLASSES.index(key) + (12 if mode == "minor" else 0)] = 1.0
    return v


def condition_vector(embedding: np.ndarray, tempo: float, key: str | None, mode: str | None,
                     tags: np.ndarray | None = None, n_tags: int = 0) -> np.ndarray:
    """[unit embedding (d), log2(tempo / 120), key one-hot (24), tag probabilities (n_tags; zeros if none)]."""
    e = np.asarray(embedding, np.float32)
    e = e / max(float(np.linalg.norm(e)), 1e-12)
    t = np.float32(np.log2(tempo / 120.0)) if tempo and tempo > 0 else np.float32(0.0)
    g = np.zeros(n_tags, np.float32) if tags is None else np.asarray(tags, np.float32)
    return np.concatenate([e, [t], key_vector(key, mode), g]).astype(np.float32)


# --- checkpoints ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class LoadedGenerator:
    model: TokenTransformer
    config: GeneratorConfig
    codebook: Codebook
    model_id: str
    tagger_id: str
    n_tags: int
    metrics: dict
    analysis: str
    path: Path | None = None
    mixture: Mixture | None = None  # None: the Transformer alone (checkpoints before the mixture)


def generator_id(state_dict: dict, config: GeneratorConfig, codebook: Codebook, mixture: Mixture | None = None) -> str:
    h = hashlib.blake2b(digest_size=6)
    h.update(json.dumps(config.to_dict(), sort_keys=True).encode())
    for arr in (codebook.mean, codebook.scale, codebook.centers):
        h.update(np.ascontiguousarray(arr).tobytes())
    if mixture is not None:
        h.update(json.dumps(mixture.to_dict()).encode())
    for name in sorted(state_dict):
        t = state_dict[name].detach().cpu().contiguous()
        h.update(f"\0{name}\0{t.dtype}\0{tuple(t.shape)}\0".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def save_generator(path: str | os.PathLike, model: TokenTransformer, codebook: Codebook, *, tagger_id: str,
                   n_tags: int, metrics: dict, analysis: str, mixture: Mixture | None = None) -> str:
    """Atomically write a weights-only generator checkpoint; return its model id."""
    from .. import __version__

    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    mid = generator_id(state, model.config, codebook, mixture)
    blob = {"format": FORMAT, "format_version": FORMAT_VERSION, "mir_version": __version__, "model_id": mid,
            "config": model.config.to_dict(), "state_dict": state,
            "codebook": {k: torch.as_tensor(np.asarray(v)) for k, v in
                         (("mean", codebook.mean), ("scale", codebook.scale), ("centers", codebook.centers))},
            "tagger_id": tagger_id, "n_tags": int(n_tags), "metrics": json.loads(json.dumps(metrics)),
            "analysis": analysis}
    if mixture is not None:
        blob["mixture"] = {"weights": torch.as_tensor(mixture.weights), "bigram": torch.as_tensor(mixture.bigram),
                           "unigram": torch.as_tensor(mixture.unigram), "gamma": mixture.gamma, "decay": mixture.decay}
    with atomic_path(path) as tmp:
        torch.save(blob, tmp)
    return mid


def load_generator(path: str | os.PathLike) -> LoadedGenerator:
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"no generator at {path}; train one with `mir train-generator LIB`")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ModelError(f"{path}: not a readable generator checkpoint ({type(exc).__name__}: {exc})") from None
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise ModelError(f"{path} is not a mir generator checkpoint (format {blob.get('format') if isinstance(blob, dict) else '?'})")
    config = GeneratorConfig.from_dict(blob["config"])
    model = TokenTransformer(config)
    model.load_state_dict(blob["state_dict"])
    model.eval()
    cb = blob["codebook"]
    codebook = Codebook(cb["mean"].numpy().astype(np.float64), cb["scale"].numpy().astype(np.float64),
                        cb["centers"].numpy().astype(np.float32))
    mx = blob.get("mixture")
    mixture = None if mx is None else Mixture(mx["weights"].numpy().astype(np.float64), mx["bigram"].numpy().astype(np.float64),
                                              mx["unigram"].numpy().astype(np.float64), float(mx["gamma"]), float(mx["decay"]))
    return LoadedGenerator(model, config, codebook, blob["model_id"], blob["tagger_id"], int(blob["n_tags"]),
                           blob["metrics"], blob["analysis"], path, mixture)
