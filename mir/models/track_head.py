"""Track-level head: whole-track tags, genre and embedding from pooled chunk outputs plus descriptors.

A 3.7 s chunk cannot show what only a whole track shows: its mode over many bars, the bar-level
periodicity that tells 6/8 from 9/8, its scale. The track head sees

- ``pooled`` (:func:`pool_chunks`): over a track's chunks, the mean and standard deviation of the
  backbone's unit embeddings, the mean and maximum chunk tag probabilities and the mean chunk genre
  probabilities;
- ``context`` (:func:`track_context`): the analysis descriptors of the whole track — the chroma
  profile rotated to the estimated tonic (key-invariant: shows mode and scale), the best major and
  minor key correlations, the tempogram ratio (metre) and log tempo;

standardises them with statistics frozen at training time, and maps them through one hidden layer
to tag and genre logits. The hidden layer, L2-normalised, is the track embedding.

Each track goes through the head on its own (a ``[1, d]`` batch), so its outputs never depend on
which other tracks were tagged with it.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ..errors import ParameterError
from ..features.descriptors import RHYTHM_FACTORS, key_templates
from .outputs import TaggerOutput

CONTEXT_DIM = 12 + 4 + len(RHYTHM_FACTORS) + 1


def pooled_dim(embed_dim: int, n_tags: int, n_genres: int) -> int:
    """Width of :func:`pool_chunks` rows for a backbone with these sizes."""
    return 2 * embed_dim + 2 * n_tags + n_genres


def pool_chunks(per_chunk: dict[str, np.ndarray], counts: np.ndarray) -> np.ndarray:
    """``[n_tracks, pooled_dim]`` float32: per track (rows grouped, ``counts[i]`` chunks for track ``i``),
    mean and std of chunk embeddings, mean and max chunk tag probabilities, mean chunk genre probabilities.

    Sums run in float64 in chunk order, so a track's row depends only on its own chunks.
    """
    counts = np.asarray(counts, dtype=np.int64)
    emb = per_chunk["embedding"].astype(np.float64)
    parts = [emb, emb**2, per_chunk["tag_probs"].astype(np.float64), per_chunk["genre_probs"].astype(np.float64)]
    if len(counts) == 0:
        return np.zeros((0, sum(p.shape[1] for p in parts) + parts[2].shape[1]), np.float32)
    offsets = np.concatenate([[0], np.cumsum(counts)[:-1]])
    means = [np.add.reduceat(p, offsets, axis=0) / counts[:, None] for p in parts]
    std = np.sqrt(np.maximum(means[1] - means[0] ** 2, 0.0))
    peak = np.maximum.reduceat(parts[2], offsets, axis=0)
    return np.hstack([means[0], std, means[2], peak, means[3]]).astype(np.float32)


def track_context(chroma, rhythm, tempo) -> np.ndarray:
    """``[n, CONTEXT_DIM]`` float32 from descriptor columns: ``chroma [n, 12]`` (profiles, C first),
    ``rhythm [n, len(RHYTHM_FACTORS)]`` (tempogram ratio), ``tempo [n]`` (BPM, 0 = no pulse).

    Columns: chroma rotated so the best-correlating key's tonic comes first (12), the two largest
    major-key and the two largest minor-key correlations (4), the rhythm values, log2(tempo / 120).
    """
    chroma = np.asarray(chroma, dtype=np.float64).reshape(-1, 12)
    rhythm = np.asarray(rhythm, dtype=np.float64).reshape(len(chroma), -1)
    tempo = np.asarray(tempo, dtype=np.float64).reshape(-1)
    if rhythm.shape[1] != len(RHYTHM_FACTORS) or len(tempo) != len(chroma):
        raise ParameterError(f"track_context needs chroma [n, 12], rhythm [n, {len(RHYTHM_FACTORS)}] and tempo [n]; "
                             f"got {chroma.shape}, {rhythm.shape}, {tempo.shape}")
    if not (np.all(np.isfinite(chroma)) and np.all(np.isfinite(rhythm)) and np.all(np.isfinite(tempo))):
        raise ParameterError("track_context got non-finite descriptors; re-analyse those tracks")
    centred = chroma - chroma.mean(axis=1, keepdims=True)
    norms = np.linalg.norm(centred, axis=1, keepdims=True)
    r = (centred / np.where(norms > 1e-12, norms, 1.0)) @ key_templates().T  # [n, 24]
    tonic = np.argmax(r, axis=1) % 12
    rotated = chroma[np.arange(len(chroma))[:, None], (tonic[:, None] + np.arange(12)) % 12]
    top = np.hstack([np.sort(r[:, :12], axis=1)[:, -2:], np.sort(r[:, 12:], axis=1)[:, -2:]])
    log_tempo = np.where(tempo > 0, np.log2(np.maximum(tempo, 1e-9) / 120.0), 0.0)[:, None]
    return np.hstack([rotated, top, rhythm, log_tempo]).astype(np.float32)


def context_of(desc) -> np.ndarray:
    """``[1, CONTEXT_DIM]`` context of one track's descriptors (a :func:`mir.features.describe` dict)."""
    return track_context([desc["chroma"]], [desc["rhythm"]], [desc["tempo"]])


