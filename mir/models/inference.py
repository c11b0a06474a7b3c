"""Chunked, batched inference of a tagger over whole-track log-mels.

One code path for everything that turns log-mels into per-track predictions: training's
validation, evaluation, batch tagging (:mod:`mir.tagging`) and similarity queries.

Conventions
-----------
- ``mel``: one track's log-mel, ``np.ndarray [shape=(n_mels, frames)]``, float (dB).
- A track is cut into chunks of ``chunk_frames`` frames (the model's training length,
  ``ModelConfig.chunk_frames``): all non-overlapping chunks from frame 0 (a tail shorter than a
  chunk is dropped), or ``n_chunks`` evenly spaced ones. A track shorter than one chunk gives one
  chunk, padded at the end with :data:`PAD_DB` (digital silence after the log-mel's ``amin`` floor).
- Chunks of many tracks are batched together (``batch_size`` chunks per forward pass).
- Aggregation per track: tag probabilities = mean over chunks of ``sigmoid(tag logits)``;
  genre probabilities = mean over chunks of ``softmax(genre logits)``; embedding = the mean of the
  chunks' unit embeddings, L2-normalised again. Means of probabilities (not of logits, not max) keep
  every chunk's vote bounded, so one odd chunk cannot dominate, and the result is still a
  probability that the per-tag thresholds (tuned on these same aggregated values in validation)
  apply to.
- Every forward pass sees exactly ``batch_size`` chunks (the last batch is padded), so oneDNN picks
  the same kernels every time and a chunk's output is bit-identical whatever else shares its batch,
  how tracks were grouped, and how many threads run (tests check this). Per-track means are summed
  in chunk order in float64. Results are therefore reproducible across resumed runs, worker
  processes and Dask workers for the same ``batch_size`` and ``precision``.

Example::

    from mir.models import load_checkpoint
    from mir.models.inference import predict_logmels, prepare_model
    loaded = load_checkpoint("model.pt")
    model = prepare_model(loaded.model)                  # eval, channels_last
    out = predict_logmels(model, [lib.logmel(t) for t in ids], chunk_frames=loaded.config.chunk_frames)
    out["tag_probs"].shape                               # (n_tracks, n_tags)
"""
from __future__ import annotations

import contextlib
import functools
from typing import Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ..errors import ParameterError
from .defaults import DEFAULT_BATCH_SIZE, PRECISIONS  # noqa: F401 (re-exported)

PAD_DB = -100.0  # 10 * log10(amin=1e-10): what digital silence analyses to


# --- chunking ----------------------------------------------------------------------------------
def _positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ParameterError(f"{name} must be a positive int, got {value!r}")
    return int(value)


