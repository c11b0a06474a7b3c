"""One audio file through a model: decoded, described, embedded, its tags decided, its music
probability given (nothing added to any catalogue). Serves ``mir tag FILE…``, ``mir similar --audio``
and the API's uploads."""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class FileAnalysis:
    """What one file gives: its length, descriptors (tempo, key, mode, …), the model's outputs,
    the decided tags (most probable first) and the music gate's probability (None without a gate)."""

    duration: float
    descriptors: dict
    tag_probs: np.ndarray  # [n_tags]
    genre_probs: np.ndarray  # [n_genres]
    embedding: np.ndarray  # [embed_dim]
    tags: list
    music: float | None = None


def describe_file(path: str | os.PathLike, *, cfg=None) -> tuple[float, np.ndarray, dict]:
    """``(duration in seconds, log-mel, descriptors)`` of an audio file, with the analysis settings
    ``cfg`` (an :class:`~mir.config.AnalysisConfig`; default: the configured ones)."""
    from .. import audio
    from ..config import get_config
    from ..features import describe_with_logmel

    cfg = cfg or get_config().analysis
    y = audio.load(path, sr=cfg.sample_rate)
    mel, desc = describe_with_logmel(y, sr=cfg.sample_rate, n_fft=cfg.n_fft, hop_length=cfg.hop_length,
                                     n_mels=cfg.n_mels, fmin=cfg.fmin, fmax=cfg.fmax)
    return len(y) / cfg.sample_rate, mel, desc


def run_tagger(loaded, mel: np.ndarray, desc: dict, *, duration: float, model=None) -> FileAnalysis:
    """The model of ``loaded`` (a :class:`~mir.models.LoadedModel`) on one track's log-mel and
    descriptors; ``model``: its prepared module (default: :func:`~mir.models.inference.prepare_model`)."""
    from .decisions import Measured, decide
    from .inference import predict_logmels, prepare_model
    from .track_head import context_of

    model = prepare_model(loaded.model) if model is None else model
    out = predict_logmels(model, [mel], chunk_frames=loaded.config.chunk_frames,
                          context=context_of(desc) if loaded.model.track_head is not None else None,
                          music_gate=loaded.music_gate)
    probs = out["tag_probs"][0]
    decided = decide(probs[None, :], loaded.thresholds, list(loaded.tags), measured=[Measured.from_descriptors(desc)])
    return FileAnalysis(duration=duration, descriptors=desc, tag_probs=probs, genre_probs=out["genre_probs"][0],
                        embedding=out["embedding"][0], tags=decided[0].tags,
                        music=float(out["music"][0]) if "music" in out else None)


def analyse_file(loaded, path: str | os.PathLike, *, model=None) -> FileAnalysis:
    """:func:`describe_file` then :func:`run_tagger`."""
    duration, mel, desc = describe_file(path)
    return run_tagger(loaded, mel, desc, duration=duration, model=model)
