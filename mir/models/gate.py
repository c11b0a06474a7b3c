"""The music gate: a logistic regression on a track's chunk embeddings that says whether it is music.

Features (:func:`gate_features`): over a track's chunks, the mean and the standard deviation of the
backbone's unit chunk embeddings (``[n, 2·embed_dim]``, the first columns of
:func:`~mir.models.track_head.pool_chunks`). The gate standardises them with statistics frozen at
fitting time and returns ``sigmoid(z · coef + intercept)``: the probability that the track is music.

A gate lives in a checkpoint's ``extra["music_gate"]`` as plain lists of floats (so a
``weights_only`` load reads it) and is part of the checkpoint's model id. Fitting it (scikit-learn)
is in :mod:`mir.train.gate`; this module only applies it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from ..errors import ModelError, ParameterError

GATE_KEY = "music_gate"  # key in a checkpoint's ``extra``
MUSIC_THRESHOLD = 0.5  # below this music probability a track counts as not music
FEATURES = "chunk_embedding_mean_std"


def gate_features(per_chunk: Mapping[str, np.ndarray], counts: np.ndarray) -> np.ndarray:
    """``[n_tracks, 2·d]`` float32: per track, mean and std of its unit chunk embeddings (rows grouped by track)."""
    from .track_head import pool_chunks

    d = per_chunk["embedding"].shape[1]
    return pool_chunks(per_chunk, counts)[:, : 2 * d]


@dataclass(frozen=True)
class MusicGate:
    """A fitted gate: ``p(music) = sigmoid(((x - mean) / scale) · coef + intercept)``."""

    mean: np.ndarray  # [dim] float64
    scale: np.ndarray  # [dim] float64, > 0
    coef: np.ndarray  # [dim] float64
    intercept: float

    @property
    def dim(self) -> int:
        return int(self.coef.shape[0])

    def probability(self, features: np.ndarray) -> np.ndarray:
        """``[n]`` float32 music probabilities of ``features [n, dim]`` (:func:`gate_features`)."""
        x = np.asarray(features, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ParameterError(f"music gate features must have shape (n, {self.dim}), got {x.shape}; "
                                 "was the gate fitted on another backbone?")
        z = ((x - self.mean) / self.scale) @ self.coef + self.intercept
        return (1.0 / (1.0 + np.exp(-np.clip(z, -60, 60)))).astype(np.float32)

    def to_plain(self) -> dict[str, Any]:
        """What ``extra["music_gate"]`` holds: lists of floats, safe for ``weights_only`` loads and JSON."""
        return {"kind": "logistic", "features": FEATURES, "mean": [float(v) for v in self.mean],
                "scale": [float(v) for v in self.scale], "coef": [float(v) for v in self.coef],
                "intercept": float(self.intercept)}

    @classmethod
    def from_plain(cls, plain: Mapping[str, Any]) -> "MusicGate":
        """The gate stored by :meth:`to_plain`; :class:`ModelError` when it is malformed."""
        if not isinstance(plain, Mapping) or plain.get("kind") != "logistic" or plain.get("features") != FEATURES:
            raise ModelError(f"unknown music gate {dict(plain) if isinstance(plain, Mapping) else plain!r:.80}; "
                             f"expected a logistic gate on {FEATURES}: refit it with `mir train-gate`")
        try:
            arrays = [np.asarray(plain[k], dtype=np.float64) for k in ("mean", "scale", "coef")]
            intercept = float(plain["intercept"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"music gate is malformed ({exc}); refit it with `mir train-gate`") from None
        shapes = {a.shape for a in arrays}
        if len(shapes) != 1 or arrays[0].ndim != 1 or not all(np.all(np.isfinite(a)) for a in arrays) \
                or np.any(arrays[1] <= 0) or not np.isfinite(intercept):
            raise ModelError("music gate is malformed (mean, scale, coef must be equal-length finite vectors, "
                             "scale > 0); refit it with `mir train-gate`")
        return cls(*arrays, intercept)


def gate_of(extra: Mapping[str, Any]) -> MusicGate | None:
    """The gate in a checkpoint's ``extra``, or None when the model has none."""
    plain = extra.get(GATE_KEY)
    return None if plain is None else MusicGate.from_plain(plain)
