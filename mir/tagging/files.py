"""Tagging audio files outside a library: decode → log-mel → model → per-track outputs."""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Iterator, Sequence

import numpy as np

from ..config import AnalysisConfig, get_config
from ..models.inference import DEFAULT_BATCH_SIZE, predict_logmels
from .job import GROUP_CHUNKS


def predict_files(model, paths: Sequence[str | os.PathLike], *, chunk_frames: int, n_chunks: int | None = None,
                  batch_size: int = DEFAULT_BATCH_SIZE, precision: str = "fp32", prefetch: int = 1,
                  cfg: AnalysisConfig | None = None, music_gate=None) -> dict[str, np.ndarray]:
    """Decode → log-mel → model → per-track aggregation for audio files (no library needed).

    Decoding and log-mels of the next file run in a background thread (``prefetch`` files ahead;
    0 = serially) while the model runs. ``music_gate`` (``LoadedModel.music_gate``): also return ``music``.
    Returns what :func:`~mir.models.inference.predict_logmels`
    returns, one row per path. Raises the :class:`~mir.errors.AudioError` of an unreadable file.
    """
    from .. import audio
    from ..features import describe_with_logmel, log_mel
    from ..models.track_head import CONTEXT_DIM, context_of

    cfg = cfg or get_config().analysis
    params = dict(sr=cfg.sample_rate, n_fft=cfg.n_fft, hop_length=cfg.hop_length, n_mels=cfg.n_mels,
                  fmin=cfg.fmin, fmax=cfg.fmax)
    with_context = getattr(getattr(model, "_orig_mod", model), "track_head", None) is not None

    def mel_of(path):
        y = audio.load(path, sr=cfg.sample_rate)
        if not with_context:
            return log_mel(y, **params), None
        mel, desc = describe_with_logmel(y, **params, include=("tempo", "key"))  # what the track head needs
        return mel, context_of(desc)[0]

    paths = list(paths)
    if not paths:
        return predict_logmels(model, [], chunk_frames=chunk_frames, batch_size=batch_size, precision=precision,
                               context=np.zeros((0, CONTEXT_DIM)) if with_context else None, music_gate=music_gate)
    group: list[tuple] = []
    results = []

    def run(items):
        results.append(predict_logmels(model, [m for m, _ in items], chunk_frames=chunk_frames, n_chunks=n_chunks,
                                       batch_size=batch_size, precision=precision,
                                       context=np.stack([c for _, c in items]) if with_context else None,
                                       music_gate=music_gate))

    # group files so batches stay full: about GROUP_CHUNKS chunks per forward group
    target = max(batch_size, GROUP_CHUNKS // 2)
    size = 0
    if prefetch <= 0:
        mel_iter = map(mel_of, paths)
    else:
        pool = ThreadPoolExecutor(1, thread_name_prefix="mir-decode")
        mel_iter = _prefetched(pool, mel_of, paths, prefetch)
    try:
        for mel, context in mel_iter:
            group.append((mel, context))
            size += max(1, mel.shape[1] // chunk_frames) if n_chunks is None else n_chunks
            if size >= target:
                run(group)
                group, size = [], 0
        if group:
            run(group)
    finally:
        if prefetch > 0:
            pool.shutdown(cancel_futures=True)
    return {k: np.concatenate([r[k] for r in results]) for k in results[0]}


def _prefetched(pool: ThreadPoolExecutor, fn, items: list, ahead: int) -> Iterator:
    futures = [pool.submit(fn, x) for x in items[: ahead + 1]]
    for i in range(len(items)):
        fut = futures[i]
        if i + ahead + 1 < len(items):
            futures.append(pool.submit(fn, items[i + ahead + 1]))
        yield fut.result()


def tag_files(paths: Sequence[str | os.PathLike], *, model: str | os.PathLike | None = None,
              cfg: AnalysisConfig | None = None) -> list[dict]:
    """Tags, genre, BPM, key and music probability of audio files outside a library (``mir tag FILE…``),
    one at a time.

    ``model``: a checkpoint file (default: the packaged model). Returns one dict per path: ``path``,
    ``genre``, ``genre_prob``, ``tags`` (decided as in a library, see :mod:`mir.models.decisions`),
    ``tag_probs``, ``bpm``, ``key``, ``mode``, ``key_confidence``, ``music`` (the music gate's
    probability; None for a model without a gate), ``model_id``, ``error`` (the message of a file that
    could not be read, whose other fields are None).
    """
    from ..errors import MirError
    from ..models import load_checkpoint
    from ..models.audio_file import describe_file, run_tagger
    from ..models.checkpoint import default_checkpoint
    from ..models.inference import prepare_model

    cfg = cfg or get_config().analysis
    loaded = load_checkpoint(model if model is not None else default_checkpoint())
    loaded.check_analysis(cfg)
    net = prepare_model(loaded.model)
    out = []
    for path in paths:
        row = dict.fromkeys(("genre", "genre_prob", "tags", "tag_probs", "bpm", "key", "mode", "key_confidence",
                             "music", "error"))
        row.update(path=os.fspath(path), model_id=loaded.model_id)
        try:
            duration, mel, desc = describe_file(path, cfg=cfg)
        except MirError as exc:
            row["error"] = str(exc)
            out.append(row)
            continue
        a = run_tagger(loaded, mel, desc, duration=duration, model=net)
        best = int(np.argmax(a.genre_probs))
        row.update(genre=loaded.genres[best], genre_prob=round(float(a.genre_probs[best]), 4), tags=a.tags,
                   tag_probs={t: round(float(p), 4) for t, p in zip(loaded.tags, a.tag_probs)},
                   bpm=round(float(desc["tempo"]), 1) or None, key=desc["key"], mode=desc["mode"],
                   key_confidence=round(float(desc["key_confidence"]), 3),
                   music=None if a.music is None else round(a.music, 4))
        out.append(row)
    return out
