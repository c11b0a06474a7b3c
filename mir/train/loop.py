"""Training a tagger on a library: chunk sampling, balanced losses, validation, early stopping, resume.

    from mir.catalog import Library
    from mir.train import TrainConfig, prepare, train
    data = prepare(Library("LIB"), "labels.csv", splits="clips.parquet")
    result = train(data, "model.pt", config=TrainConfig(model="fast", epochs=30, seed=0))

One epoch draws ``chunks_per_track`` random chunks (``chunk_frames`` frames, ≈ 3.7 s) from every
training track, augments them (:class:`~mir.train.data.Augment`), and takes AdamW steps on
``BCE(tags, pos_weight) + genre_weight · CE(genre, class weights)`` under a warm-up + cosine learning
rate. After every epoch the model is validated the way inference runs it (mean of chunk
probabilities over a track's non-overlapping chunks, :func:`mir.models.inference.predict_logmels`);
the score is the macro ROC-AUC over all tags and genres (genre one-vs-rest), which also drives early
stopping. The best epoch's weights are kept.

Every epoch writes ``<out>.last.pt`` atomically (model, optimizer, scheduler, epoch, RNG states,
best weights and score, history; all plain containers and tensors, readable with
``torch.load(weights_only=True)``) and ``<out>.history.json``. Running the same training again
resumes from it; so an interrupted run ends with exactly the weights of an uninterrupted one.
At the end, per-tag thresholds are calibrated (F1-optimal, :func:`robust_thresholds`) on the
validation split and the best model is written to ``out`` with :func:`mir.models.save_checkpoint`,
with the training history, validation metrics, and test metrics when there is a test split.

Threads: each parallel op waits for all of torch's threads, so on a shared CPU use the cores that
are free (:func:`suggest_threads`, what ``mir train`` does by default), not all of them.
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from .. import atomic
from ..errors import LabelError, ModelError, ParameterError
from ..models import ModelConfig, build_model, preset, save_checkpoint
from ..models.builders import PRESETS
from ..models.inference import predict_logmels, resolve_precision
from .data import (Augment, LabelSet, LabelWarning, LogmelBank, draw_order, hash_splits, load_splits, require_analysed,
                   resolve_labels, train_weights)
from .evaluate import score_final
from .metrics import MetricWarning, calibrate_thresholds

STATE_FORMAT = "mir.train-state"
STATE_VERSION = 1
BALANCE = ("loss", "sampling", "none")
ANALYSIS_KEYS = ("sample_rate", "n_fft", "hop_length", "n_mels", "fmin", "fmax")  # feature settings a checkpoint records


HEADS = ("tag_head", "genre_head")  # what a frozen-backbone run trains


# --- configuration -----------------------------------------------------------------------------
@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of one training run (stored in the checkpoint's ``extra``).

    ``epochs`` and ``patience`` may change between a run and its resumption (to train longer);
    everything else must match for a last checkpoint to be resumed.
    """

    model: str = "fast"  # preset: short_chunk, fast or debug
    epochs: int = 30
    batch_size: int = 32
    lr: float = 2e-3
    weight_decay: float = 1e-2
    warmup_epochs: float = 1.0
    chunks_per_track: int = 1  # random chunks per training track per epoch
    chunk_frames: int = 160  # training chunk length (≈ 3.7 s at 22,050 Hz, hop 512)
    patience: int = 8  # epochs without a better validation score before stopping; 0 = never
    balance: str = "loss"  # loss: pos_weight / class weights; sampling: genre-balanced draws; none
    genre_weight: float = 1.0
    augment: Augment = field(default_factory=Augment)
    seed: int = 0
    val_chunks: int | None = None  # chunks per validation track: None = all non-overlapping ones
    precision: str = "fp32"  # fp32, bf16 (autocast) or auto
    channels_last: bool = True
    freeze_backbone: bool = False  # train only the tag and genre heads (needs a base model's backbone)

    def __post_init__(self):
        if self.model not in PRESETS:
            raise ParameterError(f"unknown model preset {self.model!r}; choose one of {', '.join(PRESETS)}")
        if isinstance(self.augment, Mapping):
            object.__setattr__(self, "augment", Augment(**self.augment))
        for key in ("epochs", "batch_size", "chunks_per_track", "chunk_frames", "seed", "patience"):
            v = getattr(self, key)
            low = 0 if key in ("epochs", "seed", "patience") else 1
            if isinstance(v, bool) or not isinstance(v, int) or v < low:
                raise ParameterError(f"{key} must be an int ≥ {low}, got {v!r}")
        if self.batch_size < 2:
            raise ParameterError(f"batch_size must be ≥ 2 (batch norm needs two examples), got {self.batch_size}")
        for key in ("lr", "weight_decay", "warmup_epochs", "genre_weight"):
            v = getattr(self, key)
            if not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0 or (key == "lr" and v == 0):
                raise ParameterError(f"{key} must be a finite number ≥ 0 (lr > 0), got {v!r}")
        if self.balance not in BALANCE:
            raise ParameterError(f"balance must be one of {list(BALANCE)}, got {self.balance!r}")
        if self.val_chunks is not None and (isinstance(self.val_chunks, bool) or self.val_chunks < 1):
            raise ParameterError(f"val_chunks must be None or ≥ 1, got {self.val_chunks!r}")
        resolve_precision(self.precision)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["augment"] = self.augment.to_dict()
        return d

    def model_config(self, labels: LabelSet, n_mels: int) -> ModelConfig:
        return preset(self.model, n_tags=len(labels.tags), n_genres=len(labels.genres),
                      n_mels=n_mels, chunk_frames=self.chunk_frames)


