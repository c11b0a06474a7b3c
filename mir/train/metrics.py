"""Tagging and genre metrics: small validated pure functions over numpy arrays.

Conventions
-----------
- ``y_true`` for tags: ``[n]`` (one tag) or ``[n, n_tags]`` (multi-label), values in {0, 1}
  (bool or integer or float 0./1.).
- ``y_score`` / ``y_prob``: same shape, finite. Ranking metrics (ROC-AUC, PR-AUC) accept any
  real scores; functions named ``*_prob`` / taking ``y_prob`` require probabilities in [0, 1]
  ("were these logits? apply a sigmoid").
- genre labels: ``[n]`` integer class indices in ``[0, n_classes)``; ``genre_prob``
  ``[n, n_classes]`` probabilities (softmax output).
- Malformed input raises :class:`mir.errors.ParameterError` naming the problem. Degenerate but
  legal input (a tag with no positives, or no negatives, in the evaluation set) warns with
  :class:`MetricWarning`; that tag scores NaN and is left out of macro averages.
"""
from __future__ import annotations

import warnings
from typing import Any, Sequence

import numpy as np
from sklearn import metrics as skm

from ..errors import ParameterError

__all__ = [
    "MetricWarning",
    "accuracy",
    "balanced_accuracy",
    "calibrate_thresholds",
    "confusion_matrix",
    "evaluate_tagging",
    "f1",
    "genre_scores",
    "macro_pr_auc",
    "macro_roc_auc",
    "pr_auc",
    "pr_auc_per_tag",
    "roc_auc",
    "roc_auc_per_tag",
    "tag_scores",
]


class MetricWarning(UserWarning):
    """Degenerate but legal metric input (e.g. a tag with no positive examples)."""


# --- validation -------------------------------------------------------------------------------
def _as_binary(y_true, name: str = "y_true") -> np.ndarray:
    arr = np.asarray(y_true)
    if arr.dtype == bool:
        return arr.astype(np.int8)
    if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise ParameterError(f"{name} must hold 0/1 labels, got dtype {arr.dtype}")
    if arr.size and not np.all((arr == 0) | (arr == 1)):
        bad = np.unique(arr[(arr != 0) & (arr != 1)])[:5]
        raise ParameterError(f"{name} must hold only 0 and 1, found {bad.tolist()} (are these probabilities?)")
    return arr.astype(np.int8)


def _as_scores(y_score, name: str, *, probabilities: bool) -> np.ndarray:
    arr = np.asarray(y_score)
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer) or arr.dtype == bool):
        raise ParameterError(f"{name} must be numeric, got dtype {arr.dtype}")
    arr = arr.astype(np.float64)
    if not np.all(np.isfinite(arr)):
        raise ParameterError(f"{name} contains NaN or infinity")
    if probabilities and arr.size and (arr.min() < 0.0 or arr.max() > 1.0):
        raise ParameterError(
            f"{name} must be probabilities in [0, 1], found range [{arr.min():.3g}, {arr.max():.3g}] "
            "(were these logits? apply a sigmoid / softmax first)"
        )
    return arr


def validate_binary(y_true, y_score, *, probabilities: bool = False, ndim: Sequence[int] = (1, 2)):
    """Check and convert a label/score pair; return ``(int8 labels, float64 scores)``."""
    t = _as_binary(y_true)
    s = _as_scores(y_score, "y_score" if not probabilities else "y_prob", probabilities=probabilities)
    if t.shape != s.shape:
        raise ParameterError(f"y_true has shape {t.shape} but the scores have shape {s.shape}; they must match")
    if t.ndim not in ndim:
        raise ParameterError(f"labels must be {' or '.join(f'{d}-D' for d in ndim)}, got shape {t.shape}")
    if t.shape[0] == 0:
        raise ParameterError("no examples (first axis has length 0)")
    return t, s


