"""Which tags a track gets: per-tag thresholds, one member at most of each mutually exclusive group,
and agreement with what mir measures (tempo, key) where the measurement is confident.

Rules, in order, for a model whose vocabulary holds a group's members (see docs/tagging.md):

1. A tag is a candidate when its probability reaches its threshold (the checkpoint's, per tag).
2. Measured beats predicted: the tempo bucket is the bucket of the measured BPM when
   :func:`~mir.features.confidence.tempo_confidence` reaches ``TEMPO_CONFIDENT``; the mode is the
   key estimate's mode when its ``key_confidence`` reaches ``KEY_CONFIDENT``. The model's candidates
   of that group are dropped, whatever their probabilities.
3. Otherwise a group keeps its most probable candidate (ties: vocabulary order).

Probabilities are never changed, only which tags are decided. ``DECISION_RULES`` versions these
rules: the tagging job re-decides stored tags when it changes.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np

from ..errors import ParameterError
from ..features.confidence import KEY_CONFIDENT, TEMPO_CONFIDENT, tempo_confidence

DECISION_RULES = 2  # 1: each tag on its own threshold; 2: exclusive groups, measured tempo and mode win
#: groups whose members exclude each other (the mirdemo labels give each clip exactly one of each)
EXCLUSIVE_GROUPS: dict[str, tuple[str, ...]] = {
    "tempo": ("slow", "medium", "fast"),
    "mode": ("major", "minor"),
    "meter": ("duple", "triple", "compound"),
    "texture": ("solo", "ensemble"),
}
#: tempo buckets, beats per minute: ``(tag, lowest, below)``
TEMPO_BUCKETS: tuple[tuple[str, float, float], ...] = (("slow", 0.0, 76.0), ("medium", 76.0, 112.0),
                                                       ("fast", 112.0, math.inf))


def tempo_bucket(bpm: float) -> str:
    """The tempo tag of ``bpm`` (``TEMPO_BUCKETS``)."""
    for name, lo, hi in TEMPO_BUCKETS:
        if lo <= bpm < hi:
            return name
    return TEMPO_BUCKETS[-1][0]


@dataclass(frozen=True)
class Measured:
    """What the descriptors say about a track (None = not measured)."""

    bpm: float | None = None
    tempo_confidence: float | None = None
    mode: str | None = None
    key_confidence: float | None = None

    @classmethod
    def from_descriptors(cls, row: Mapping) -> "Measured":
        """From a descriptors row or dict (``tempo``, ``rhythm``, ``mode``, ``key_confidence``; any may be missing)."""
        def number(key):
            value = row.get(key)
            try:
                value = float(value)
            except (TypeError, ValueError):
                return None
            return value if math.isfinite(value) else None

        rhythm = row.get("rhythm")
        confidence = None
        if isinstance(rhythm, (list, tuple, np.ndarray)) and len(rhythm):
            confidence = tempo_confidence(rhythm)
        mode = row.get("mode")
        return cls(bpm=number("tempo"), tempo_confidence=confidence,
                   mode=mode if isinstance(mode, str) else None, key_confidence=number("key_confidence"))

    def measured_tag(self, group: str) -> tuple[str, str] | None:
        """``(tag, why)`` when a confident measurement decides ``group``, else None."""
        if group == "tempo" and self.bpm and self.tempo_confidence is not None \
                and self.tempo_confidence >= TEMPO_CONFIDENT:
            return tempo_bucket(self.bpm), (f"measured {self.bpm:.0f} BPM, beat periodicity "
                                            f"{self.tempo_confidence:.2f} >= {TEMPO_CONFIDENT}")
        if group == "mode" and self.mode and self.key_confidence is not None \
                and self.key_confidence >= KEY_CONFIDENT:
            return self.mode, f"key estimate is {self.mode}, confidence {self.key_confidence:.2f} >= {KEY_CONFIDENT}"
        return None


@dataclass(frozen=True)
class Decision:
    """One track's decided tags (by decreasing probability) and, per group, why its member won."""

    tags: list[str]
    why: dict[str, str] = field(default_factory=dict)


def decide(tag_probs, thresholds, vocabulary: Sequence[str], *,
           measured: Sequence[Measured | None] | None = None) -> list[Decision]:
    """Decide the tags of ``n`` tracks.

    Parameters
    ----------
    tag_probs : [shape=(n, n_tags)] probabilities in vocabulary order
    thresholds : [shape=(n_tags,)] per-tag thresholds
    vocabulary : the tag names, in order
    measured : one :class:`Measured` (or None) per track; None = nothing measured
    """
    probs = np.asarray(tag_probs, dtype=np.float64)
    thresholds = np.asarray(thresholds, dtype=np.float64)
    if probs.ndim != 2 or probs.shape[1] != len(vocabulary) or thresholds.shape != (len(vocabulary),):
        raise ParameterError(f"decide needs tag_probs [n, {len(vocabulary)}] and thresholds [{len(vocabulary)}], "
                             f"got {probs.shape} and {thresholds.shape}")
    if measured is not None and len(measured) != len(probs):
        raise ParameterError(f"decide needs one measurement per track: {len(measured)} for {len(probs)} tracks")
    index = {name: j for j, name in enumerate(vocabulary)}
    groups = {g: [index[t] for t in members if t in index] for g, members in EXCLUSIVE_GROUPS.items()}
    groups = {g: cols for g, cols in groups.items() if len(cols) >= 2}
    out = []
    for i, p in enumerate(probs):
        on = set(np.flatnonzero(p >= thresholds).tolist())
        why = {}
        for group, cols in groups.items():
            _decide_group(group, cols, p, on, why, vocabulary, index, measured[i] if measured is not None else None)
        order = sorted(on, key=lambda j: (-p[j], j))
        out.append(Decision([vocabulary[j] for j in order], why))
    return out


def _decide_group(group: str, cols: list[int], p: np.ndarray, on: set, why: dict, vocabulary, index,
                  measured: Measured | None) -> None:
    """Leave at most one member of ``group`` in ``on`` (decided columns), noting why in ``why``."""
    candidates = [j for j in cols if j in on]
    verdict = measured.measured_tag(group) if measured is not None else None
    if verdict is not None and verdict[0] in index:
        tag, reason = verdict
        on.difference_update(cols)
        on.add(index[tag])
        model = ", ".join(f"{vocabulary[j]} {p[j]:.2f}" for j in candidates) or "none above threshold"
        why[group] = f"{tag}: {reason} (model: {model})"
        return
    if len(candidates) > 1:
        best = max(candidates, key=lambda j: (p[j], -j))
        on.difference_update(cols)
        on.add(best)
        others = ", ".join(f"{vocabulary[j]} {p[j]:.2f}" for j in candidates if j != best)
        why[group] = f"{vocabulary[best]}: most probable of the group ({p[best]:.2f}; also above threshold: {others})"
