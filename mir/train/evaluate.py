"""Evaluating a trained tagger on labelled library tracks: scores, a printed table, JSON and PNG plots.

    from mir.train.evaluate import evaluate, write_report, format_table
    report = evaluate(Library("LIB"), "model.pt", "labels.csv", splits="clips.parquet", split="test")
    print(format_table(report))
    write_report(report, "eval/")      # eval/metrics.json, eval/roc_auc_per_tag.png, eval/confusion_matrix.png

Predictions are made exactly as inference makes them (:func:`mir.models.inference.predict_logmels`:
mean of chunk probabilities over a track's chunks); tag decisions use the checkpoint's calibrated
per-tag thresholds. Scores come from :func:`mir.train.metrics.evaluate_tagging`.
"""
from __future__ import annotations

import json
import math
import os
import warnings
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from .. import atomic
from ..errors import LabelError, ParameterError
from .data import LabelSet, LabelWarning, hash_splits, load_splits, require_analysed, resolve_labels
from .metrics import MetricWarning, evaluate_tagging

SPLIT_CHOICES = ("train", "valid", "test", "all")


def score_predictions(labels: LabelSet, index: np.ndarray, preds: Mapping[str, np.ndarray], *,
                      thresholds=None) -> dict[str, Any]:
    """:func:`evaluate_tagging` scores of per-track predictions for rows ``index`` of ``labels``.

    Tag scores use every row; genre scores use the rows that have a genre label. Adds ``n_tracks``
    and ``genre/n_tracks``, and, when the genres have a coarser top level (``folk/jig`` -> ``folk``,
    or flat ``mirdemo`` names), ``genre_top/accuracy``, ``genre_top/balanced_accuracy`` and
    ``genre_top/names`` (:func:`top_level_scores`).
    """
    index = np.asarray(index)
    scores = evaluate_tagging(labels.y_tags[index], preds["tag_probs"], tag_names=labels.tags,
                              thresholds=thresholds)
    scores["n_tracks"] = int(len(index))
    g = labels.y_genre[index]
    has = g >= 0
    if has.any():
        gscores = evaluate_tagging(labels.y_tags[index][has], preds["tag_probs"][has], g[has],
                                   preds["genre_probs"][has], labels.tags, labels.genres, thresholds=thresholds)
        scores.update({k: v for k, v in gscores.items() if k.startswith("genre/")})
        scores["genre/n_tracks"] = int(has.sum())
        scores.update(top_level_scores(g[has], preds["genre_probs"][has], labels.genres))
    return scores


def top_level_scores(y_genre: np.ndarray, genre_probs: np.ndarray, genres) -> dict[str, Any]:
    """Genre accuracy at the top level of a two-level taxonomy: true and predicted genres both mapped
    to their top (``folk/jig`` -> ``folk``; a flat name of the ``mirdemo`` collection, as models trained
    on its version 1 predict, -> its top). Empty when no genre has a coarser top."""
    from ..catalog.labels import genre_top
    from ..datasets import GENRE_OF_LEAF

    tops_of_leaf = {leaf: genre_top(g) for leaf, g in GENRE_OF_LEAF.items()}
    tops = [genre_top(g, tops_of_leaf) for g in genres]
    if tops == list(genres) or not len(y_genre):
        return {}
    names = sorted(set(tops))
    index = {t: i for i, t in enumerate(names)}
    top_idx = np.array([index[t] for t in tops])
    true, pred = top_idx[np.asarray(y_genre)], top_idx[np.argmax(genre_probs, axis=1)]
    recalls = [float(np.mean(pred[true == k] == k)) for k in range(len(names)) if np.any(true == k)]
    return {"genre_top/accuracy": float(np.mean(true == pred)), "genre_top/balanced_accuracy": float(np.mean(recalls)),
            "genre_top/names": names}


