"""`mir train-gate`: fit a music/non-music gate on a model's chunk embeddings and store it with the model.

Data: a ``realmusic`` corpus (music tracks; ``mir dataset build realmusic``) against a ``nonmusic``
corpus (espeak speech, the realmusic packages' sound effects, silence, hum, noise; ``mir dataset
build nonmusic``), by their own ``train`` / ``valid`` / ``test`` splits (whole packages, voices).
Each clip goes through the model as ``mir tag`` sends a track (every non-overlapping chunk), at most
``max_seconds`` from its middle; its features are :func:`mir.models.gate.gate_features`. Every music
track also gives a short crop of 2–7 s (:func:`short_crops`), so that length does not tell music from
effects: most effects fit in one chunk, and a one-chunk clip has zero chunk spread.

Fit: scikit-learn's L2 logistic regression on standardised features, balanced class weights; the
inverse regularisation ``C`` with the best ``valid`` ROC-AUC is kept. The fitted numbers are copied
into a :class:`~mir.models.gate.MusicGate` (plain floats; no sklearn object is stored) and written
into a new checkpoint with the same weights, whose model id differs only through the gate.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ..errors import AudioError, ParameterError
from ..models.gate import GATE_KEY, MusicGate, gate_features

C_GRID = (0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0)
SHORT = (2.0, 7.0)  # seconds of the short music crops: the span of most sound effects
SPLITS = ("train", "valid", "test")


def corpus_clips(music_dir: str | os.PathLike, nonmusic_dir: str | os.PathLike, split: str) -> list[dict]:
    """Clips of ``split``: ``{"path", "duration", "music" (1/0), "kind"}``, music first, each in path order."""
    from ..datasets import nonmusic, realmusic

    if split not in SPLITS:
        raise ParameterError(f"split must be one of {SPLITS}, got {split!r}")
    music = sorted(realmusic.tracks(music_dir, split=split), key=lambda r: r["path"])
    other = sorted(nonmusic.clips(nonmusic_dir, split=split), key=lambda r: r["path"])
    whole = [{"path": r["path"], "duration": r["duration"], "music": 1, "kind": "music"} for r in music]
    return (whole + short_crops(whole)
            + [{"path": r["path"], "duration": r["duration"], "music": 0, "kind": r["kind"]} for r in other])


def short_crops(music: list[dict], *, low: float = SHORT[0], high: float = SHORT[1], seed: int = 0) -> list[dict]:
    """One short crop (``seconds`` in ``[low, high]``, from the middle) of every music clip, as music.

    Most sound effects are shorter than two chunks, and no soundtrack is: without short music the gate
    learns that a one-chunk clip (chunk spread zero) is not music, and calls every short song noise.
    """
    rng = np.random.default_rng(seed)
    lengths = rng.uniform(low, high, size=len(music))
    return [c | {"seconds": round(float(min(s, c["duration"])), 3), "crop": "short"} for c, s in zip(music, lengths)]


def clip_features(model, paths: Sequence[str], durations: Sequence[float], *, chunk_frames: int,
                  max_seconds: float = 60.0, on_clip: Callable[[], None] | None = None,
                  features: Callable[[dict, np.ndarray], np.ndarray] = gate_features,
                  width: int | None = None, lengths: Sequence[float] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Features of audio files (at most ``max_seconds`` from each file's middle), by default the gate's.

    ``features(per_chunk, counts)`` turns one file's chunk outputs into a ``[1, width]`` row
    (``width`` defaults to the gate's ``2·embed_dim``). Returns ``(features [k, width] float32,
    kept [k] int)``: indices of the files that decoded; a file mir refuses (silent, unreadable) is left out.
    ``lengths[i]``: at most this many seconds of file ``i`` (within ``max_seconds``).
    """
    from .. import audio
    from ..config import get_config
    from ..features import log_mel
    from ..models.inference import predict_chunk_outputs

    cfg = get_config().analysis
    rows, kept = [], []
    for i, (path, duration) in enumerate(zip(paths, durations)):
        seconds = min(float(duration), max_seconds if lengths is None else min(max_seconds, float(lengths[i])))
        try:
            y = audio.load(path, sr=cfg.sample_rate, offset=max(0.0, (float(duration) - seconds) / 2),
                           duration=seconds)
        except AudioError:
            continue
        mel = log_mel(y, sr=cfg.sample_rate, n_fft=cfg.n_fft, hop_length=cfg.hop_length, n_mels=cfg.n_mels,
                      fmin=cfg.fmin, fmax=cfg.fmax)
        per_chunk, counts = predict_chunk_outputs(model, [mel], chunk_frames=chunk_frames, fixed_batch=False)
        rows.append(features(per_chunk, counts)[0])
        kept.append(i)
        if on_clip is not None:
            on_clip()
    d = width or 2 * getattr(getattr(model, "_orig_mod", model), "embed_dim")
    return (np.asarray(rows, np.float32).reshape(-1, d), np.asarray(kept, np.int64))