def suggest_threads() -> int:
    """Torch threads for training on a shared CPU: the cores not already busy (1-minute load
    average), at least 1, at most torch's default.

    Measured on 2 cores with one other busy process: 1 thread trains the ``fast`` model at ≈ 70
    chunks/s, 2 threads at ≈ 15 (each parallel op waits for a descheduled thread); alone, 2 threads
    reach ≈ 400.
    """
    try:
        busy = os.getloadavg()[0]
    except OSError:  # pragma: no cover - no load average on this platform
        busy = 0.0
    free = (os.cpu_count() or 1) - int(round(busy))
    return max(1, min(torch.get_num_threads(), free))


# --- data --------------------------------------------------------------------------------------
@dataclass
class TrainingData:
    """Labelled tracks with their split and their log-mels in memory (rows aligned)."""

    labels: LabelSet
    split: np.ndarray  # [n] str: train / valid / test
    bank: LogmelBank
    splits_source: str  # a file path, or "hash" for the built-in 80/10/10 split
    context: np.ndarray | None = None  # [n, CONTEXT_DIM] descriptor contexts for a track head; None if not analysed

    def index(self, name: str) -> np.ndarray:
        return np.flatnonzero(self.split == name)

    def counts(self) -> dict[str, int]:
        return {s: int(np.sum(self.split == s)) for s in ("train", "valid", "test")}

    def fingerprint(self) -> str:
        h = hashlib.blake2b(digest_size=8)
        h.update(self.labels.fingerprint().encode())
        h.update("\0".join(self.split.tolist()).encode())
        return h.hexdigest()


def prepare(lib, labels_path: str | os.PathLike, *, splits: str | os.PathLike | None = None,
            progress: bool = False) -> TrainingData:
    """Resolve labels and splits against ``lib`` and load the needed log-mels into memory.

    Without ``splits`` tracks are split 80/10/10 by a hash of their content (with a
    :class:`LabelWarning`: excerpts of one work may land in different splits). Raises
    :class:`LabelError` when labelled tracks are not analysed yet, or no training track is left.
    """
    labels = resolve_labels(lib, labels_path)
    if splits is not None:
        split = load_splits(lib, splits, labels)
        source = str(splits)
    else:
        warnings.warn(
            "no --splits file: tracks are split 80/10/10 (train/valid/test) by a hash of their content; "
            "excerpts of the same work may land in different splits and inflate validation scores",
            LabelWarning, stacklevel=2,
        )
        split = hash_splits(labels.hashes)
        source = "hash"
    keep = split != ""
    labels, split = labels.subset(keep), split[keep]
    if not np.any(split == "train"):
        raise LabelError(f"no labelled track is in the train split ({source}); nothing to train on")
    require_analysed(lib, labels)
    bank = LogmelBank.load(lib, labels.hashes, progress=progress)
    return TrainingData(labels=labels, split=split, bank=bank, splits_source=source, context=_contexts(lib, labels))


def _contexts(lib, labels: LabelSet) -> np.ndarray | None:
    """Descriptor contexts of the labelled tracks (for a track head), or None when some lack descriptors."""
    from ..catalog.stages import stage_versions
    from ..errors import CatalogError
    from ..models.track_head import contexts_from_descriptors

    table = lib.stage_table("descriptors", stage_versions()["descriptors"])
    try:
        return contexts_from_descriptors(table, labels.hashes)
    except CatalogError:
        return None


