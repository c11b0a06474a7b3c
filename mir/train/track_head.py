"""Training the track-level head (:mod:`mir.models.track_head`) on a trained tagger's frozen backbone.

    from mir.train import prepare
    from mir.train.track_head import HeadConfig, train_track_head
    data = prepare(Library("LIB"), "labels.csv", splits="clips.parquet")
    result = train_track_head(data, "backbone.pt", "model.pt", config=HeadConfig(hidden=256))

The backbone runs once over every labelled track's non-overlapping chunks. Each epoch then pools
a random subset of every training track's chunks (all of them half of the time, so the head also
learns from what ``--chunks N`` tagging sees) and takes AdamW steps on the same loss the backbone
was trained with; a labels file with a ``weight`` column draws each track that many times per epoch
on average. Validation pools all chunks, as inference does; the best epoch by macro ROC-AUC
over tags and genres is kept (early stopping), thresholds are calibrated on the valid split, and
the whole model (backbone + head, a new model id) is written with
:func:`mir.models.save_checkpoint`. Seeded runs are reproducible. A run takes seconds to minutes,
so it is not resumable: run it again.
"""
from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from ..errors import LabelError, ParameterError
from ..models import build_model, load_checkpoint, save_checkpoint
from ..models.builders import TRACK_EMBEDDINGS
from ..models.inference import predict_chunk_outputs
from ..models.track_head import pool_chunks
from .evaluate import score_final
from .data import draw_order, train_weights
from .loop import ANALYSIS_KEYS, TrainingData, class_weights, robust_thresholds, tagging_loss, validation_scores


@dataclass(frozen=True)
class HeadConfig:
    """Hyper-parameters of a track-head run (stored in the checkpoint's ``extra``)."""

    hidden: int = 128
    epochs: int = 300
    patience: int = 40
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 1e-2
    dropout: float = 0.5
    full_share: float = 0.5  # share of training draws that pool all of a track's chunks
    embedding: str = "head"  # the model's track embedding: the head's hidden layer or the backbone's (see ModelConfig)
    seed: int = 0

    def __post_init__(self):
        for key in ("hidden", "epochs", "batch_size"):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ParameterError(f"{key} must be a positive int, got {v!r}")
        if isinstance(self.patience, bool) or not isinstance(self.patience, int) or self.patience < 0:
            raise ParameterError(f"patience must be an int ≥ 0, got {self.patience!r}")
        if self.embedding not in TRACK_EMBEDDINGS:
            raise ParameterError(f"embedding must be one of {TRACK_EMBEDDINGS}, got {self.embedding!r}")
        for key, lo, hi in (("lr", 0.0, math.inf), ("weight_decay", 0.0, math.inf), ("dropout", 0.0, 1.0),
                            ("full_share", 0.0, 1.0)):
            v = getattr(self, key)
            if not isinstance(v, (int, float)) or not (lo <= v <= hi) or (key == "lr" and v == 0) or (key == "dropout" and v == 1):
                raise ParameterError(f"{key} must be a number in [{lo}, {hi}], got {v!r}")


@dataclass
class HeadResult:
    path: Path
    model_id: str
    backbone_id: str
    best_epoch: int
    history: list[dict]
    metrics: dict[str, Any]
    seconds: float


def _draw(counts: np.ndarray, rng: np.random.Generator, full_share: float) -> tuple[np.ndarray, np.ndarray]:
    """Random chunk subsets: (row indices into the per-chunk arrays, chunks drawn per track)."""
    offsets = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rows, drawn = [], np.empty(len(counts), np.int64)
    for i, (o, n) in enumerate(zip(offsets, counts)):
        k = n if rng.random() < full_share else int(rng.integers(1, n + 1))
        pick = np.arange(n) if k == n else np.sort(rng.choice(n, size=k, replace=False))
        rows.append(o + pick)
        drawn[i] = k
    return np.concatenate(rows), drawn


def _subset(per_chunk: dict, counts: np.ndarray, index: np.ndarray) -> tuple[dict, np.ndarray]:
    """The chunks of tracks ``index`` (in that order)."""
    offsets = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rows = np.concatenate([np.arange(offsets[i], offsets[i] + counts[i]) for i in index]) if len(index) else np.zeros(0, int)
    return {k: v[rows] for k, v in per_chunk.items()}, counts[index]


