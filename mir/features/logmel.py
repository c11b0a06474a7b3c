"""Log-mel spectrograms: numpy function, torch module, and a bounded-memory stream.

Conventions (all three agree with librosa 0.11; see tests/test_features.py for the measured error)::

    power_to_db(melspectrogram(y=y, sr=sr, n_fft=n_fft, hop_length=hop_length, n_mels=n_mels,
                               fmin=fmin, fmax=fmax, power=2.0, center=True, pad_mode="constant"),
                ref=1.0, amin=amin, top_db=top_db)

- periodic Hann window of length ``n_fft``; frames centred (``n_fft // 2`` zeros at both ends);
  ``t = 1 + (samples + 2 * (n_fft // 2) - n_fft) // hop_length`` frames (``1 + samples // hop`` for even n_fft);
- Slaney-style mel filterbank (``htk=False``, ``norm="slaney"``);
- values in dB re 1.0 power, floored at ``10 * log10(amin)``; with ``top_db`` each item is also
  clipped at its own maximum minus ``top_db`` (librosa clips a whole batch at one maximum);
- numpy path: samples as float32 (the engine's audio type), FFT and mel sums in float64, float32 dB out;
  torch path: the input's dtype throughout.

Unspecified parameters (``None``) come from ``get_config().analysis``.
"""
from __future__ import annotations

import functools

import librosa
import numpy as np
import scipy.sparse
import torch
from numpy.lib.stride_tricks import sliding_window_view
from torch import nn

from ..errors import ParameterError
from ._checks import check_audio, mel_params, positive

_CHUNK = 128  # frames per FFT batch: temporaries stay in cache (measured fastest on 2 cores)


# --- constants ---------------------------------------------------------------------------------
@functools.lru_cache(maxsize=16)
def _mel_basis(sr: int, n_fft: int, n_mels: int, fmin: float, fmax: float) -> np.ndarray:
    fb = librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax, htk=False, norm="slaney")
    fb.flags.writeable = False
    return fb


def mel_filterbank(*, sr=None, n_fft=None, n_mels=None, fmin=None, fmax=None) -> np.ndarray:
    """Slaney mel filterbank, identical to ``librosa.filters.mel(htk=False, norm="slaney")``.

    Returns
    -------
    np.ndarray [shape=(n_mels, 1 + n_fft // 2)], float32, read-only and cached per parameter set.
    """
    p = mel_params(sr, n_fft, None, n_mels, fmin, fmax)
    return _mel_basis(p.sr, p.n_fft, p.n_mels, p.fmin, p.fmax)


@functools.lru_cache(maxsize=16)
def _mel_sparse(sr: int, n_fft: int, n_mels: int, fmin: float, fmax: float) -> scipy.sparse.csr_array:
    return scipy.sparse.csr_array(_mel_basis(sr, n_fft, n_mels, fmin, fmax).astype(np.float64))


@functools.lru_cache(maxsize=16)
def hann_window(n_fft: int) -> np.ndarray:
    """Periodic Hann window [shape=(n_fft,)], float64, read-only (librosa's ``get_window("hann")``)."""
    w = librosa.filters.get_window("hann", n_fft, fftbins=True)
    w.flags.writeable = False
    return w


# --- numpy kernel ------------------------------------------------------------------------------
def power_spectrum(frames: np.ndarray, window: np.ndarray) -> np.ndarray:
    """|rfft(frame * window)|^2 of frames [shape=(k, n_fft)] -> [shape=(1 + n_fft // 2, k)] float64.

    A float64 FFT costs little here and keeps bands 100+ dB below a frame's peak exact (float32 does not).
    Transforming along axis 0 yields the (frequency, time) layout directly, without a transpose copy.
    """
    spec = np.fft.rfft(frames.T * window[:, None], axis=0)
    return spec.real**2 + spec.imag**2


def _frames_to_db(frames: np.ndarray, *, window: np.ndarray, mel: scipy.sparse.csr_array, amin: float) -> np.ndarray:
    """Log-mel of frames [shape=(k, n_fft)] -> [shape=(n_mels, k)] float32 dB.

    The sparse product sums each band's bins in a fixed order, so a frame's value does not depend on
    how frames are batched (BLAS does not promise that), and it is ~50x cheaper than a dense matmul.
    """
    out = np.empty((mel.shape[0], len(frames)), dtype=np.float32)
    for s in range(0, len(frames), _CHUNK):
        out[:, s : s + _CHUNK] = mel @ power_spectrum(frames[s : s + _CHUNK], window)
    np.maximum(out, np.float32(amin), out=out)
    np.log10(out, out=out)
    out *= np.float32(10.0)
    return out