# --- results -----------------------------------------------------------------------------------
@dataclass
class TrainResult:
    path: Path
    model_id: str
    history: list[dict]
    best_epoch: int
    metrics: dict[str, Any]
    thresholds: np.ndarray
    stopped_early: bool
    resumed_from: int  # epochs already done when this call started (0 = fresh)
    step_losses: list[float]  # training loss of each step taken by this call
    seconds: float


def last_path(out: str | os.PathLike) -> Path:
    """Where the resumable state of a training writing ``out`` lives: ``<out stem>.last.pt``."""
    out = Path(out)
    return out.with_name(out.stem + ".last.pt")


def history_path(out: str | os.PathLike) -> Path:
    out = Path(out)
    return out.with_name(out.stem + ".history.json")


# --- losses ------------------------------------------------------------------------------------
def class_weights(labels: LabelSet, index: np.ndarray, balance: str) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """``pos_weight [n_tags]`` (negatives / positives, clipped to [0.1, 10]) and genre CE weights
    ``[n_genres]`` (n / (k · count), 0 for absent genres), from the rows ``index``; ``None``s unless
    ``balance == "loss"``."""
    if balance != "loss":
        return None, None
    y = labels.y_tags[index]
    pos = y.sum(axis=0)
    neg = len(index) - pos
    pw = np.where(pos > 0, np.clip(neg / np.maximum(pos, 1), 0.1, 10.0), 1.0)
    g = labels.y_genre[index]
    g = g[g >= 0]
    counts = np.bincount(g, minlength=len(labels.genres)).astype(np.float64)
    present = counts > 0
    cw = np.zeros(len(labels.genres))
    if present.any():
        cw[present] = counts.sum() / (present.sum() * counts[present])
    return torch.tensor(pw, dtype=torch.float32), torch.tensor(cw, dtype=torch.float32)


def tagging_loss(out, y_tags: torch.Tensor, y_genre: torch.Tensor, *, pos_weight=None, genre_weight_vec=None,
                 genre_weight: float = 1.0) -> torch.Tensor:
    """``BCE(tag logits, y_tags; pos_weight) + genre_weight · CE(genre logits, y_genre; weights)``.

    ``y_genre`` is -1 for rows without a genre; they add nothing to the genre term.
    """
    loss = F.binary_cross_entropy_with_logits(out.tags.float(), y_tags, pos_weight=pos_weight)
    has = y_genre >= 0
    if genre_weight > 0 and bool(has.any()):
        ce = F.cross_entropy(out.genre.float()[has], y_genre[has], weight=genre_weight_vec)
        if torch.isfinite(ce):  # all weights zero for the genres in this batch: skip
            loss = loss + genre_weight * ce
    return loss


def _lr_lambda(warmup_steps: int, total_steps: int) -> Callable[[int], float]:
    def factor(step: int) -> float:
        if step < warmup_steps:
            return 0.1 + 0.9 * step / max(warmup_steps, 1)
        progress = min(1.0, (step - warmup_steps) / max(total_steps - warmup_steps, 1))
        return 0.01 + 0.99 * 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor


def robust_thresholds(y_true: np.ndarray, y_prob: np.ndarray) -> np.ndarray:
    """F1-optimal per-tag thresholds (:func:`calibrate_thresholds`), moved down to the midpoint
    between the chosen probability and the next lower one seen for that tag.

    Same decisions, so the same F1, on the calibration data; but a track whose probability was
    exactly the threshold is no longer one float rounding (float16 log-mels in training, float32
    at inference, another CPU) away from flipping. Tags without positives keep 0.5.
    """
    y_prob = np.asarray(y_prob, dtype=np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MetricWarning)  # tags without positives: reported by the caller
        thr = calibrate_thresholds(y_true, y_prob)
    has_pos = np.asarray(y_true).sum(axis=0) > 0
    for j in np.flatnonzero(has_pos):
        below = y_prob[:, j][y_prob[:, j] < thr[j]]
        thr[j] = 0.5 * (thr[j] + below.max()) if below.size else thr[j] / 2
    return thr


# --- validation --------------------------------------------------------------------------------
def predict_tracks(model: nn.Module, bank: LogmelBank, index: np.ndarray, *, chunk_frames: int,
                   n_chunks: int | None = None, precision: str = "fp32") -> dict[str, np.ndarray]:
    """Per-track predictions for rows ``index`` of ``bank``, aggregated as inference does."""
    return predict_logmels(model, [bank.mels[int(i)] for i in index], chunk_frames=chunk_frames,
                           n_chunks=n_chunks, precision=precision)