def score_final(labels: LabelSet, calib_idx: np.ndarray, calib: Mapping[str, np.ndarray], test_idx: np.ndarray,
                predict, *, thresholds, calib_name: str) -> dict[str, dict[str, Any]]:
    """A finished run's scores: ``{calib_name: scores of the rows the thresholds were calibrated on,
    "test": scores of the test rows}`` (no ``test`` when it has none; ``predict(index)`` gives their
    predictions). Degenerate tags are not warned about again (their thresholds were)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MetricWarning)
        out = {calib_name: score_predictions(labels, calib_idx, calib, thresholds=thresholds)}
        if len(test_idx):
            out["test"] = score_predictions(labels, test_idx, predict(test_idx), thresholds=thresholds)
    return out


def evaluate(
    lib,
    model: str | os.PathLike,
    labels_path: str | os.PathLike,
    *,
    splits: str | os.PathLike | None = None,
    split: str = "test",
    n_chunks: int | None = None,
    precision: str = "fp32",
    batch_size: int | None = None,
    analysis=None,
) -> dict[str, Any]:
    """Scores of the checkpoint ``model`` on the ``split`` tracks of ``labels_path``.

    ``split`` is ``train``, ``valid``, ``test`` or ``all``; tracks get their split from ``splits``
    (CSV/Parquet with ``track,split``) or, without it, the same content-hash split training uses.
    A label genre outside the model's genres is read as the model genre with the same leaf
    (``folk/jig`` for a model trained on flat ``jig``, and the other way round), so a model is scored at
    the granularity it was trained on; :func:`top_level_scores` adds the top level. Other labels
    outside the model's vocabularies are ignored (warned). Returns the
    :func:`score_predictions` dict plus ``model_id``, ``model``, ``split``, ``labels`` and
    ``thresholds`` (per tag).
    """
    from ..models import load_checkpoint
    from ..models.inference import DEFAULT_BATCH_SIZE, predict_logmels

    if split not in SPLIT_CHOICES:
        raise ParameterError(f"split must be one of {list(SPLIT_CHOICES)}, got {split!r}")
    loaded = load_checkpoint(model)
    if analysis is None:
        from ..config import get_config

        analysis = get_config().analysis
    loaded.check_analysis(analysis)
    from ..catalog.labels import align_genres, load_labels

    alias = align_genres(set(load_labels(labels_path)["genre"]), loaded.genres)
    labels = resolve_labels(lib, labels_path, tags=loaded.tags, genres=loaded.genres, genre_alias=alias)
    if split != "all":
        if splits is not None:
            which = load_splits(lib, splits, labels)
        else:
            warnings.warn("no --splits file: using the content-hash 80/10/10 split training uses without one",
                          LabelWarning, stacklevel=2)
            which = hash_splits(labels.hashes)
        labels = labels.subset(which == split)
        if not len(labels):
            raise LabelError(f"no labelled track is in the {split!r} split")
    require_analysed(lib, labels)
    from ..catalog import stage_versions

    version = stage_versions()["logmel"]
    mels = [lib.arrays.load("logmel", version, h, mmap=True) for h in labels.hashes]
    context = None
    if loaded.model.track_head is not None:
        from ..models.track_head import contexts_from_descriptors

        table = lib.stage_table("descriptors", stage_versions()["descriptors"])
        context = contexts_from_descriptors(table, labels.hashes)
    preds = predict_logmels(loaded.model, mels, chunk_frames=loaded.config.chunk_frames, n_chunks=n_chunks,
                            batch_size=batch_size or DEFAULT_BATCH_SIZE, precision=precision, context=context)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", MetricWarning)
        scores = score_predictions(labels, np.arange(len(labels)), preds, thresholds=loaded.thresholds)
    for w in caught:  # one summary per kind of degenerate tag, not one per metric
        if issubclass(w.category, MetricWarning) and "roc_auc" in str(w.message):
            warnings.warn(str(w.message).replace("columns", "tag columns"), MetricWarning, stacklevel=2)
    scores.update({"model": str(model), "model_id": loaded.model_id, "split": split, "labels": str(labels_path),
                   "thresholds": dict(zip(loaded.tags, map(float, loaded.thresholds)))})
    return scores


# --- output ------------------------------------------------------------------------------------
def _fmt(v) -> str:
    return "   -  " if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.4f}"


def format_table(scores: Mapping[str, Any]) -> str:
    """Human-readable summary: overall scores, then one line per tag (ROC-AUC, PR-AUC, F1, threshold)."""
    lines = [f"model {scores.get('model_id', '?')} on the {scores.get('split', '?')} split "
             f"({scores.get('n_tracks', '?')} tracks)"]
    lines.append(f"  tags   macro ROC-AUC {_fmt(scores['tags/roc_auc_macro'])}   macro PR-AUC {_fmt(scores['tags/pr_auc_macro'])}"
                 f"   macro F1 {_fmt(scores['tags/f1_macro'])}   micro F1 {_fmt(scores['tags/f1_micro'])}")
    if "genre/accuracy" in scores:
        lines.append(f"  genre  accuracy {_fmt(scores['genre/accuracy'])}   balanced accuracy "
                     f"{_fmt(scores['genre/balanced_accuracy'])}   macro F1 {_fmt(scores['genre/f1_macro'])}")
    if "genre_top/accuracy" in scores:
        lines.append(f"  genre, top level ({len(scores['genre_top/names'])}: {', '.join(scores['genre_top/names'])})  "
                     f"accuracy {_fmt(scores['genre_top/accuracy'])}   balanced accuracy "
                     f"{_fmt(scores['genre_top/balanced_accuracy'])}")
    thr = scores.get("thresholds", {})
    width = max([len(t) for t in scores["tags/roc_auc"]] + [3])
    lines.append("")
    lines.append(f"  {'tag':<{width}}  ROC-AUC  PR-AUC   F1      threshold")
    for t in scores["tags/roc_auc"]:
        lines.append(f"  {t:<{width}}  {_fmt(scores['tags/roc_auc'][t])}   {_fmt(scores['tags/pr_auc'][t])}   "
                     f"{_fmt(scores['tags/f1'][t])}  {_fmt(thr.get(t))}")
    if "genre/confusion_matrix" in scores:
        names = scores["genre/names"]
        cm = np.asarray(scores["genre/confusion_matrix"])
        w = max(len(n) for n in names)
        lines.append("")
        lines.append("  confusion matrix (rows: true genre, columns: predicted, in the same order)")
        for name, row in zip(names, cm):
            lines.append(f"  {name:<{w}}  " + " ".join(f"{int(c):3d}" for c in row))
    return "\n".join(lines)


def _json_safe(obj):
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, np.generic):
        return _json_safe(obj.item())
    return obj


def write_report(scores: Mapping[str, Any], out_dir: str | os.PathLike) -> list[Path]:
    """Write ``metrics.json`` (NaN as null), ``roc_auc_per_tag.png`` and, with genres,
    ``confusion_matrix.png`` into ``out_dir``; return the paths written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "metrics.json"]
    atomic.write_text(paths[0], json.dumps(_json_safe(dict(scores)), indent=1, allow_nan=False))

    tags = list(scores["tags/roc_auc"])
    roc = np.array([scores["tags/roc_auc"][t] for t in tags], dtype=float)
    ap = np.array([scores["tags/pr_auc"][t] for t in tags], dtype=float)
    order = np.argsort(np.nan_to_num(roc, nan=-1.0))[::-1]
    fig, ax = plt.subplots(figsize=(max(6.0, 0.38 * len(tags) + 2), 4.2))
    xs = np.arange(len(tags))
    ax.bar(xs - 0.2, np.nan_to_num(roc[order]), width=0.4, label="ROC-AUC", color="#3b6ea5")
    ax.bar(xs + 0.2, np.nan_to_num(ap[order]), width=0.4, label="PR-AUC", color="#e0a030")
    ax.axhline(scores["tags/roc_auc_macro"], color="#3b6ea5", ls="--", lw=1,
               label=f"macro ROC-AUC {scores['tags/roc_auc_macro']:.3f}")
    ax.set_xticks(xs, [tags[i] for i in order], rotation=60, ha="right", fontsize=8)
    ax.set_ylim(0, 1.02)
    ax.set_ylabel("score")
    ax.set_title(f"per-tag scores, {scores.get('split', '')} split ({scores.get('n_tracks', '?')} tracks)")
    ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    paths.append(out / "roc_auc_per_tag.png")
    atomic.write_with(paths[-1], lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    plt.close(fig)

    if "genre/confusion_matrix" in scores:
        names = scores["genre/names"]
        cm = np.asarray(scores["genre/confusion_matrix"], dtype=float)
        rows = cm.sum(axis=1, keepdims=True)
        frac = np.divide(cm, rows, out=np.zeros_like(cm), where=rows > 0)
        k = len(names)
        fig, ax = plt.subplots(figsize=(max(4.5, 0.55 * k + 2.5), max(4.0, 0.5 * k + 2)))
        im = ax.imshow(frac, cmap="Blues", vmin=0, vmax=1)
        for i in range(k):
            for j in range(k):
                if cm[i, j]:
                    ax.text(j, i, int(cm[i, j]), ha="center", va="center", fontsize=7,
                            color="white" if frac[i, j] > 0.6 else "black")
        ax.set_xticks(range(k), names, rotation=60, ha="right", fontsize=8)
        ax.set_yticks(range(k), names, fontsize=8)
        ax.set_xlabel("predicted genre")
        ax.set_ylabel("true genre")
        ax.set_title(f"genre accuracy {scores['genre/accuracy']:.3f} "
                     f"(balanced {scores['genre/balanced_accuracy']:.3f})")
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="fraction of the true genre")
        fig.tight_layout()
        paths.append(out / "confusion_matrix.png")
        atomic.write_with(paths[-1], lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
        plt.close(fig)
    return paths