def _clip_top_db(S: np.ndarray, top_db: float | None) -> np.ndarray:
    """Clip each item of S [shape=(..., n_mels, t)] at its own max minus ``top_db`` (in place)."""
    if top_db is not None and S.size:
        peak = S.max(axis=(-2, -1), keepdims=True)
        np.maximum(S, peak - np.float32(top_db), out=S)
    return S


def _check_db_args(amin, top_db) -> tuple[float, float | None]:
    amin = positive(amin, "amin")
    if top_db is not None:
        top_db = positive(top_db, "top_db")
    return amin, top_db


def log_mel(
    y: np.ndarray,
    *,
    sr: int | None = None,
    n_fft: int | None = None,
    hop_length: int | None = None,
    n_mels: int | None = None,
    fmin: float | None = None,
    fmax: float | None = None,
    amin: float = 1e-10,
    top_db: float | None = None,
) -> np.ndarray:
    """Log-power mel spectrogram in dB (see the module docstring for conventions).

    Parameters
    ----------
    y : np.ndarray [shape=(..., samples)], floating point, finite, at least one sample
    sr, n_fft, hop_length, n_mels, fmin, fmax : analysis parameters (``None``: engine configuration)
    amin : float > 0, power floor before the log (``10 * log10(amin)`` dB)
    top_db : float > 0 or None, clip each item at its maximum minus ``top_db``

    Returns
    -------
    S : np.ndarray [shape=(..., n_mels, t)], float32 dB

    Examples
    --------
    >>> y = np.sin(2 * np.pi * 440 * np.arange(22050) / 22050).astype(np.float32)
    >>> log_mel(y, sr=22050).shape
    (128, 44)
    """
    y = check_audio(y)
    amin, top_db = _check_db_args(amin, top_db)
    p = mel_params(sr, n_fft, hop_length, n_mels, fmin, fmax)
    items = y.reshape(-1, y.shape[-1])
    out = np.stack([_log_mel_mono(x, p, amin) for x in items])
    return _clip_top_db(out.reshape(*y.shape[:-1], *out.shape[-2:]), top_db)


def _log_mel_mono(y: np.ndarray, p, amin: float) -> np.ndarray:
    """One item through the streaming path, so whole-signal and streamed results share the code."""
    stream = LogMelStream(sr=p.sr, n_fft=p.n_fft, hop_length=p.hop_length, n_mels=p.n_mels,
                          fmin=p.fmin, fmax=p.fmax, amin=amin)
    return np.concatenate([stream._push(y), stream.finalize()], axis=1)