def per_column_roc_auc(labels: LabelSet, index: np.ndarray, preds: Mapping[str, np.ndarray]) -> np.ndarray:
    """ROC-AUC of every tag and every genre (one-vs-rest) on rows ``index``; NaN where one class only."""
    from .metrics import roc_auc_per_tag

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MetricWarning)
        cols = [roc_auc_per_tag(labels.y_tags[index], preds["tag_probs"])]
        g = labels.y_genre[index]
        has = g >= 0
        if has.sum() >= 2:
            onehot = np.eye(len(labels.genres), dtype=np.int8)[g[has]]
            cols.append(roc_auc_per_tag(onehot, preds["genre_probs"][has]))
    return np.concatenate(cols)


def validation_scores(labels: LabelSet, index: np.ndarray, preds: Mapping[str, np.ndarray]) -> dict[str, float]:
    """``score`` (macro ROC-AUC over tags and genres), ``tags_roc_auc``, ``genre_roc_auc``, ``genre_accuracy``."""
    aucs = per_column_roc_auc(labels, index, preds)
    n_tags = len(labels.tags)

    def nanmean(a):
        a = a[~np.isnan(a)]
        return float(a.mean()) if a.size else float("nan")

    g = labels.y_genre[index]
    has = g >= 0
    acc = float(np.mean(np.argmax(preds["genre_probs"][has], axis=1) == g[has])) if has.any() else float("nan")
    return {"score": nanmean(aucs), "tags_roc_auc": nanmean(aucs[:n_tags]), "genre_roc_auc": nanmean(aucs[n_tags:]),
            "genre_accuracy": acc}


# --- resumable state ---------------------------------------------------------------------------
def _clone_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _save_state(path: Path, payload: dict) -> None:
    with atomic.atomic_path(path) as tmp:
        torch.save(payload, tmp)


def load_state(path: str | os.PathLike) -> dict:
    """Read a ``.last.pt`` training state with ``weights_only=True``; :class:`ModelError` if unusable."""
    path = Path(path)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ModelError(f"{path}: cannot read training state ({type(exc).__name__}: {str(exc).splitlines()[0]}); "
                         "delete it to start afresh") from None
    if not isinstance(payload, dict) or payload.get("format") != STATE_FORMAT:
        raise ModelError(f"{path}: not a mir training state")
    if payload.get("format_version") != STATE_VERSION:
        raise ModelError(f"{path}: training state format {payload.get('format_version')!r}, this mir reads {STATE_VERSION}")
    return payload


def _fingerprint(data: TrainingData, config: TrainConfig, model_config: ModelConfig, base_id: str | None = None) -> str:
    cfg = config.to_dict()
    for volatile in ("epochs", "patience"):
        cfg.pop(volatile)
    if not cfg["freeze_backbone"]:
        del cfg["freeze_backbone"]  # runs that train the whole model keep the fingerprint they had
    about = {"data": data.fingerprint(), "train": cfg, "model": model_config.to_dict()}
    if base_id is not None:  # runs from scratch keep the fingerprint they had
        about["base"] = base_id
    blob = json.dumps(about, sort_keys=True)
    return hashlib.blake2b(blob.encode(), digest_size=8).hexdigest()


# --- the loop ----------------------------------------------------------------------------------
def warm_start(base: str | os.PathLike, model_config: ModelConfig, tags, genres) -> tuple[dict, str, list[str]]:
    """What a run on ``model_config`` takes from checkpoint ``base``: ``(weights, base model id, heads
    kept)``. The backbone always (its shape must match the preset's); the tag head and the genre head
    only where the base's vocabulary equals the labels' (names and order); a track head never."""
    from ..models import load_checkpoint

    loaded = load_checkpoint(base)
    mine, theirs = model_config, loaded.config
    if (mine.n_mels, tuple(mine.widths), mine.embed_dim) != (theirs.n_mels, tuple(theirs.widths), theirs.embed_dim):
        raise ModelError(f"{base}: its backbone (n_mels {theirs.n_mels}, widths {list(theirs.widths)}, embedding "
                         f"{theirs.embed_dim}) differs from the preset's (n_mels {mine.n_mels}, widths "
                         f"{list(mine.widths)}, embedding {mine.embed_dim}); choose the matching --preset")
    drop = {"track_head."}
    kept = []
    for head, same in (("tag_head.", list(loaded.tags) == list(tags)), ("genre_head.", list(loaded.genres) == list(genres))):
        if same:
            kept.append(head.split("_")[0])
        else:
            drop.add(head)
    state = {k: v for k, v in loaded.model.state_dict().items() if not any(k.startswith(d) for d in drop)}
    return state, loaded.model_id, kept