def fit_gate(x: np.ndarray, y: np.ndarray, valid_x: np.ndarray, valid_y: np.ndarray, *,
             grid: Sequence[float] = C_GRID, seed: int = 0) -> tuple[MusicGate, dict]:
    """Logistic regression (balanced, standardised) with the ``C`` of ``grid`` that scores best on valid.

    Returns ``(gate, {"C": best C, "valid_auc": {C: AUC}})``.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    from .metrics import roc_auc

    x, valid_x = np.asarray(x, np.float64), np.asarray(valid_x, np.float64)
    y, valid_y = np.asarray(y).astype(int), np.asarray(valid_y).astype(int)
    for name, labels in (("train", y), ("valid", valid_y)):
        if set(np.unique(labels)) != {0, 1}:
            raise ParameterError(f"the {name} split needs both music and non-music clips, got labels {sorted(set(labels))}")
    scaler = StandardScaler().fit(x)
    scale = np.where(scaler.scale_ > 0, scaler.scale_, 1.0)
    z, zv = (x - scaler.mean_) / scale, (valid_x - scaler.mean_) / scale
    scores, fitted = {}, {}
    for c in grid:
        clf = LogisticRegression(C=c, class_weight="balanced", max_iter=5000, random_state=seed).fit(z, y)
        fitted[c] = clf
        scores[c] = roc_auc(valid_y, clf.decision_function(zv))
    best = max(grid, key=lambda c: (scores[c], -c))  # ties: the stronger regularisation
    clf = fitted[best]
    gate = MusicGate(mean=scaler.mean_.astype(np.float64), scale=scale.astype(np.float64),
                     coef=clf.coef_[0].astype(np.float64), intercept=float(clf.intercept_[0]))
    return gate, {"C": best, "valid_auc": {str(c): round(float(s), 4) for c, s in scores.items()}}


def write_gated(loaded, gate: MusicGate, out: str | os.PathLike, *, metrics: dict) -> str:
    """Save ``loaded``'s model with ``gate`` in ``extra`` (and ``metrics["music_gate"]``) to ``out``; the new id."""
    from ..models.checkpoint import save_checkpoint

    return save_checkpoint(out, loaded.model, config=loaded.config, tags=loaded.tags, genres=loaded.genres,
                           thresholds=loaded.thresholds, metrics={**loaded.metrics, "music_gate": metrics},
                           analysis=loaded.analysis, extra={**loaded.extra, GATE_KEY: gate.to_plain()})


def split_features(model, clips: list[dict], *, chunk_frames: int, max_seconds: float,
                   cache: Path | None = None, progress: bool = False) -> tuple[np.ndarray, np.ndarray, list[dict]]:
    """``(features, labels, kept clips)`` of ``clips``; read from / written to ``cache`` (``.npz``) when given."""
    paths = [c["path"] for c in clips]
    lengths = [float(c.get("seconds", max_seconds)) for c in clips]
    if cache is not None and cache.is_file():
        with np.load(cache) as z:
            if (list(z["paths"]) == paths and float(z["max_seconds"]) == max_seconds
                    and "lengths" in z and list(z["lengths"]) == lengths):
                kept = z["kept"]
                return z["features"], np.array([clips[i]["music"] for i in kept]), [clips[i] for i in kept]
    from tqdm import tqdm

    with tqdm(total=len(clips), disable=not progress, unit="clip") as bar:
        feats, kept = clip_features(model, paths, [c["duration"] for c in clips], chunk_frames=chunk_frames,
                                    max_seconds=max_seconds, on_clip=lambda: bar.update(),
                                    lengths=lengths)
    if cache is not None:
        from ..atomic import write_with

        def save(tmp):
            with open(tmp, "wb") as fh:
                np.savez(fh, paths=np.array(paths), kept=kept, features=feats, max_seconds=max_seconds,
                         lengths=np.array(lengths))

        write_with(cache, save)
    return feats, np.array([clips[i]["music"] for i in kept]), [clips[i] for i in kept]


def train_gate(music_dir, nonmusic_dir, model_path, out, *, max_seconds: float = 60.0,
               cache_dir: str | os.PathLike | None = None, progress: bool = False, seed: int = 0) -> dict:
    """Fit a gate for the checkpoint ``model_path`` and write the gated checkpoint to ``out``.

    Returns a report: model ids, clip counts, the chosen ``C``, valid and test ROC-AUC (also per
    non-music kind on test).
    """
    from ..models import load_checkpoint
    from ..models.inference import prepare_model
    from .metrics import roc_auc

    loaded = load_checkpoint(model_path)
    model = prepare_model(loaded.model)
    data = {}
    for split in SPLITS:
        clips = corpus_clips(music_dir, nonmusic_dir, split)
        cache = None if cache_dir is None else Path(cache_dir) / f"gate-{loaded.model_id}-{split}.npz"
        data[split] = split_features(model, clips, chunk_frames=loaded.config.chunk_frames, max_seconds=max_seconds,
                                     cache=cache, progress=progress)
    (x, y, _), (vx, vy, _), (tx, ty, tclips) = data["train"], data["valid"], data["test"]
    gate, fit = fit_gate(x, y, vx, vy, seed=seed)
    p_valid, p_test = gate.probability(vx), gate.probability(tx)
    kinds = np.array([str(c["kind"]) for c in tclips])
    report = {
        "base_model_id": loaded.model_id,
        "clips": {s: {"music": int(data[s][1].sum()), "nonmusic": int((data[s][1] == 0).sum())} for s in SPLITS},
        "max_seconds": max_seconds, "C": fit["C"], "valid_auc_by_C": fit["valid_auc"],
        "valid_auc": round(roc_auc(vy, p_valid), 4), "test_auc": round(roc_auc(ty, p_test), 4),
        "test_auc_per_kind": {str(k): round(roc_auc(ty[(kinds == k) | (ty == 1)], p_test[(kinds == k) | (ty == 1)]), 4)
                              for k in sorted(set(kinds[ty == 0]))},
        "short_music_seconds": list(SHORT),
    }
    report["model_id"] = write_gated(loaded, gate, out, metrics=report)
    return report
