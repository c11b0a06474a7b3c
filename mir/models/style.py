"""The style embedding: what a track sounds like, as statistics of the backbone's feature maps and its MFCCs.

The backbone's pooled embedding hears *what* is played (it finds the other excerpts of a recording),
but not the production and timbre that make tracks of one album or one style sound alike. Those live
in first- and second-order statistics of intermediate feature maps — the "style" of neural style
transfer (Gatys et al. 2016) — and in the classic bag-of-frames MFCC statistics (Aucouturier &
Pachet 2004). A model with a style block (``ModelConfig.style_block ≥ 0``) gives, per chunk:

- the mean and standard deviation over frequency and time of each channel of that block's output
  (``2·C`` values);
- the mean and standard deviation over time of the chunk's first ``n_mfcc`` MFCCs, computed from
  the model's own log-mel input with the orthonormal DCT-II that ``librosa.feature.mfcc`` uses
  (``2·n_mfcc`` values).

A track's statistics are the mean over its chunks. Its style embedding (:meth:`StyleStats.embed`)
standardises them with statistics frozen on a training corpus (``mir train-style``), L2-normalises the
block part and the MFCC part separately, weights the MFCC part by ``mfcc_weight`` and L2-normalises the
whole. With ``shrinkage > 0`` that vector is first whitened: centred and multiplied by ``C^(-1/2)``,
where ``C`` is the corpus vectors' covariance shrunk towards a multiple of the identity
(:func:`shrunk_whitening`), so that cosine similarity becomes a regularised Mahalanobis similarity
and directions shared by all music weigh less than those that tell tracks apart. That vector is what
such a model indexes.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from ..errors import ParameterError


def dct_matrix(n_mels: int, n_mfcc: int) -> np.ndarray:
    """``[n_mfcc, n_mels]`` orthonormal DCT-II (``scipy.fft.dct(type=2, norm="ortho")``, first rows)."""
    if not 1 <= n_mfcc <= n_mels:
        raise ParameterError(f"n_mfcc must be in [1, n_mels={n_mels}], got {n_mfcc}")
    k = np.arange(n_mfcc)[:, None]
    n = np.arange(n_mels)[None, :]
    basis = np.cos(math.pi * k * (2 * n + 1) / (2 * n_mels)) * math.sqrt(2.0 / n_mels)
    basis[0] /= math.sqrt(2.0)
    return basis


def shrunk_whitening(x: np.ndarray, shrinkage: float) -> tuple[np.ndarray, np.ndarray]:
    """``(mean [d], W [d, d])`` with ``W = C^(-1/2)`` (symmetric) for the rows of ``x [n, d]``, where
    ``C = (1 - shrinkage) · cov(x) + shrinkage · (trace(cov(x)) / d) · I``; ``shrinkage`` in (0, 1]."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or len(x) < 2 or not np.all(np.isfinite(x)):
        raise ParameterError(f"whitening needs finite vectors of ≥ 2 tracks, shape (n, d); got {x.shape}")
    if not 0 < shrinkage <= 1:
        raise ParameterError(f"shrinkage must be in (0, 1], got {shrinkage!r}")
    mean = x.mean(axis=0)
    cov = np.cov(x, rowvar=False, bias=True)
    scale = np.trace(cov) / len(cov)
    if not scale > 0:
        raise ParameterError("whitening needs vectors that vary; all training tracks gave the same one")
    cov = (1 - shrinkage) * cov + shrinkage * scale * np.eye(len(cov))
    vals, vecs = np.linalg.eigh(cov)
    return mean, (vecs / np.sqrt(vals)) @ vecs.T


def channel_stats(h: torch.Tensor) -> torch.Tensor:
    """``[b, 2·C]``: per channel, mean and standard deviation over the feature map ``h [b, C, F, T]``."""
    flat = h.float().flatten(2)
    return torch.cat([flat.mean(dim=2), flat.std(dim=2, unbiased=False)], dim=1)