def init_model(model_config: ModelConfig, seed: int) -> nn.Module:
    """The untrained model a run with ``seed`` starts from (seeds torch's global RNG)."""
    torch.manual_seed(seed)
    return build_model(model_config)


def train(
    data: TrainingData,
    out: str | os.PathLike,
    *,
    config: TrainConfig = TrainConfig(),
    analysis: Mapping[str, Any] | None = None,
    resume: bool | None = None,
    progress: bool = False,
    log: Callable[[str], None] | None = None,
    on_epoch_end: Callable[[dict], None] | None = None,
    base: str | os.PathLike | None = None,
) -> TrainResult:
    """Train a tagger on ``data`` and write it to ``out``; return what happened.

    Parameters
    ----------
    data : from :func:`prepare`
    out : checkpoint to write (``.pt``); ``<stem>.last.pt`` and ``<stem>.history.json`` go beside it
    config : hyper-parameters (:class:`TrainConfig`)
    analysis : feature parameters of the log-mels (stored in the checkpoint; default: the
        engine's :class:`mir.config.AnalysisConfig`)
    resume : ``None`` resumes when ``<stem>.last.pt`` belongs to this same data and config (else
        starts afresh, warning); ``True`` requires such a state; ``False`` always starts afresh
    progress : show a tqdm bar with the running loss
    log : called with one line per epoch (e.g. ``print``)
    on_epoch_end : called with the epoch's history entry after its state is saved (tests use it
        to interrupt a run)
    base : a checkpoint to start from instead of random weights (:func:`warm_start`: its backbone, and
        its heads where the vocabularies match); part of what a resumed state must match
    """
    t_start = time.monotonic()
    say = log or (lambda msg: None)
    out = Path(out)
    model_config = config.model_config(data.labels, data.bank.n_mels)
    if config.freeze_backbone and base is None:
        raise ParameterError("freeze_backbone needs a base model whose backbone to keep (mir train --base MODEL)")
    start = None if base is None else warm_start(base, model_config, data.labels.tags, data.labels.genres)
    fingerprint = _fingerprint(data, config, model_config, None if start is None else start[1])
    train_idx, valid_idx = _check_splits(data)
    batches = _Batches(data, config, train_idx)
    steps_per_epoch = _steps_per_epoch(batches.n_tracks, config)
    run = _start_run(config, model_config, steps_per_epoch, None if start is None else start[0])
    if start is not None:
        say(f"starting from {base} (model {start[1]}): backbone" + " (frozen)" * config.freeze_backbone
            + "".join(f", {h} head" for h in start[2]))
    _resume(run, last_path(out), fingerprint, resume, say)
    start_epoch = run.epoch
    step_losses: list[float] = []
    while run.epoch < config.epochs and not run.stopped:
        t0 = time.monotonic()
        losses = _train_epoch(run, batches, config, steps_per_epoch, progress)
        step_losses.extend(losses)
        entry: dict[str, Any] = {"epoch": run.epoch + 1, "loss": float(np.mean(losses)) if losses else float("nan"),
                                 "lr": float(run.scheduler.get_last_lr()[0]),
                                 "train_seconds": round(time.monotonic() - t0, 2)}
        score = _validate(run, data, valid_idx, config, entry)
        _close_epoch(run, entry, score, config, t0=t0, validated=bool(len(valid_idx)))
        _save_progress(run, out, {"fingerprint": fingerprint, "model_config": model_config.to_dict(),
                                  "train_config": config.to_dict(), "tags": list(data.labels.tags),
                                  "genres": list(data.labels.genres)})
        say(_epoch_line(entry, config.epochs)
            + (f"; no improvement for {run.bad_epochs} epochs, stopping" if run.stopped else ""))
        if on_epoch_end is not None:
            on_epoch_end(entry)

    thresholds, metrics = _finish(run, data, config, valid_idx, train_idx)
    extra = {
        "train_config": config.to_dict(), "labels": data.labels.source, "splits": data.splits_source,
        "n_tracks": data.counts(), "fingerprint": fingerprint,
        **({} if start is None else {"base_model": start[1], "base_heads_kept": start[2]}),
        "train_seconds": float(sum(h.get("seconds", 0.0) for h in run.history)),
    }
    mid = save_checkpoint(out, run.model, config=model_config, tags=data.labels.tags, genres=data.labels.genres,
                          thresholds=thresholds, metrics=metrics, analysis=_analysis_settings(analysis), extra=extra)
    return TrainResult(path=out, model_id=mid, history=run.history, best_epoch=run.best["epoch"], metrics=metrics,
                       thresholds=thresholds, stopped_early=run.stopped, resumed_from=start_epoch,
                       step_losses=step_losses, seconds=time.monotonic() - t_start)


