"""A codebook that turns segment feature vectors into tokens: k-means on standardised features.

scikit-learn's ``KMeans`` (k-means++ seeding, ``random_state`` given) learns ``k`` centres from the
library's segments; a segment's token is its nearest centre. Features are standardised per column
(mean and scale learned with the centres) so dB levels, chroma and onset strength weigh alike.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import ParameterError


@dataclass(frozen=True)
class Codebook:
    mean: np.ndarray  # [d]
    scale: np.ndarray  # [d]
    centers: np.ndarray  # [k, d] in standardised units

    @property
    def size(self) -> int:
        return len(self.centers)

    def standardise(self, features: np.ndarray) -> np.ndarray:
        return ((np.asarray(features, np.float64) - self.mean) / self.scale).astype(np.float32)

    def encode(self, features: np.ndarray) -> np.ndarray:
        """Token [shape=(m,)] int64 of each feature row [shape=(m, d)]: its nearest centre."""
        z = self.standardise(features).astype(np.float64)
        if not len(z):
            return np.zeros(0, np.int64)
        c = self.centers.astype(np.float64)
        d2 = (z * z).sum(1)[:, None] - 2 * z @ c.T + (c * c).sum(1)[None, :]
        return np.argmin(d2, axis=1).astype(np.int64)

    def to_dict(self) -> dict:
        return {"mean": self.mean.tolist(), "scale": self.scale.tolist(), "centers": self.centers.tolist()}

    @classmethod
    def from_dict(cls, d: dict) -> "Codebook":
        return cls(np.asarray(d["mean"], np.float64), np.asarray(d["scale"], np.float64),
                   np.asarray(d["centers"], np.float32))


def codebook_size(n_segments: int, *, per_token: int = 20, lo: int = 8, hi: int = 256) -> int:
    """Default number of tokens: about ``per_token`` segments per token, within [lo, hi]."""
    return int(np.clip(n_segments // per_token, lo, hi))


def fit_codebook(features: np.ndarray, k: int, *, random_state: int = 0, max_samples: int = 200_000) -> Codebook:
    """k-means codebook of ``features`` [shape=(m, d)] (a seeded sample of ``max_samples`` rows at most)."""
    from sklearn.cluster import KMeans

    features = np.asarray(features, np.float64)
    if features.ndim != 2 or len(features) < k:
        raise ParameterError(f"a codebook of {k} tokens needs at least {k} segments, got {len(features)}; "
                             "analyse more tracks or choose a smaller --codebook")
    rng = np.random.default_rng(random_state)
    sample = features if len(features) <= max_samples else features[rng.choice(len(features), max_samples, replace=False)]
    mean = sample.mean(axis=0)
    scale = sample.std(axis=0)
    scale[scale < 1e-6] = 1.0
    z = (sample - mean) / scale
    km = KMeans(n_clusters=k, n_init=3, random_state=random_state).fit(z)
    return Codebook(mean, scale, km.cluster_centers_.astype(np.float32))
