"""Input validation and configuration defaults shared by the feature modules (private)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..config import get_config
from ..errors import ParameterError


def check_audio(y, *, name: str = "y", mono: bool = False, allow_empty: bool = False) -> np.ndarray:
    """Return ``y`` as a float32 array after checking type, dtype, shape and finiteness.

    Raises :class:`ParameterError` naming ``name`` and the bad value.
    """
    if not isinstance(y, np.ndarray):
        raise ParameterError(f"{name} must be a numpy array, got {type(y).__name__}")
    if not np.issubdtype(y.dtype, np.floating):
        raise ParameterError(
            f"{name} must be a floating-point array, got dtype {y.dtype} "
            "(integer PCM? divide by its full scale, e.g. y.astype(np.float32) / 32768)"
        )
    if y.ndim == 0:
        raise ParameterError(f"{name} must have a sample axis, got a 0-d array")
    if mono and y.ndim != 1:
        raise ParameterError(f"{name} must be mono with shape (samples,), got shape {y.shape} (downmix first)")
    if y.shape[-1] == 0 and not allow_empty:
        raise ParameterError(f"{name} is empty (shape {y.shape}): there are no samples to analyse")
    if not np.isfinite(y).all():
        bad = int(np.flatnonzero(~np.isfinite(y.reshape(-1)))[0])
        raise ParameterError(f"{name} contains NaN or infinity (first at flat index {bad})")
    return y.astype(np.float32, copy=False)


def positive(value, name: str, kind=float):
    """``value`` as ``kind`` if it is a strictly positive number, else ParameterError."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) or not value > 0:
        raise ParameterError(f"{name} must be a positive number, got {value!r}")
    if kind is int and int(value) != value:
        raise ParameterError(f"{name} must be an integer, got {value!r}")
    return kind(value)


@dataclass(frozen=True)
class MelParams:
    """Resolved log-mel parameters (every ``None`` replaced by the engine configuration)."""

    sr: int
    n_fft: int
    hop_length: int
    n_mels: int
    fmin: float
    fmax: float


def mel_params(sr=None, n_fft=None, hop_length=None, n_mels=None, fmin=None, fmax=None) -> MelParams:
    """Fill ``None`` from ``get_config().analysis`` and validate the result."""
    cfg = get_config().analysis
    sr = positive(cfg.sample_rate if sr is None else sr, "sr", int)
    n_fft = positive(cfg.n_fft if n_fft is None else n_fft, "n_fft", int)
    hop_length = positive(cfg.hop_length if hop_length is None else hop_length, "hop_length", int)
    n_mels = positive(cfg.n_mels if n_mels is None else n_mels, "n_mels", int)
    fmin = float(cfg.fmin if fmin is None else fmin)
    fmax = cfg.fmax if fmax is None else fmax
    fmax = sr / 2.0 if fmax is None else float(fmax)
    if not 0.0 <= fmin < fmax <= sr / 2.0:
        raise ParameterError(f"need 0 <= fmin < fmax <= sr/2 = {sr / 2.0}, got fmin={fmin}, fmax={fmax}")
    return MelParams(sr, n_fft, hop_length, n_mels, fmin, fmax)