def _as_classes(y, name: str, n_classes: int | None) -> np.ndarray:
    arr = np.asarray(y)
    if arr.ndim != 1:
        raise ParameterError(f"{name} must be 1-D class indices, got shape {arr.shape}")
    if arr.size == 0:
        raise ParameterError(f"{name} is empty")
    if np.issubdtype(arr.dtype, np.floating):
        if not np.all(np.isfinite(arr)) or not np.all(arr == np.round(arr)):
            raise ParameterError(f"{name} must hold integer class indices (got non-integer floats)")
    elif not np.issubdtype(arr.dtype, np.integer):
        raise ParameterError(f"{name} must hold integer class indices, got dtype {arr.dtype}")
    arr = arr.astype(np.int64)
    if arr.min() < 0 or (n_classes is not None and arr.max() >= n_classes):
        raise ParameterError(
            f"{name} holds class {arr.min() if arr.min() < 0 else arr.max()}, outside [0, {n_classes})"
        )
    return arr


def _check_pair(y_true, y_pred, n_classes: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    if n_classes is not None and (isinstance(n_classes, bool) or not isinstance(n_classes, (int, np.integer)) or n_classes < 1):
        raise ParameterError(f"n_classes must be a positive int, got {n_classes!r}")
    t = _as_classes(y_true, "y_true", n_classes)
    p = _as_classes(y_pred, "y_pred", n_classes)
    if t.shape != p.shape:
        raise ParameterError(f"y_true has {t.shape[0]} labels but y_pred has {p.shape[0]}")
    return t, p


def _warn_degenerate(mask: np.ndarray, metric: str, why: str) -> None:
    idx = np.flatnonzero(mask)
    if idx.size:
        shown = ", ".join(map(str, idx[:10])) + (" …" if idx.size > 10 else "")
        warnings.warn(
            f"{metric}: {idx.size} of {mask.size} tag(s) have {why} (columns {shown}); "
            "they score NaN and are left out of the macro average",
            MetricWarning,
            stacklevel=3,
        )


# --- ranking metrics --------------------------------------------------------------------------
def _per_column(metric, t: np.ndarray, s: np.ndarray, defined: np.ndarray) -> np.ndarray:
    """``metric`` (a scikit-learn binary metric) of each column of ``[n, k]`` arrays; NaN where not ``defined``."""
    out = np.full(t.shape[1], np.nan)
    cols = np.flatnonzero(defined)
    if cols.size == 1:
        out[cols] = metric(t[:, cols[0]], s[:, cols[0]])
    elif cols.size:
        out[cols] = metric(t[:, cols], s[:, cols], average=None)
    return out


def _one_class(t: np.ndarray) -> np.ndarray:
    pos = t.sum(axis=0)
    return (pos == 0) | (pos == t.shape[0])


def roc_auc(y_true, y_score) -> float:
    """Area under the ROC curve of one binary problem (ties count ½; ``sklearn.metrics.roc_auc_score``).

    Parameters
    ----------
    y_true : np.ndarray [shape=(n,)], values in {0, 1}
    y_score : np.ndarray [shape=(n,)], any finite real scores (higher = more positive)

    Returns NaN with a :class:`MetricWarning` when only one class is present.

    >>> roc_auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
    0.75
    """
    t, s = validate_binary(y_true, y_score, ndim=(1,))
    return float(roc_auc_per_tag(t[:, None], s[:, None])[0])


def pr_auc(y_true, y_score) -> float:
    """Average precision: ``Σ_k (R_k − R_{k−1}) P_k`` over descending score thresholds.

    scikit-learn's ``average_precision_score`` (no interpolation; tied scores form one threshold;
    not the trapezoidal ``auc(precision_recall_curve)``). Returns NaN with a :class:`MetricWarning`
    when there is no positive.

    >>> round(pr_auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]), 4)
    0.8333
    """
    t, s = validate_binary(y_true, y_score, ndim=(1,))
    return float(pr_auc_per_tag(t[:, None], s[:, None])[0])


def roc_auc_per_tag(y_true, y_score) -> np.ndarray:
    """ROC-AUC of each column of ``[n, n_tags]`` arrays; NaN (with a warning) for one-class tags."""
    t, s = validate_binary(y_true, y_score, ndim=(2,))
    one_class = _one_class(t)
    _warn_degenerate(one_class, "roc_auc", "a single class only (no positives or no negatives)")
    return _per_column(skm.roc_auc_score, t, s, ~one_class)


def pr_auc_per_tag(y_true, y_score) -> np.ndarray:
    """Average precision of each column of ``[n, n_tags]`` arrays; NaN (with a warning) for tags without positives."""
    t, s = validate_binary(y_true, y_score, ndim=(2,))
    no_pos = t.sum(axis=0) == 0
    _warn_degenerate(no_pos, "pr_auc", "no positive examples")
    return _per_column(skm.average_precision_score, t, s, ~no_pos)


def _nanmean(values: np.ndarray) -> float:
    valid = values[~np.isnan(values)]
    return float(valid.mean()) if valid.size else float("nan")


def macro_roc_auc(y_true, y_score) -> float:
    """Mean ROC-AUC over tags that have both classes (NaN if none has)."""
    return _nanmean(roc_auc_per_tag(y_true, y_score))


def macro_pr_auc(y_true, y_score) -> float:
    """Mean average precision over tags that have at least one positive (NaN if none has)."""
    return _nanmean(pr_auc_per_tag(y_true, y_score))


# --- decisions --------------------------------------------------------------------------------
def f1(y_true, y_pred, *, average: str | None = "macro"):
    """F1 score of binary decisions (``sklearn.metrics.f1_score``).

    Parameters
    ----------
    y_true, y_pred : np.ndarray [shape=(n,) or (n, n_tags)], values in {0, 1}
    average : {"macro", "micro", None}
        For 2-D input: ``"macro"`` = mean of per-tag F1 over tags with at least one positive;
        ``"micro"`` = F1 of all cells pooled; ``None`` = per-tag array. 1-D input gives the
        binary F1 whatever ``average`` is.

    A tag with no positive in ``y_true`` has no meaningful F1: NaN, a :class:`MetricWarning`,
    and it is left out of the macro average (scikit-learn would count it as 0).

    >>> f1([1, 1, 0, 0], [1, 0, 1, 0])
    0.5
    """
    if average not in ("macro", "micro", None):
        raise ParameterError(f"average must be 'macro', 'micro' or None, got {average!r}")
    t = _as_binary(y_true)
    p = _as_binary(y_pred, "y_pred")
    if t.shape != p.shape:
        raise ParameterError(f"y_true has shape {t.shape} but y_pred has shape {p.shape}; they must match")
    if t.ndim not in (1, 2) or t.shape[0] == 0:
        raise ParameterError(f"labels must be non-empty 1-D or 2-D arrays, got shape {t.shape}")
    if average == "micro" and t.ndim == 2:
        return float(skm.f1_score(t.ravel(), p.ravel(), zero_division=np.nan))  # all cells pooled
    t2, p2 = (t[:, None], p[:, None]) if t.ndim == 1 else (t, p)
    no_pos = t2.sum(axis=0) == 0
    _warn_degenerate(no_pos, "f1", "no positive examples")
    per_tag = _per_column(skm.f1_score, t2, p2, ~no_pos)
    if t.ndim == 1:
        return float(per_tag[0])
    return per_tag if average is None else _nanmean(per_tag)


def accuracy(y_true, y_pred) -> float:
    """Fraction of examples whose predicted class equals the true class (``sklearn.metrics.accuracy_score``).

    >>> accuracy([0, 1, 2, 2], [0, 2, 2, 2])
    0.75
    """
    t, p = _check_pair(y_true, y_pred)
    return float(skm.accuracy_score(t, p))


def confusion_matrix(y_true, y_pred, n_classes: int) -> np.ndarray:
    """Counts ``C[i, j]`` of examples of true class ``i`` predicted as ``j``; ``[n_classes, n_classes]`` int64.

    >>> confusion_matrix([0, 1, 1], [0, 0, 1], 2).tolist()
    [[1, 0], [1, 1]]
    """
    t, p = _check_pair(y_true, y_pred, n_classes)
    return skm.confusion_matrix(t, p, labels=np.arange(n_classes)).astype(np.int64)


def balanced_accuracy(y_true, y_pred, n_classes: int | None = None) -> float:
    """Mean per-class recall over the classes present in ``y_true`` (``sklearn.metrics.balanced_accuracy_score``).

    Classes absent from ``y_true`` are skipped (their recall is undefined).

    >>> balanced_accuracy([0, 0, 0, 1], [0, 0, 0, 0])
    0.5
    """
    t, p = _check_pair(y_true, y_pred, n_classes)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "y_pred contains classes not in y_true": skipped, as documented
        return float(skm.balanced_accuracy_score(t, p))


# --- thresholds -------------------------------------------------------------------------------
def calibrate_thresholds(y_true, y_prob, *, default: float = 0.5) -> np.ndarray:
    """F1-optimal decision threshold of each tag, for the rule ``y_prob >= threshold``.

    Candidates are the unique predicted probabilities of the tag; ties in F1 go to the highest
    threshold (fewest positive calls). A tag with no positive example gets ``default`` and a
    :class:`MetricWarning`.

    Parameters
    ----------
    y_true : np.ndarray [shape=(n, n_tags)], values in {0, 1}
    y_prob : np.ndarray [shape=(n, n_tags)], probabilities in [0, 1]

    Returns
    -------
    thresholds : np.ndarray [shape=(n_tags,)], float64 in [0, 1]

    >>> calibrate_thresholds([[1], [1], [0], [0]], [[0.9], [0.4], [0.6], [0.1]]).tolist()
    [0.4]
    """
    t, s = validate_binary(y_true, y_prob, probabilities=True, ndim=(2,))
    if not (0.0 <= default <= 1.0):
        raise ParameterError(f"default threshold must be in [0, 1], got {default!r}")
    n_tags = t.shape[1]
    out = np.full(n_tags, float(default))
    no_pos = t.sum(axis=0) == 0
    if no_pos.any():
        idx = np.flatnonzero(no_pos)
        warnings.warn(
            f"calibrate_thresholds: {idx.size} of {n_tags} tag(s) have no positive examples "
            f"(columns {', '.join(map(str, idx[:10]))}{' …' if idx.size > 10 else ''}); "
            f"they get the default threshold {default}",
            MetricWarning,
            stacklevel=2,
        )
    for j in np.flatnonzero(~no_pos):
        order = np.argsort(-s[:, j], kind="mergesort")
        ss, ts = s[order, j], t[order, j]
        last = np.r_[ss[1:] != ss[:-1], True]
        tp = np.cumsum(ts)[last].astype(np.float64)
        called = (np.flatnonzero(last) + 1).astype(np.float64)
        f1s = 2 * tp / (called + ts.sum())  # 2TP / (2TP + FP + FN) = 2TP / (called + positives)
        best = int(np.argmax(f1s))  # first maximum = highest threshold among ties
        out[j] = ss[last][best]
    return out


# --- one-call evaluation ----------------------------------------------------------------------
def evaluate_tagging(
    y_true,
    y_prob,
    genre_true=None,
    genre_prob=None,
    tag_names: Sequence[str] | None = None,
    genre_names: Sequence[str] | None = None,
    *,
    thresholds=None,
) -> dict[str, Any]:
    """Every tagging and genre score, as a flat dict of plain Python values.

    Parameters
    ----------
    y_true, y_prob : np.ndarray [shape=(n, n_tags)]
        Tag labels in {0, 1} and tag probabilities (sigmoid outputs) in [0, 1].
    genre_true : np.ndarray [shape=(n,)] int, optional
    genre_prob : np.ndarray [shape=(n, n_genres)] probabilities, optional (both or neither)
    tag_names, genre_names : names for per-class entries (default: ``"0"``, ``"1"``, …)
    thresholds : np.ndarray [shape=(n_tags,)], optional
        Decision thresholds for the F1 scores (``y_prob >= threshold``); default 0.5.

    Returns
    -------
    scores : dict
        ``tags/roc_auc_macro``, ``tags/pr_auc_macro``, ``tags/f1_macro``, ``tags/f1_micro``,
        ``tags/n_evaluated`` (tags with both classes), per-tag dicts ``tags/roc_auc``,
        ``tags/pr_auc``, ``tags/f1`` (NaN for degenerate tags); with genre input also
        ``genre/accuracy``, ``genre/balanced_accuracy``, ``genre/f1_macro`` (over genres present
        in ``genre_true``), ``genre/f1``, ``genre/confusion_matrix`` (list of lists, rows = true
        class) and ``genre/names``.
    """
    if (genre_true is None) != (genre_prob is None):
        raise ParameterError("pass both genre_true and genre_prob, or neither")
    t, s = validate_binary(y_true, y_prob, probabilities=True, ndim=(2,))
    scores = tag_scores(t, s, _names(tag_names, t.shape[1], "tag_names"), _thresholds(thresholds, t.shape[1]))
    if genre_true is not None:
        gt, gp = _genre_arrays(genre_true, genre_prob, t.shape[0])
        scores.update(genre_scores(gt, gp, _names(genre_names, gp.shape[1], "genre_names")))
    return scores


def tag_scores(t: np.ndarray, s: np.ndarray, tag_names: Sequence[str], thresholds: np.ndarray) -> dict[str, Any]:
    """The ``tags/…`` entries of :func:`evaluate_tagging` for validated labels ``t`` and probabilities
    ``s`` [n, n_tags], one name and one decision threshold per tag."""
    roc = roc_auc_per_tag(t, s)
    ap = pr_auc_per_tag(t, s)
    pred = (s >= thresholds).astype(np.int8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MetricWarning)  # already warned by pr_auc_per_tag
        f1_tags = f1(t, pred, average=None)
    return {
        "tags/roc_auc_macro": _nanmean(roc),
        "tags/pr_auc_macro": _nanmean(ap),
        "tags/f1_macro": _nanmean(f1_tags),
        "tags/f1_micro": f1(t, pred, average="micro"),
        "tags/n_evaluated": int(np.sum(~np.isnan(roc))),
        "tags/roc_auc": dict(zip(tag_names, map(float, roc))),
        "tags/pr_auc": dict(zip(tag_names, map(float, ap))),
        "tags/f1": dict(zip(tag_names, map(float, f1_tags))),
    }


def genre_scores(gt: np.ndarray, gp: np.ndarray, genre_names: Sequence[str]) -> dict[str, Any]:
    """The ``genre/…`` entries of :func:`evaluate_tagging` for validated classes ``gt`` [n] and
    probabilities ``gp`` [n, n_genres], one name per genre."""
    n_genres = gp.shape[1]
    gpred = np.argmax(gp, axis=1)
    cm = confusion_matrix(gt, gpred, n_genres)
    onehot_t = np.eye(n_genres, dtype=np.int8)[gt]
    onehot_p = np.eye(n_genres, dtype=np.int8)[gpred]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MetricWarning)  # absent genres: skipped, as in balanced accuracy
        f1_genre = f1(onehot_t, onehot_p, average=None)
    return {
        "genre/accuracy": accuracy(gt, gpred),
        "genre/balanced_accuracy": balanced_accuracy(gt, gpred, n_genres),
        "genre/f1_macro": _nanmean(f1_genre),
        "genre/f1": dict(zip(genre_names, map(float, f1_genre))),
        "genre/confusion_matrix": cm.tolist(),
        "genre/names": list(genre_names),
    }