# --- stages of a run ---------------------------------------------------------------------------
@dataclass
class _Run:
    """What a run changes as it goes; :meth:`state` is what ``<out>.last.pt`` holds of it."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    rng: np.random.Generator
    best: dict  # {"state": weights, "score": validation score, "epoch": 1-based, 0 = none yet}
    history: list[dict] = field(default_factory=list)
    epoch: int = 0  # epochs done
    bad_epochs: int = 0  # epochs since the best one
    stopped: bool = False  # early stopping fired

    def state(self, about: Mapping[str, Any]) -> dict:
        """The resumable state, with ``about`` (fingerprint, configs, vocabularies) merged in."""
        return {
            "format": STATE_FORMAT, "format_version": STATE_VERSION, "fingerprint": about["fingerprint"],
            "epoch": self.epoch, "stopped": self.stopped, "bad_epochs": self.bad_epochs,
            "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(), "best": self.best, "history": self.history,
            "rng": {"numpy": json.dumps(self.rng.bit_generator.state), "torch": torch.get_rng_state()},
            **{k: about[k] for k in ("model_config", "train_config", "tags", "genres")},
        }

    def restore(self, state: Mapping[str, Any]) -> None:
        """Continue from a state written by :meth:`state` (RNGs included)."""
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        best = state["best"]
        self.best = {"state": best["state"], "score": float(best["score"]), "epoch": int(best["epoch"])}
        self.bad_epochs, self.epoch, self.stopped = int(state["bad_epochs"]), int(state["epoch"]), bool(state["stopped"])
        self.history = list(state["history"])
        self.rng.bit_generator.state = json.loads(state["rng"]["numpy"])
        torch.set_rng_state(state["rng"]["torch"])


def _analysis_settings(analysis: Mapping[str, Any] | None) -> dict[str, Any]:
    """The feature settings a checkpoint records (default: the engine's analysis config)."""
    if analysis is None:
        from ..config import get_config

        analysis = dataclasses.asdict(get_config().analysis)
    return {k: analysis[k] for k in ANALYSIS_KEYS if k in analysis}


def _check_splits(data: TrainingData) -> tuple[np.ndarray, np.ndarray]:
    """Rows of the train and valid splits; at least 2 training tracks, a warning without validation."""
    train_idx, valid_idx = data.index("train"), data.index("valid")
    if len(train_idx) < 2:
        raise LabelError(f"only {len(train_idx)} training track(s); need at least 2")
    if not len(valid_idx):
        warnings.warn("no validation tracks: no early stopping, and tag thresholds are calibrated on the "
                      "training split (optimistic)", LabelWarning, stacklevel=3)
    return train_idx, valid_idx


def _steps_per_epoch(n_train: int, config: TrainConfig) -> int:
    n_draws = n_train * config.chunks_per_track
    return max(1, n_draws // config.batch_size) if n_draws >= 2 else 1


def _start_run(config: TrainConfig, model_config: ModelConfig, steps_per_epoch: int, weights: dict | None = None) -> _Run:
    """A fresh run: seeded model (``weights`` loaded over it) and numpy RNG, AdamW, warm-up + cosine schedule."""
    model = init_model(model_config, config.seed)
    if weights is not None:
        model.load_state_dict(weights, strict=False)
    rng = np.random.default_rng(config.seed)
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if config.freeze_backbone:
        for name, p in model.named_parameters():
            p.requires_grad_(name.startswith(HEADS))
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=config.lr,
                                  weight_decay=config.weight_decay)
    warmup = int(round(config.warmup_epochs * steps_per_epoch))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(warmup, config.epochs * steps_per_epoch))
    return _Run(model, optimizer, scheduler, rng, best={"state": _clone_state(model), "score": -math.inf, "epoch": 0})