def chunk_starts(n_frames: int, chunk_frames: int, n_chunks: int | None = None) -> np.ndarray:
    """Start frames of the chunks of a track of ``n_frames`` frames.

    Parameters
    ----------
    n_frames : frames of the track, ≥ 1
    chunk_frames : frames per chunk, ≥ 1
    n_chunks : ``None`` for every non-overlapping chunk ``0, chunk_frames, 2·chunk_frames, …``
        (``n_frames // chunk_frames`` of them; the tail is dropped), or at most this many, evenly
        spaced from the first frame to the last full chunk (rounded to whole frames). Asking for
        more chunks than fit without overlap gives all of them.

    Returns
    -------
    starts : np.ndarray [shape=(k,)], int64, increasing, ``k ≥ 1``; a track shorter than one
        chunk gives ``[0]`` (the caller pads it, see :func:`cut_chunks`).

    >>> chunk_starts(500, 160).tolist()
    [0, 160, 320]
    >>> chunk_starts(1000, 160, 2).tolist()
    [0, 840]
    """
    n_frames = _positive_int(n_frames, "n_frames")
    chunk_frames = _positive_int(chunk_frames, "chunk_frames")
    if n_chunks is not None:
        n_chunks = _positive_int(n_chunks, "n_chunks")
    n_full = n_frames // chunk_frames
    if n_full <= 1:
        return np.zeros(1, dtype=np.int64)
    if n_chunks is not None and n_chunks < n_full:
        if n_chunks == 1:
            return np.array([(n_frames - chunk_frames) // 2], dtype=np.int64)  # the middle chunk
        return np.rint(np.linspace(0, n_frames - chunk_frames, n_chunks)).astype(np.int64)
    return np.arange(n_full, dtype=np.int64) * chunk_frames


def cut_chunks(mel: np.ndarray, starts: np.ndarray, chunk_frames: int, *, out: np.ndarray | None = None) -> np.ndarray:
    """Chunks ``mel[:, s:s + chunk_frames]`` for ``s`` in ``starts`` -> ``[k, n_mels, chunk_frames]`` float32.

    Frames past the end of ``mel`` are filled with :data:`PAD_DB`. ``out`` (float32, right shape)
    is filled in place when given.
    """
    n_mels, n = mel.shape
    if out is None:
        out = np.empty((len(starts), n_mels, chunk_frames), dtype=np.float32)
    for i, s in enumerate(starts):
        stop = min(int(s) + chunk_frames, n)
        width = stop - int(s)
        out[i, :, :width] = mel[:, s:stop]
        if width < chunk_frames:
            out[i, :, width:] = PAD_DB
    return out


def check_mels(mels: Sequence[np.ndarray], n_mels: int) -> None:
    """Raise :class:`ParameterError` unless every item is a finite-shaped ``[n_mels, frames ≥ 1]`` array."""
    for i, mel in enumerate(mels):
        shape = getattr(mel, "shape", None)
        if shape is None or len(shape) != 2 or shape[0] != n_mels or shape[1] < 1:
            raise ParameterError(
                f"mels[{i}] must be a log-mel array [n_mels={n_mels}, frames ≥ 1], got "
                f"{type(mel).__name__} with shape {shape}; were the features analysed with another n_mels?"
            )


# --- model preparation and precision ----------------------------------------------------------
@functools.lru_cache(maxsize=1)
def cpu_supports_bf16() -> bool:
    """True when this CPU runs bf16 convolutions natively (AVX512-BF16 or AMX), as oneDNN reports."""
    try:
        if not torch.backends.mkldnn.is_available() or not torch.ops.mkldnn._is_mkldnn_bf16_supported():
            return False
    except (AttributeError, RuntimeError):
        return False
    flags = ""
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo") as fh:
            flags = fh.read()
    # oneDNN also "supports" bf16 on plain AVX512 by emulation, which is slower than fp32
    return not flags or "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_precision(precision: str) -> str:
    """``"fp32"`` or ``"bf16"`` for ``precision`` in :data:`PRECISIONS` (``"auto"``: bf16 if native)."""
    if precision not in PRECISIONS:
        raise ParameterError(f"precision must be one of {list(PRECISIONS)}, got {precision!r}")
    if precision == "auto":
        return "bf16" if cpu_supports_bf16() else "fp32"
    return precision


def prepare_model(model: nn.Module, *, channels_last: bool = True, compile: bool = False) -> nn.Module:
    """``model`` set up for CPU inference: eval mode, optionally channels_last weights and ``torch.compile``.

    Converts ``model`` in place (and returns it, or its compiled wrapper). channels_last lets
    oneDNN skip reordering activations between convolutions.
    """
    model.eval()
    if channels_last:
        model.to(memory_format=torch.channels_last)
    if compile:
        model = torch.compile(model, dynamic=True)
    return model


def _is_channels_last(model: nn.Module) -> bool:
    for p in model.parameters():
        if p.dim() == 4:
            return p.is_contiguous(memory_format=torch.channels_last) and not p.is_contiguous()
    return False


def _n_mels_of(model: nn.Module) -> int:
    inner = getattr(model, "_orig_mod", model)
    return int(getattr(inner, "n_mels"))


# --- inference ---------------------------------------------------------------------------------
def predict_chunks(model: nn.Module, chunks: torch.Tensor | np.ndarray, *, precision: str = "fp32",
                   channels_last: bool | None = None) -> dict[str, np.ndarray]:
    """Run ``model`` on one batch ``[batch, n_mels, frames]``; per-chunk probabilities and embeddings (float32).

    Returns ``tag_probs [batch, n_tags]``, ``genre_probs [batch, n_genres]``, ``embedding [batch, d]``
    (unit vectors) and, for a model with a style block, ``stats [batch, style dim]`` (:mod:`mir.models.style`).
    Runs under ``torch.inference_mode()``; bf16 autocast when ``precision`` resolves to
    bf16; the heads' outputs are turned into probabilities in fp32.
    """
    x = torch.as_tensor(chunks, dtype=torch.float32)
    if x.dim() == 3:
        x = x.unsqueeze(1)
    if channels_last is None:
        channels_last = _is_channels_last(getattr(model, "_orig_mod", model))
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    autocast = (torch.autocast("cpu", dtype=torch.bfloat16) if resolve_precision(precision) == "bf16"
                else contextlib.nullcontext())
    with torch.inference_mode(), autocast:
        out = model(x)
    result = {
        "tag_probs": torch.sigmoid(out.tags.float()).numpy(),
        "genre_probs": torch.softmax(out.genre.float(), dim=-1).numpy(),
        "embedding": F.normalize(out.embedding.float(), dim=-1).numpy(),
    }
    if out.stats is not None:
        result["stats"] = out.stats.float().numpy()
    return result


def predict_logmels(
    model: nn.Module,
    mels: Sequence[np.ndarray],
    *,
    chunk_frames: int,
    n_chunks: int | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    precision: str = "fp32",
    channels_last: bool | None = None,
    fixed_batch: bool = True,
    context: np.ndarray | None = None,
    music_gate=None,
) -> dict[str, np.ndarray]:
    """Per-track predictions of ``model`` for the log-mels ``mels`` (chunk, batch, aggregate).

    Parameters
    ----------
    model : a tagger (:class:`~mir.models.ShortChunkCNN`, possibly prepared by :func:`prepare_model`);
        it is put in eval mode for the call and its previous mode restored afterwards
    mels : sequence of ``np.ndarray [shape=(n_mels, frames)]``, one per track (memory-mapped is fine)
    chunk_frames : chunk length in frames (``ModelConfig.chunk_frames``)
    n_chunks : chunks per track: ``None`` = all non-overlapping chunks, else at most this many,
        evenly spaced (see :func:`chunk_starts`)
    batch_size : chunks per forward pass, across tracks
    precision : ``"fp32"``, ``"bf16"`` (autocast) or ``"auto"`` (bf16 where the CPU runs it natively)
    channels_last : feed channels_last input; ``None`` = when the model's weights are channels_last
    fixed_batch : pad the last batch to ``batch_size`` chunks, for bit-reproducible results (see the
        module docstring); ``False`` saves the padding's compute when only a few chunks are run
    context : ``[n, CONTEXT_DIM]`` descriptors of the tracks (:func:`mir.models.track_head.track_context`);
        required when the model has a track head, whose outputs then replace the chunk means
    music_gate : the checkpoint's :class:`~mir.models.gate.MusicGate` (``LoadedModel.music_gate``), or None

    Returns
    -------
    dict with ``tag_probs [n, n_tags]``, ``genre_probs [n, n_genres]``, ``embedding [n, d]`` (float32,
    rows L2-normalised; the style embedding for a model with a style block) and ``n_chunks [n]``
    (int64), where ``n = len(mels)``; with a gate also
    ``music [n]`` (float32, probability that the track is music).
    """
    inner = getattr(model, "_orig_mod", model)
    head = getattr(inner, "track_head", None)
    if head is not None:
        context = _check_context(context, len(mels))
    per_chunk, counts = predict_chunk_outputs(model, mels, chunk_frames=chunk_frames, n_chunks=n_chunks,
                                              batch_size=batch_size, precision=precision,
                                              channels_last=channels_last, fixed_batch=fixed_batch)
    result = aggregate(per_chunk, counts)
    if head is not None:
        from .track_head import pool_chunks

        result.update(head.predict(pool_chunks(per_chunk, counts), context))
    if "stats" in result:  # a model with a style block indexes its style embedding
        result["embedding"] = inner.style.embed(result.pop("stats"))
    if music_gate is not None:
        from .gate import gate_features

        result["music"] = music_gate.probability(gate_features(per_chunk, counts))
    return result


def _check_context(context, n: int) -> np.ndarray:
    from .track_head import CONTEXT_DIM

    if context is None:
        raise ParameterError("this model has a track head: pass context=track_context(...) of the tracks' "
                             "descriptors (analyse them with `mir analyze`)")
    context = np.asarray(context, dtype=np.float32)
    if context.shape != (n, CONTEXT_DIM):
        raise ParameterError(f"context must have shape ({n}, {CONTEXT_DIM}) (one row per track), got {context.shape}")
    return context


def predict_chunk_outputs(
    model: nn.Module,
    mels: Sequence[np.ndarray],
    *,
    chunk_frames: int,
    n_chunks: int | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    precision: str = "fp32",
    channels_last: bool | None = None,
    fixed_batch: bool = True,
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Per-chunk outputs of ``model`` for ``mels`` before aggregation (arguments as :func:`predict_logmels`).

    Returns ``(per_chunk, counts)``: ``tag_probs``, ``genre_probs``, ``embedding`` (and ``stats`` for a
    model with a style block) with one row per
    chunk, grouped by track in track order, and ``counts[i]`` = chunks of track ``i``.
    """
    chunk_frames = _positive_int(chunk_frames, "chunk_frames")
    batch_size = _positive_int(batch_size, "batch_size")
    resolve_precision(precision)
    n_mels = _n_mels_of(model)
    check_mels(mels, n_mels)
    inner = getattr(model, "_orig_mod", model)
    if channels_last is None:
        channels_last = _is_channels_last(inner)
    starts = [chunk_starts(m.shape[1], chunk_frames, n_chunks) for m in mels]
    counts = np.array([len(s) for s in starts], dtype=np.int64)
    plan = [(i, s) for i, ss in enumerate(starts) for s in ss]  # (track, start) in track order
    n_tags, n_genres, d = inner.n_tags, inner.n_genres, inner.embed_dim
    per_chunk = {
        "tag_probs": np.empty((len(plan), n_tags), np.float32),
        "genre_probs": np.empty((len(plan), n_genres), np.float32),
        "embedding": np.empty((len(plan), d), np.float32),
    }
    if getattr(inner, "style", None) is not None:
        per_chunk["stats"] = np.empty((len(plan), inner.style.dim), np.float32)
    buf = np.empty((batch_size, n_mels, chunk_frames), dtype=np.float32)
    was_training = inner.training
    inner.eval()
    try:
        for b in range(0, len(plan), batch_size):
            batch = plan[b : b + batch_size]
            for j, (i, s) in enumerate(batch):
                cut_chunks(mels[i], np.array([s]), chunk_frames, out=buf[j : j + 1])
            size = batch_size if fixed_batch else len(batch)
            buf[len(batch) : size] = PAD_DB
            out = predict_chunks(model, buf[:size], precision=precision, channels_last=channels_last)
            for key, arr in per_chunk.items():
                arr[b : b + len(batch)] = out[key][: len(batch)]
    finally:
        inner.train(was_training)
    return per_chunk, counts


def aggregate(per_chunk: dict[str, np.ndarray], counts: np.ndarray) -> dict[str, np.ndarray]:
    """Per-track means of per-chunk outputs (rows grouped by track, ``counts[i]`` rows for track ``i``).

    Sums run in float64 in chunk order, so the result depends only on the chunk outputs.
    """
    counts = np.asarray(counts, dtype=np.int64)
    if len(counts) == 0:
        return {key: arr[:0].copy() for key, arr in per_chunk.items()} | {"n_chunks": counts}
    offsets = np.concatenate([[0], np.cumsum(counts)[:-1]])
    out = {key: (np.add.reduceat(arr.astype(np.float64), offsets, axis=0) / counts[:, None])
           for key, arr in per_chunk.items()}
    emb = out["embedding"]
    norms = np.linalg.norm(emb, axis=1, keepdims=True)
    out["embedding"] = emb / np.maximum(norms, 1e-12)
    result = {key: arr.astype(np.float32) for key, arr in out.items()}
    result["n_chunks"] = counts
    return result


def decide_tags(tag_probs: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Boolean ``[n, n_tags]``: ``tag_probs >= thresholds`` (the checkpoint's per-tag thresholds)."""
    tag_probs = np.asarray(tag_probs)
    thresholds = np.asarray(thresholds, dtype=np.float64)
    if tag_probs.shape[-1:] != thresholds.shape:
        raise ParameterError(f"thresholds have shape {thresholds.shape}, expected ({tag_probs.shape[-1]},)")
    return tag_probs.astype(np.float64) >= thresholds