def _thresholds(thresholds, n_tags: int) -> np.ndarray:
    if thresholds is None:
        return np.full(n_tags, 0.5)
    thr = np.asarray(thresholds, dtype=np.float64)
    if thr.shape != (n_tags,):
        raise ParameterError(f"thresholds must have shape ({n_tags},), got {thr.shape}")
    return thr


def _genre_arrays(genre_true, genre_prob, n_rows: int) -> tuple[np.ndarray, np.ndarray]:
    """Validated ``(classes [n], probabilities [n, n_genres])``, as many rows as the tag arrays' ``n_rows``."""
    gp = _as_scores(genre_prob, "genre_prob", probabilities=True)
    if gp.ndim != 2:
        raise ParameterError(f"genre_prob must be [n, n_genres], got shape {gp.shape}")
    gt = _as_classes(genre_true, "genre_true", gp.shape[1])
    if gt.shape[0] != gp.shape[0]:
        raise ParameterError(f"genre_true has {gt.shape[0]} labels but genre_prob has {gp.shape[0]} rows")
    if gt.shape[0] != n_rows:
        raise ParameterError(f"tag arrays have {n_rows} rows but genre arrays have {gt.shape[0]}")
    return gt, gp


def _names(names, n: int, what: str) -> list[str]:
    if names is None:
        return [str(i) for i in range(n)]
    names = [str(x) for x in names]
    if len(names) != n:
        raise ParameterError(f"{what} has {len(names)} names but the arrays have {n} columns")
    if len(set(names)) != n:
        raise ParameterError(f"{what} has duplicate names")
    return names