class TrackHead(nn.Module):
    """``pooled [b, in_dim]`` + ``context [b, CONTEXT_DIM]`` -> tag logits, genre logits, unit embedding."""

    def __init__(self, *, in_dim: int, hidden: int, n_tags: int, n_genres: int, dropout: float,
                 embedding: str = "head", backbone_dim: int | None = None):
        super().__init__()
        if embedding not in ("head", "backbone") or (embedding == "backbone" and not backbone_dim):
            raise ParameterError(f"embedding must be 'head' or 'backbone' (with backbone_dim), got {embedding!r}")
        self.embedding, self.backbone_dim = embedding, backbone_dim
        width = in_dim + CONTEXT_DIM
        self.register_buffer("shift", torch.zeros(width))
        self.register_buffer("scale", torch.ones(width))
        self.hidden = nn.Linear(width, hidden)
        self.norm = nn.LayerNorm(hidden)
        self.dropout = nn.Dropout(dropout)
        self.tag_head = nn.Linear(hidden, n_tags)
        self.genre_head = nn.Linear(hidden, n_genres)

    @property
    def in_dim(self) -> int:
        return self.hidden.in_features - CONTEXT_DIM

    def set_standardisation(self, pooled: np.ndarray, context: np.ndarray) -> None:
        """Freeze per-feature mean and std of the training inputs (features with no spread keep scale 1)."""
        x = np.hstack([pooled, context]).astype(np.float64)
        std = x.std(axis=0)
        self.shift.copy_(torch.from_numpy(x.mean(axis=0)).float())
        self.scale.copy_(torch.from_numpy(np.where(std > 1e-6, std, 1.0)).float())

    def forward(self, pooled: torch.Tensor, context: torch.Tensor):
        if pooled.dim() != 2 or pooled.shape[1] != self.in_dim or context.shape != (len(pooled), CONTEXT_DIM):
            raise ParameterError(f"track head expects pooled [b, {self.in_dim}] and context [b, {CONTEXT_DIM}], "
                                 f"got {tuple(pooled.shape)} and {tuple(context.shape)}")
        x = (torch.cat([pooled, context], dim=1) - self.shift) / self.scale
        h = self.norm(self.hidden(x))
        z = self.dropout(F.relu(h))
        # "backbone": the mean of the chunks' unit embeddings, the first columns of ``pooled``
        emb = h if self.embedding == "head" else pooled[:, : self.backbone_dim]
        return TaggerOutput(tags=self.tag_head(z), genre=self.genre_head(z), embedding=F.normalize(emb, dim=-1))

    def predict(self, pooled: np.ndarray, context: np.ndarray) -> dict[str, np.ndarray]:
        """Per-track probabilities and embeddings, one track per forward pass (eval mode, no grad)."""
        was = self.training
        self.eval()
        rows = []
        try:
            with torch.inference_mode():
                for i in range(len(pooled)):
                    out = self(torch.from_numpy(pooled[i : i + 1]).float(), torch.from_numpy(context[i : i + 1]).float())
                    rows.append((torch.sigmoid(out.tags).numpy(), torch.softmax(out.genre, dim=-1).numpy(),
                                 out.embedding.numpy()))
        finally:
            self.train(was)
        n_tags, n_genres = self.tag_head.out_features, self.genre_head.out_features
        d = self.norm.normalized_shape[0] if self.embedding == "head" else self.backbone_dim
        if not rows:
            return {"tag_probs": np.zeros((0, n_tags), np.float32), "genre_probs": np.zeros((0, n_genres), np.float32),
                    "embedding": np.zeros((0, d), np.float32)}
        return {key: np.concatenate([r[j] for r in rows]).astype(np.float32)
                for j, key in enumerate(("tag_probs", "genre_probs", "embedding"))}


def contexts_from_descriptors(table, hashes) -> np.ndarray:
    """``[len(hashes), CONTEXT_DIM]`` contexts of the tracks ``hashes`` from a descriptors table
    (the catalogue's ``descriptors`` stage: columns ``hash``, ``chroma``, ``rhythm``, ``tempo``).

    Raises :class:`~mir.errors.CatalogError` naming the tracks without current descriptors.
    """
    from ..errors import CatalogError

    hashes = list(hashes)
    need = {"hash", "chroma", "rhythm", "tempo"}
    rows = table.set_index("hash") if need <= set(table.columns) else None
    missing = hashes if rows is None else [h for h in hashes if h not in rows.index]
    if missing:
        raise CatalogError(f"{len(missing)} track(s) lack current descriptors (chroma, rhythm), e.g. {missing[:3]}; "
                           "run `mir analyze LIB` (the track head needs them)")
    rows = rows.loc[hashes]
    return track_context(np.stack(rows["chroma"].to_numpy()), np.stack(rows["rhythm"].to_numpy()),
                         rows["tempo"].to_numpy(dtype=np.float64))