def load_backbone(path: str | Path):
    """A trained tagger to put a head on: a checkpoint, or a running or finished training's
    ``<out>.last.pt`` state, whose best-by-validation weights so far are used (so a head can be tried on
    a long training before it ends; the state's epoch count is recorded)."""
    from ..models import LoadedModel, ModelConfig, model_id
    from .loop import load_state

    path = Path(path)
    if not path.name.endswith(".last.pt"):
        return load_checkpoint(path)
    state = load_state(path)
    config = ModelConfig.from_dict(state["model_config"])
    model = build_model(config)
    model.load_state_dict(state["best"]["state"])
    model.eval()
    from ..config import get_config

    a = dataclasses.asdict(get_config().analysis)
    return LoadedModel(
        model=model, config=config, tags=tuple(state["tags"]), genres=tuple(state["genres"]),
        thresholds=np.full(len(state["tags"]), 0.5), analysis={k: a[k] for k in ANALYSIS_KEYS},
        metrics={"best_epoch": state["best"]["epoch"], "epochs_run": state["epoch"], "history": state["history"]},
        extra={"train_config": state["train_config"], "training_state": str(path)},
        model_id=model_id(model.state_dict(), config), mir_version="", path=path)


def train_track_head(data: TrainingData, backbone: str | Path, out: str | Path, *, config: HeadConfig = HeadConfig(),
                     log: Callable[[str], None] | None = None) -> HeadResult:
    """Train a track head on ``backbone``'s frozen chunk outputs; write backbone + head to ``out``.

    ``backbone`` is a checkpoint or a training state (``<out>.last.pt``, see :func:`load_backbone`).
    ``data`` must carry descriptor contexts (:func:`mir.train.prepare` loads them when the tracks
    are analysed) and the backbone's vocabularies must equal the labels'.
    """
    say = log or (lambda line: None)
    t_start = time.monotonic()
    loaded = _checked_backbone(data, backbone)
    train_idx, valid_idx = data.index("train"), data.index("valid")
    if not len(train_idx):
        raise LabelError("no labelled track is in the train split")
    model, model_config = _with_head(loaded, config)
    head = model.track_head
    say(f"track head: backbone {loaded.model_id} runs over {len(data.labels)} tracks")
    per_chunk, counts = predict_chunk_outputs(model, data.bank.mels, chunk_frames=loaded.config.chunk_frames)
    pooled_all = pool_chunks(per_chunk, counts)  # every chunk of every track: what validation and test see
    head.set_standardisation(pooled_all[train_idx], data.context[train_idx])

    def predict(index):
        return head.predict(pooled_all[index], data.context[index])

    epochs = _HeadEpochs(head, data, _subset(per_chunk, counts, train_idx), train_idx, config)
    best, history = _fit_head(epochs, data.labels, valid_idx, predict, config, say)
    head.load_state_dict(best["state"])
    head.eval()
    thresholds, metrics = _head_metrics(data, predict, best, history, train_idx, valid_idx)
    extra = {"head_config": dataclasses.asdict(config), "backbone": loaded.model_id,
             "backbone_metrics": {k: loaded.metrics[k] for k in ("valid", "test", "best_epoch", "epochs_run")
                                 if k in loaded.metrics},
             "backbone_extra": loaded.extra, "labels": data.labels.source, "splits": data.splits_source,
             "n_tracks": data.counts()}
    mid = save_checkpoint(out, model, config=model_config, tags=data.labels.tags, genres=data.labels.genres,
                          thresholds=thresholds, metrics=metrics, analysis=loaded.analysis, extra=extra)
    return HeadResult(path=Path(out), model_id=mid, backbone_id=loaded.model_id, best_epoch=best["epoch"],
                      history=history, metrics=metrics, seconds=time.monotonic() - t_start)


def _checked_backbone(data: TrainingData, backbone: str | Path):
    """The backbone (:func:`load_backbone`), after checking that ``data`` can train a head on it."""
    if data.context is None:
        raise LabelError("the labelled tracks lack current descriptors (chroma, rhythm); run `mir analyze LIB` first")
    loaded = load_backbone(backbone)
    if tuple(loaded.tags) != tuple(data.labels.tags) or tuple(loaded.genres) != tuple(data.labels.genres):
        raise LabelError(f"{backbone}: the backbone's vocabularies differ from the labels' "
                         f"(tags {list(loaded.tags)[:4]}…, genres {list(loaded.genres)[:4]}…); train it on these labels")
    return loaded


def _with_head(loaded, config: HeadConfig):
    """``(model, its config)``: the backbone's weights plus a fresh head (seeded by ``config.seed``), in eval mode."""
    model_config = dataclasses.replace(loaded.config, track_hidden=config.hidden, track_embedding=config.embedding)
    torch.manual_seed(config.seed)
    model = build_model(model_config)
    backbone_state = {k: v for k, v in loaded.model.state_dict().items() if not k.startswith("track_head.")}
    model.load_state_dict(backbone_state, strict=False)
    model.track_head.dropout.p = config.dropout
    model.eval()
    return model, model_config


