"""Imported by the worker fork server only: warms up the analysis code once (librosa loads its
submodules lazily on first use, ~2 s), so every forked worker starts warm."""
import numpy as np

from ..features import TrackAnalyzer

_an = TrackAnalyzer(on_frames=lambda frames: None)
_an.update((0.1 * np.random.default_rng(0).standard_normal(3 * 22050)).astype(np.float32))
_an.finalize()
del _an