# --- streaming ---------------------------------------------------------------------------------
class FrameStream:
    """Cut consecutive blocks of one signal into centred frames, with zero padding only at its two ends.

    ``push(block)`` returns the frames [shape=(k, frame_length)] that the samples so far complete;
    ``close()`` pads the end and returns the rest. The frames equal those of
    ``np.pad(y, frame_length // 2)`` framed at ``hop_length``, whatever the block lengths.
    Memory: fewer than ``frame_length`` samples are carried between blocks.
    """

    def __init__(self, frame_length: int, hop_length: int):
        self.frame_length = frame_length
        self.hop_length = hop_length
        self._carry = np.zeros(frame_length // 2, dtype=np.float32)  # the leading centre pad
        self.closed = False

    def push(self, block: np.ndarray) -> np.ndarray:
        if self.closed:
            raise ParameterError("this stream is already finalized; start a new one for a new signal")
        buf = np.concatenate([self._carry, block.astype(np.float32, copy=False)])
        n, hop = self.frame_length, self.hop_length
        if len(buf) < n:
            self._carry = buf
            return np.empty((0, n), dtype=np.float32)
        k = 1 + (len(buf) - n) // hop
        self._carry = buf[k * hop :].copy()
        return sliding_window_view(buf, n)[::hop][:k]

    def close(self) -> np.ndarray:
        frames = self.push(np.zeros(self.frame_length // 2, dtype=np.float32))
        self.closed = True
        return frames


class LogMelStream:
    """Log-mel frames of a long signal fed block by block, in bounded memory.

    Concatenating (along the last axis) everything returned by :meth:`update` and :meth:`finalize`
    equals :func:`log_mel` of the whole signal (``top_db`` is not available: it needs the global maximum).

    Examples
    --------
    >>> stream = LogMelStream(sr=22050)
    >>> parts = [stream.update(block) for block in np.array_split(np.zeros(50000, np.float32), 7)]
    >>> S = np.concatenate(parts + [stream.finalize()], axis=1)   # == log_mel(np.zeros(50000))
    """

    def __init__(self, *, sr=None, n_fft=None, hop_length=None, n_mels=None, fmin=None, fmax=None, amin: float = 1e-10):
        self.params = p = mel_params(sr, n_fft, hop_length, n_mels, fmin, fmax)
        self.amin, _ = _check_db_args(amin, None)
        self._frames = FrameStream(p.n_fft, p.hop_length)
        self._window = hann_window(p.n_fft)
        self._mel = _mel_sparse(p.sr, p.n_fft, p.n_mels, p.fmin, p.fmax)
        self.n_samples = 0
        self.n_frames = 0

    def update(self, block: np.ndarray) -> np.ndarray:
        """Consume ``block`` [shape=(samples,)] (any length, 0 included); return new frames [shape=(n_mels, k)]."""
        return self._push(check_audio(block, name="block", mono=True, allow_empty=True))

    def finalize(self) -> np.ndarray:
        """Pad the end of the signal and return the last frames [shape=(n_mels, k)]."""
        if self.n_samples == 0 and not self._frames.closed:
            raise ParameterError("LogMelStream received no samples (total length 0); there is nothing to analyse")
        return self._emit(self._frames.close())

    def _push(self, block: np.ndarray) -> np.ndarray:  # block already validated
        self.n_samples += len(block)
        return self._emit(self._frames.push(block))

    def _emit(self, frames: np.ndarray) -> np.ndarray:
        self.n_frames += len(frames)
        return _frames_to_db(frames, window=self._window, mel=self._mel, amin=self.amin)


# --- torch -------------------------------------------------------------------------------------
def log_mel_torch(
    y: torch.Tensor, *, window: torch.Tensor, mel_fb: torch.Tensor, hop_length: int, amin: float = 1e-10, top_db: float | None = None
) -> torch.Tensor:
    """Log-mel of ``y`` [shape=(batch, samples)] -> [shape=(batch, n_mels, t)] dB (same conventions as :func:`log_mel`).

    ``window`` [shape=(n_fft,)] and ``mel_fb`` [shape=(n_mels, 1 + n_fft // 2)] must share ``y``'s dtype and device.
    """
    spec = torch.stft(y, n_fft=window.shape[-1], hop_length=hop_length, window=window,
                      center=True, pad_mode="constant", return_complex=True)
    power = spec.real.square() + spec.imag.square()
    db = 10.0 * torch.log10(torch.clamp(torch.matmul(mel_fb, power), min=amin))
    if top_db is not None:
        db = torch.maximum(db, db.amax(dim=(-2, -1), keepdim=True) - top_db)
    return db


class LogMel(nn.Module):
    """Log-mel front end as a module: ``(batch, samples) -> (batch, n_mels, t)`` dB; a 1-D input gives ``(n_mels, t)``.

    Buffers ``window`` (periodic Hann, [n_fft]) and ``mel_fb`` ([n_mels, 1 + n_fft // 2]) are built from
    the constructor arguments, follow ``.to(device)`` and are saved in ``state_dict`` (as in torchaudio).
    Computation runs in the input's dtype: float32 input is exact to float32 precision; use float64
    input (``y.double()``) for agreement with librosa in bands more than ~80 dB below an item's peak.

    >>> LogMel(sr=22050)(torch.zeros(2, 22050)).shape
    torch.Size([2, 128, 44])
    """

    def __init__(self, *, sr=None, n_fft=None, hop_length=None, n_mels=None, fmin=None, fmax=None,
                 amin: float = 1e-10, top_db: float | None = None):
        super().__init__()
        self.params = p = mel_params(sr, n_fft, hop_length, n_mels, fmin, fmax)
        self.amin, self.top_db = _check_db_args(amin, top_db)
        self.register_buffer("window", torch.from_numpy(hann_window(p.n_fft).astype(np.float32)))
        self.register_buffer("mel_fb", torch.from_numpy(_mel_basis(p.sr, p.n_fft, p.n_mels, p.fmin, p.fmax).copy()))

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        if not isinstance(y, torch.Tensor):
            raise ParameterError(f"y must be a torch.Tensor, got {type(y).__name__}")
        if not y.is_floating_point():
            raise ParameterError(f"y must be a floating-point tensor, got dtype {y.dtype}")
        if y.ndim not in (1, 2) or y.shape[-1] == 0:
            raise ParameterError(f"y must have shape (batch, samples) or (samples,) with samples > 0, got {tuple(y.shape)}")
        if not torch.isfinite(y).all():
            raise ParameterError("y contains NaN or infinity")
        return log_mel_torch(y, window=self.window.to(y.dtype), mel_fb=self.mel_fb.to(y.dtype),
                             hop_length=self.params.hop_length, amin=self.amin, top_db=self.top_db)

    def extra_repr(self) -> str:
        p = self.params
        return f"sr={p.sr}, n_fft={p.n_fft}, hop_length={p.hop_length}, n_mels={p.n_mels}, fmin={p.fmin}, fmax={p.fmax}"