def _resume(run: _Run, state_file: Path, fingerprint: str, resume: bool | None, say: Callable[[str], None]) -> None:
    """Continue ``run`` from ``state_file`` when it belongs to this training (see :func:`train`'s ``resume``)."""
    if resume is not False and state_file.exists():
        state = load_state(state_file)
        if state.get("fingerprint") != fingerprint:
            msg = (f"{state_file} was written by a training with other labels, splits or settings "
                   "(only --epochs and --patience may change)")
            if resume:
                raise ModelError(msg + "; delete it, or run without --resume to start afresh")
            warnings.warn(msg + "; starting afresh and overwriting it", LabelWarning, stacklevel=3)
            return
        run.restore(state)
        say(f"resuming from {state_file} after epoch {run.epoch}" + (" (stopped early)" if run.stopped else ""))
    elif resume:
        raise ModelError(f"nothing to resume: {state_file} does not exist")


class _Batches:
    """Training batches: which rows an epoch draws, and the loss of one augmented chunk batch."""

    def __init__(self, data: TrainingData, config: TrainConfig, train_idx: np.ndarray):
        labels = data.labels
        self.bank, self.config, self.train_idx = data.bank, config, train_idx
        self.pos_weight, self.genre_w = class_weights(labels, train_idx, config.balance)
        self.weights = train_weights(labels, train_idx)
        # tracks one epoch draws (each chunks_per_track times): with weights, their expected number
        self.n_tracks = len(train_idx) if self.weights is None else max(1, int(round(self.weights.sum())))
        self.sample_p = _genre_balanced_p(labels.y_genre[train_idx], len(labels.genres)) \
            if config.balance == "sampling" else None
        if self.sample_p is not None and self.weights is not None:  # the labels' weights on top of genre balance
            p = self.sample_p * self.weights
            self.sample_p = p / p.sum()
        self.autocast = (torch.autocast("cpu", dtype=torch.bfloat16) if resolve_precision(config.precision) == "bf16"
                         else contextlib.nullcontext())
        self.y_tags, self.y_genre = torch.from_numpy(labels.y_tags), torch.from_numpy(labels.y_genre)
        self.buf = np.empty((config.batch_size, data.bank.n_mels, config.chunk_frames), dtype=np.float32)

    def order(self, rng: np.random.Generator) -> np.ndarray:
        """Training rows in the order one epoch visits them (``chunks_per_track`` draws per track, times
        the track's weight when the labels have weights)."""
        if self.sample_p is None:
            return draw_order(self.train_idx, self.weights, rng, repeats=self.config.chunks_per_track)
        return rng.choice(self.train_idx, size=self.n_tracks * self.config.chunks_per_track, p=self.sample_p)

    def loss(self, model: nn.Module, idx: np.ndarray, rng: np.random.Generator) -> torch.Tensor:
        """Loss of random augmented chunks of rows ``idx``."""
        c = self.config
        starts = self.bank.random_starts(idx, c.chunk_frames, rng, shift=c.augment.shift)
        x = self.bank.chunks(idx, starts, c.chunk_frames, out=self.buf[: len(idx)])
        c.augment(x, rng)
        xt = torch.from_numpy(x).unsqueeze(1)
        if c.channels_last:
            xt = xt.contiguous(memory_format=torch.channels_last)
        it = torch.from_numpy(idx)
        with self.autocast:
            output = model(xt)
        return tagging_loss(output, self.y_tags[it], self.y_genre[it], pos_weight=self.pos_weight,
                            genre_weight_vec=self.genre_w, genre_weight=c.genre_weight)


def _genre_balanced_p(g: np.ndarray, n_genres: int) -> np.ndarray:
    """Draw probabilities giving every genre equal weight (rows without a genre: the mean genre's)."""
    counts = np.bincount(g[g >= 0], minlength=n_genres).astype(np.float64)
    w = np.where(g >= 0, 1.0 / np.maximum(counts[np.maximum(g, 0)], 1), 1.0 / max(counts.mean(), 1))
    return w / w.sum()