class _HeadEpochs:
    """Head training one epoch at a time: a random chunk subset pooled per training track, AdamW steps."""

    def __init__(self, head, data: TrainingData, train_chunks: tuple[dict, np.ndarray], train_idx: np.ndarray,
                 config: HeadConfig):
        labels = data.labels
        self.head, self.config, self.train_idx = head, config, train_idx
        self.chunks, self.counts = train_chunks
        self.pos_weight, self.genre_w = class_weights(labels, train_idx, "loss")
        self.y_tags = torch.from_numpy(labels.y_tags.astype(np.float32))
        self.y_genre = torch.from_numpy(labels.y_genre.astype(np.int64))
        self.optimizer = torch.optim.AdamW(head.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        self.weights = train_weights(labels, train_idx)  # the labels' weights: draws per epoch
        self.rng = np.random.default_rng(config.seed)
        self.ctx = torch.from_numpy(data.context[train_idx])

    def order(self) -> np.ndarray:
        """Positions in ``train_idx`` in the order one epoch visits them (each ``weight`` times on average)."""
        return draw_order(np.arange(len(self.train_idx)), self.weights, self.rng)

    def run(self) -> float:
        """Train one epoch; its mean loss."""
        self.head.train()
        rows, drawn = _draw(self.counts, self.rng, self.config.full_share)
        pooled = torch.from_numpy(pool_chunks({k: v[rows] for k, v in self.chunks.items()}, drawn))
        order = self.order()
        losses = []
        for b in range(0, len(order), self.config.batch_size):
            sel = order[b : b + self.config.batch_size]
            it = torch.from_numpy(self.train_idx[sel])
            output = self.head(pooled[sel], self.ctx[sel])
            loss = tagging_loss(output, self.y_tags[it], self.y_genre[it], pos_weight=self.pos_weight,
                                genre_weight_vec=self.genre_w)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            losses.append(float(loss.detach()))
        return float(np.mean(losses))


def _fit_head(epochs: _HeadEpochs, labels, valid_idx: np.ndarray, predict: Callable, config: HeadConfig,
              say: Callable[[str], None]) -> tuple[dict, list[dict]]:
    """Epochs until ``config.epochs`` or early stopping; the best ``{"score", "epoch", "state"}`` and the history."""
    head = epochs.head
    best = {"score": -math.inf, "epoch": 0, "state": None}
    history, bad = [], 0
    for epoch in range(1, config.epochs + 1):
        entry = {"epoch": epoch, "loss": epochs.run()}
        if len(valid_idx):
            scores = validation_scores(labels, valid_idx, predict(valid_idx))
            entry.update({f"val_{k}": v for k, v in scores.items()})
            score = scores["score"] if math.isfinite(scores["score"]) else -math.inf
        else:
            score = float(epoch)
        history.append(entry)
        if score > best["score"] + 1e-6:
            best, bad = {"score": score, "epoch": epoch, "state": {k: v.clone() for k, v in head.state_dict().items()}}, 0
        else:
            bad += 1
        if epoch == 1 or epoch % 10 == 0:
            say(f"epoch {epoch:3d}  loss {entry['loss']:.4f}" + (
                f"  val tags AUC {entry['val_tags_roc_auc']:.3f}  genre acc {entry['val_genre_accuracy']:.3f}"
                if "val_tags_roc_auc" in entry else ""))
        if config.patience and len(valid_idx) and bad >= config.patience:
            say(f"no improvement for {bad} epochs, stopping at epoch {epoch}")
            break
    return best, history


def _head_metrics(data: TrainingData, predict: Callable, best: dict, history: list[dict], train_idx: np.ndarray,
                  valid_idx: np.ndarray) -> tuple[np.ndarray, dict[str, Any]]:
    """Thresholds calibrated on valid (else train) and the checkpoint's metrics (valid or train, and test)."""
    labels = data.labels
    test_idx = data.index("test")
    calib_idx = valid_idx if len(valid_idx) else train_idx
    calib = predict(calib_idx)
    thresholds = robust_thresholds(labels.y_tags[calib_idx], calib["tag_probs"])
    metrics: dict[str, Any] = {"best_epoch": best["epoch"], "epochs_run": len(history), "history": history}
    metrics.update(score_final(labels, calib_idx, calib, test_idx, predict, thresholds=thresholds,
                               calib_name="valid" if len(valid_idx) else "train"))
    return thresholds, metrics