def mfcc_stats(mel_db: torch.Tensor, dct: torch.Tensor) -> torch.Tensor:
    """``[b, 2·n_mfcc]``: mean and standard deviation over time of the MFCCs ``dct @ mel`` of log-mels
    ``mel_db [b, 1, n_mels, T]`` (``dct``: :func:`dct_matrix` as a tensor), in fp32 even under autocast."""
    with torch.autocast("cpu", enabled=False):
        mfcc = torch.einsum("km,bmt->bkt", dct, mel_db.float()[:, 0])
        return torch.cat([mfcc.mean(dim=2), mfcc.std(dim=2, unbiased=False)], dim=1)


class StyleStats(nn.Module):
    """Per-chunk style statistics and the track-level style embedding (see the module docstring)."""

    def __init__(self, *, channels: int, n_mels: int, n_mfcc: int, mfcc_weight: float, shrinkage: float = 0.0):
        super().__init__()
        if channels < 1:
            raise ParameterError(f"channels must be ≥ 1, got {channels}")
        if not (isinstance(mfcc_weight, (int, float)) and mfcc_weight >= 0):
            raise ParameterError(f"mfcc_weight must be a number ≥ 0, got {mfcc_weight!r}")
        self.channels, self.n_mfcc, self.mfcc_weight = int(channels), int(n_mfcc), float(mfcc_weight)
        self.register_buffer("dct", torch.from_numpy(dct_matrix(n_mels, n_mfcc)).float(), persistent=False)
        self.register_buffer("shift", torch.zeros(self.dim))
        self.register_buffer("scale", torch.ones(self.dim))
        self.shrinkage = float(shrinkage)
        if self.shrinkage:  # only then: checkpoints without whitening keep their state and id
            self.register_buffer("center", torch.zeros(self.dim))
            self.register_buffer("whiten", torch.eye(self.dim))

    @property
    def dim(self) -> int:
        return 2 * self.channels + 2 * self.n_mfcc

    def forward(self, block_out: torch.Tensor, mel_db: torch.Tensor) -> torch.Tensor:
        """Raw statistics ``[b, dim]`` of a chunk batch: the style block's output and the log-mel input ``[b, 1, n_mels, T]``."""
        return torch.cat([channel_stats(block_out), mfcc_stats(mel_db, self.dct)], dim=1)

    def set_standardisation(self, stats: np.ndarray) -> None:
        """Freeze per-value mean and std of training tracks' statistics ``[n, dim]`` (no spread: scale 1)."""
        x = np.asarray(stats, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.dim or len(x) < 2 or not np.all(np.isfinite(x)):
            raise ParameterError(f"style standardisation needs finite statistics of ≥ 2 tracks, shape (n, {self.dim}); "
                                 f"got {x.shape}")
        std = x.std(axis=0)
        self.shift.copy_(torch.from_numpy(x.mean(axis=0)).float())
        self.scale.copy_(torch.from_numpy(np.where(std > 1e-6, std, 1.0)).float())

    def set_whitening(self, stats: np.ndarray) -> None:
        """Freeze the whitening (:func:`shrunk_whitening`) of training tracks' statistics ``[n, dim]``;
        call after :meth:`set_standardisation`, on the same tracks."""
        if not self.shrinkage:
            raise ParameterError("this style block has no whitening (shrinkage 0)")
        mean, w = shrunk_whitening(self.combine(stats), self.shrinkage)
        self.center.copy_(torch.from_numpy(mean).float())
        self.whiten.copy_(torch.from_numpy(w).float())

    def combine(self, stats: np.ndarray) -> np.ndarray:
        """``[n, dim]`` float64: standardised statistics, block and MFCC parts unit-normed, MFCC part
        weighted (the style embedding before whitening and the final normalisation)."""
        x = np.asarray(stats, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ParameterError(f"style statistics must have shape (n, {self.dim}), got {x.shape}")
        z = (x - self.shift.double().numpy()) / self.scale.double().numpy()
        c = 2 * self.channels
        return np.hstack([_unit(z[:, :c]), self.mfcc_weight * _unit(z[:, c:])])

    def embed(self, stats: np.ndarray) -> np.ndarray:
        """``[n, dim]`` float32 unit style embeddings of tracks' mean chunk statistics ``stats [n, dim]``."""
        v = self.combine(stats)
        if self.shrinkage:
            v = (v - self.center.double().numpy()) @ self.whiten.double().numpy()
        return _unit(v).astype(np.float32)


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
