"""How far a measured tempo or key can be trusted (numpy only, so readers of stored descriptors
need neither librosa nor torch).

Below these thresholds a measured value is shown as uncertain (``mir show``) and does not overrule a
model's tag (:mod:`mir.models.decisions`). Speech and animal recordings measure 0.24-0.49 on both;
tonal, metrical music mostly lies above 0.6.
"""
from __future__ import annotations

import numpy as np

from ..errors import ParameterError

# tempo factors of the tempogram ratio (librosa.feature.tempogram_ratio's defaults)
RHYTHM_FACTORS = (4.0, 8 / 3, 3.0, 2.0, 4 / 3, 1.5, 1.0, 2 / 3, 0.75, 0.5, 1 / 3, 0.375, 0.25)
KEY_CONFIDENT = 0.6  # key_confidence: correlation of the chroma profile with the best key profile
TEMPO_CONFIDENT = 0.6  # tempo_confidence(): onset autocorrelation at the beat period


def tempo_confidence(rhythm) -> float:
    """How periodic the onsets are at the measured beat: the tempogram ratio (``rhythm``
    [shape=(len(RHYTHM_FACTORS),)]) at factor 1, the mean normalised onset autocorrelation at the
    beat period (at most 1; 0 for no pulse)."""
    values = np.asarray(rhythm, dtype=np.float64).reshape(-1)
    if len(values) != len(RHYTHM_FACTORS):
        raise ParameterError(f"rhythm must hold {len(RHYTHM_FACTORS)} values (tempogram ratio), got {len(values)}")
    return float(values[RHYTHM_FACTORS.index(1.0)])
