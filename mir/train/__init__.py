"""Training and evaluating taggers on a library.

- :mod:`mir.train.data`: labels resolved to library tracks, splits, in-RAM log-mels, chunk sampling, augmentation
- :mod:`mir.train.loop`: :class:`TrainConfig`, :func:`prepare`, :func:`train` (resumable, reproducible)
- :mod:`mir.train.evaluate`: :func:`evaluate`, printed table, JSON and PNG report
- :mod:`mir.train.metrics`: ROC-AUC, PR-AUC, F1, accuracy, threshold calibration
"""
from .data import Augment, LabelSet, LabelWarning, LogmelBank, TrackResolver, hash_splits, load_splits, resolve_labels
from .evaluate import evaluate, format_table, score_predictions, write_report
from .loop import TrainConfig, TrainingData, TrainResult, history_path, last_path, load_state, prepare, train

__all__ = [
    "Augment", "LabelSet", "LabelWarning", "LogmelBank", "TrackResolver", "TrainConfig", "TrainResult",
    "TrainingData", "evaluate", "format_table", "hash_splits", "history_path", "last_path", "load_splits",
    "load_state", "prepare", "resolve_labels", "score_predictions", "train", "write_report",
]