def _train_epoch(run: _Run, batches: _Batches, config: TrainConfig, steps_per_epoch: int,
                 progress: bool) -> list[float]:
    """One epoch of AdamW steps (gradients clipped to norm 5); the loss of each step."""
    from tqdm import tqdm

    run.model.train()
    if config.freeze_backbone:  # its batch-norm statistics stay the base's
        for name, module in run.model.named_children():
            if not name.startswith(HEADS + ("dropout",)):
                module.eval()
    order = batches.order(run.rng)
    losses: list[float] = []
    bar = tqdm(range(steps_per_epoch), desc=f"epoch {run.epoch + 1}/{config.epochs}", unit="step",
               disable=not progress, leave=False, dynamic_ncols=True)
    for step in bar:
        idx = order[step * config.batch_size : (step + 1) * config.batch_size]
        if len(idx) < 2:
            break
        loss = batches.loss(run.model, idx, run.rng)
        run.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(run.model.parameters(), 5.0)
        run.optimizer.step()
        run.scheduler.step()
        losses.append(float(loss.detach()))
        bar.set_postfix(loss=f"{np.mean(losses[-20:]):.4f}", lr=f"{run.scheduler.get_last_lr()[0]:.2e}")
    bar.close()
    return losses


def _validate(run: _Run, data: TrainingData, valid_idx: np.ndarray, config: TrainConfig, entry: dict) -> float:
    """The score early stopping compares (``val_*`` scores go into ``entry``); without validation
    tracks the epoch number, so the last epoch is the best."""
    if not len(valid_idx):
        return float(run.epoch)
    preds = predict_tracks(run.model, data.bank, valid_idx, chunk_frames=config.chunk_frames,
                           n_chunks=config.val_chunks, precision=config.precision)
    scores = validation_scores(data.labels, valid_idx, preds)
    entry.update({f"val_{k}": v for k, v in scores.items()})
    return scores["score"] if math.isfinite(scores["score"]) else -math.inf


def _close_epoch(run: _Run, entry: dict, score: float, config: TrainConfig, *, t0: float, validated: bool) -> None:
    """Keep the best weights, count epochs without improvement, decide on early stopping."""
    improved = False
    if score > run.best["score"] + 1e-6 or run.best["epoch"] == 0:
        run.best = {"state": _clone_state(run.model), "score": score, "epoch": run.epoch + 1}
        run.bad_epochs, improved = 0, True
    else:
        run.bad_epochs += 1
    entry["seconds"] = round(time.monotonic() - t0, 2)
    entry["best"] = improved
    run.history.append(entry)
    run.epoch += 1
    if config.patience and validated and run.bad_epochs >= config.patience and run.epoch < config.epochs:
        run.stopped = True


def _save_progress(run: _Run, out: Path, about: Mapping[str, Any]) -> None:
    """Write ``<out>.last.pt`` and ``<out>.history.json`` (atomically)."""
    _save_state(last_path(out), run.state(about))
    atomic.write_text(history_path(out), json.dumps(run.history, indent=1))


def _finish(run: _Run, data: TrainingData, config: TrainConfig, valid_idx: np.ndarray,
            train_idx: np.ndarray) -> tuple[np.ndarray, dict[str, Any]]:
    """Load the best weights; calibrate thresholds on valid (else train); score valid and test."""
    labels = data.labels
    run.model.load_state_dict(run.best["state"])

    def predict(index):
        return predict_tracks(run.model, data.bank, index, chunk_frames=config.chunk_frames,
                              n_chunks=config.val_chunks, precision=config.precision)

    calib_idx = valid_idx if len(valid_idx) else train_idx
    calib = predict(calib_idx)
    thresholds = robust_thresholds(labels.y_tags[calib_idx], calib["tag_probs"])
    absent = [labels.tags[j] for j in np.flatnonzero(labels.y_tags[calib_idx].sum(axis=0) == 0)]
    if absent:
        warnings.warn(f"{len(absent)} tag(s) have no positive in the validation split and keep the default "
                      f"threshold 0.5: {absent[:5]}", LabelWarning, stacklevel=3)
    metrics: dict[str, Any] = {"best_epoch": run.best["epoch"], "epochs_run": run.epoch, "stopped_early": run.stopped,
                               "history": run.history}
    test_idx = data.index("test")
    metrics.update(score_final(labels, calib_idx, calib, test_idx, predict, thresholds=thresholds,
                               calib_name="valid" if len(valid_idx) else "train"))
    return thresholds, metrics


def _epoch_line(e: Mapping[str, Any], epochs: int) -> str:
    s = f"epoch {e['epoch']:3d}/{epochs}  loss {e['loss']:.4f}  lr {e['lr']:.2e}"
    if "val_score" in e:
        s += (f"  val auc {e['val_score']:.4f} (tags {e['val_tags_roc_auc']:.4f}, genre {e['val_genre_roc_auc']:.4f})"
              f"  genre acc {e['val_genre_accuracy']:.3f}")
    s += f"  {e['seconds']:.1f} s" + ("  *" if e.get("best") else "")
    return s
