"""Metrics and threshold calibration: hand-computed cases, scikit-learn as reference, validation."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn import metrics as skm

from mir.errors import ParameterError
from mir.train.metrics import (
    MetricWarning,
    accuracy,
    balanced_accuracy,
    calibrate_thresholds,
    confusion_matrix,
    evaluate_tagging,
    f1,
    macro_pr_auc,
    macro_roc_auc,
    pr_auc,
    pr_auc_per_tag,
    roc_auc,
    roc_auc_per_tag,
)


def multilabel(rng, n=120, n_tags=6, *, ties=True):
    """Random labels with both classes in every column, and scores correlated with them."""
    y = (rng.random((n, n_tags)) < 0.3).astype(int)
    y[0], y[1] = 1, 0
    p = np.clip(0.35 * y + rng.random((n, n_tags)) * 0.65, 0, 1)
    return y, (np.round(p, 1) if ties else p)


# --- hand-computed ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "y, s, expected",
    [
        ([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8], 0.75),
        ([0, 1], [0.5, 0.5], 0.5),  # a tie counts one half
        ([0, 0, 1], [0.2, 0.5, 0.5], 0.75),
        ([1, 1, 0], [0.9, 0.8, 0.1], 1.0),
        ([1, 1, 0], [0.1, 0.2, 0.9], 0.0),
        ([0, 1, 0, 1], [-3.0, 2.0, 0.0, 7.0], 1.0),  # any real scores
    ],
)
def test_roc_auc_hand(y, s, expected):
    assert roc_auc(y, s) == pytest.approx(expected)


@pytest.mark.parametrize(
    "y, s, expected",
    [
        ([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8], 0.5 * 1 + 0.5 * 2 / 3),
        ([1, 0, 1], [0.5, 0.5, 0.2], 0.5 * 0.5 + 0.5 * 2 / 3),  # tied scores form one threshold
        ([1, 1, 0], [0.9, 0.8, 0.1], 1.0),
        ([0, 0, 1], [0.9, 0.8, 0.1], 1 / 3),
    ],
)
def test_pr_auc_hand(y, s, expected):
    assert pr_auc(y, s) == pytest.approx(expected)


def test_decision_metrics_hand():
    assert f1([1, 1, 0, 0], [1, 0, 1, 0]) == pytest.approx(0.5)
    assert f1([1, 1, 0, 0], [1, 1, 0, 0]) == 1.0
    y = np.array([[1, 0], [1, 1], [0, 1], [0, 0]])
    p = np.array([[1, 0], [0, 1], [0, 0], [1, 0]])
    # tag 0: tp1 fp1 fn1 → 0.5 ; tag 1: tp1 fp0 fn1 → 2/3 ; pooled: tp2 fp1 fn2 → 4/7
    np.testing.assert_allclose(f1(y, p, average=None), [0.5, 2 / 3])
    assert f1(y, p) == pytest.approx((0.5 + 2 / 3) / 2)
    assert f1(y, p, average="micro") == pytest.approx(4 / 7)
    assert f1(y[:, :1], p[:, :1], average="micro") == 0.5  # one tag: micro = its binary F1, not accuracy
    assert np.isnan(f1([[0], [0]], [[0], [0]], average="micro"))  # no positive called or true
    assert accuracy([0, 1, 2, 2], [0, 2, 2, 2]) == 0.75
    assert confusion_matrix([0, 1, 1, 2], [0, 0, 1, 2], 4).tolist() == [
        [1, 0, 0, 0], [1, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 0]]
    assert balanced_accuracy([0, 0, 0, 1], [0, 0, 0, 0]) == 0.5
    # class 3 never occurs in y_true: skipped, not counted as recall 0
    assert balanced_accuracy([0, 1, 1, 2], [0, 0, 1, 2], n_classes=4) == pytest.approx((1 + 0.5 + 1) / 3)


# --- against scikit-learn ---------------------------------------------------------------------
@pytest.mark.parametrize("ties", [True, False])
def test_ranking_metrics_match_sklearn(rng, ties):
    y, p = multilabel(rng, ties=ties)
    np.testing.assert_allclose(roc_auc_per_tag(y, p), skm.roc_auc_score(y, p, average=None), rtol=1e-12)
    np.testing.assert_allclose(pr_auc_per_tag(y, p), skm.average_precision_score(y, p, average=None), rtol=1e-12)
    assert macro_roc_auc(y, p) == pytest.approx(skm.roc_auc_score(y, p, average="macro"), rel=1e-12)
    assert macro_pr_auc(y, p) == pytest.approx(skm.average_precision_score(y, p, average="macro"), rel=1e-12)
    assert roc_auc(y[:, 0], p[:, 0]) == pytest.approx(skm.roc_auc_score(y[:, 0], p[:, 0]), rel=1e-12)
    assert pr_auc(y[:, 0], p[:, 0]) == pytest.approx(skm.average_precision_score(y[:, 0], p[:, 0]), rel=1e-12)


def test_decision_metrics_match_sklearn(rng):
    y, p = multilabel(rng)
    pred = (p >= 0.5).astype(int)
    np.testing.assert_allclose(f1(y, pred, average=None), skm.f1_score(y, pred, average=None))
    assert f1(y, pred) == pytest.approx(skm.f1_score(y, pred, average="macro"))
    assert f1(y, pred, average="micro") == pytest.approx(skm.f1_score(y, pred, average="micro"))
    t, q = rng.integers(0, 5, 200), rng.integers(0, 5, 200)
    assert accuracy(t, q) == pytest.approx(skm.accuracy_score(t, q))
    assert balanced_accuracy(t, q, 5) == pytest.approx(skm.balanced_accuracy_score(t, q))
    np.testing.assert_array_equal(confusion_matrix(t, q, 5), skm.confusion_matrix(t, q, labels=range(5)))


# --- degenerate and malformed input -----------------------------------------------------------
def test_tag_without_positives_warns_and_is_excluded(rng):
    y, p = multilabel(rng, n_tags=4)
    y[:, 2] = 0
    with pytest.warns(MetricWarning, match=r"1 of 4 tag\(s\).*columns 2"):
        per_tag = roc_auc_per_tag(y, p)
    assert np.isnan(per_tag[2]) and not np.isnan(per_tag[[0, 1, 3]]).any()
    with pytest.warns(MetricWarning):
        assert macro_roc_auc(y, p) == pytest.approx(np.mean(per_tag[[0, 1, 3]]))
    with pytest.warns(MetricWarning):
        assert macro_pr_auc(y, p) == pytest.approx(skm.average_precision_score(y[:, [0, 1, 3]], p[:, [0, 1, 3]]))
    with pytest.warns(MetricWarning, match="no positive"):
        assert np.isnan(f1(y, p > 0.5, average=None)[2])
    y[:, 1] = 1  # all positive: ROC undefined, AP defined (= 1)
    with pytest.warns(MetricWarning):
        assert np.isnan(roc_auc_per_tag(y, p)[1])
    with pytest.warns(MetricWarning):
        assert pr_auc_per_tag(y, p)[1] == 1.0
    with pytest.warns(MetricWarning):
        assert np.isnan(roc_auc([0, 0], [0.1, 0.2]))


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: roc_auc([0, 1, 1], [0.1, 0.2]), "shape"),
        (lambda: roc_auc([0, 2, 1], [0.1, 0.2, 0.3]), "only 0 and 1"),
        (lambda: roc_auc([0, 1], [0.1, np.nan]), "NaN"),
        (lambda: roc_auc([], []), "no examples"),
        (lambda: roc_auc_per_tag([0, 1], [0.1, 0.2]), "2-D"),
        (lambda: calibrate_thresholds([[0], [1]], [[0.2], [1.5]]), "probabilities in"),
        (lambda: confusion_matrix([0, 3], [0, 1], 3), "outside"),
        (lambda: accuracy([0, 1], [0, 1, 1]), "labels but"),
        (lambda: accuracy([0.5, 1], [0, 1]), "integer"),
        (lambda: f1([1, 0], [1, 0], average="weighted"), "average"),
        (lambda: evaluate_tagging([[0, 1]], [[0.2, 0.3]], tag_names=["a"]), "tag_names"),
        (lambda: evaluate_tagging([[0, 1]], [[0.2, 0.3]], genre_true=[0]), "both"),
    ],
)
def test_malformed_input_raises(call, match):
    with pytest.raises(ParameterError, match=match):
        call()


# --- thresholds -------------------------------------------------------------------------------
def test_calibrate_thresholds_hand():
    # tag 0: F1 at 0.9/0.6/0.4/0.1 = 2/3, 1/2, 4/5, 2/3 → 0.4
    # tag 1: F1 at 0.9/0.8/0.7/0.6 = 2/3, 1/2, 2/5, 2/3 → tie, the higher threshold wins
    y = np.array([[1, 1], [1, 0], [0, 0], [0, 1]])
    p = np.array([[0.9, 0.9], [0.4, 0.8], [0.6, 0.7], [0.1, 0.6]])
    np.testing.assert_allclose(calibrate_thresholds(y, p), [0.4, 0.9])


def test_calibrate_thresholds_is_f1_optimal_and_defaults(rng):
    y, p = multilabel(rng, n=60, n_tags=3)
    y[:, 2] = 0
    with pytest.warns(MetricWarning, match="default threshold 0.5"):
        thr = calibrate_thresholds(y, p)
    assert thr[2] == 0.5
    for j in range(2):
        best = max(skm.f1_score(y[:, j], p[:, j] >= c) for c in np.unique(p[:, j]))
        assert skm.f1_score(y[:, j], p[:, j] >= thr[j]) == pytest.approx(best)
        assert thr[j] in p[:, j]


# --- evaluate ---------------------------------------------------------------------------------
def test_evaluate_tagging(rng):
    y, p = multilabel(rng, n=80, n_tags=3)
    g = rng.integers(0, 4, 80)
    logits = rng.normal(size=(80, 4)) + 2 * np.eye(4)[g]
    gp = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing degenerate here: no warning expected
        scores = evaluate_tagging(y, p, g, gp, ["rock", "jazz", "calm"], ["a", "b", "c", "d"],
                                  thresholds=[0.4, 0.5, 0.6])
    assert scores["tags/roc_auc_macro"] == pytest.approx(skm.roc_auc_score(y, p))
    assert scores["tags/pr_auc_macro"] == pytest.approx(skm.average_precision_score(y, p))
    assert scores["tags/f1_micro"] == pytest.approx(skm.f1_score(y, p >= [0.4, 0.5, 0.6], average="micro"))
    assert set(scores["tags/roc_auc"]) == {"rock", "jazz", "calm"}
    assert scores["tags/n_evaluated"] == 3
    assert scores["genre/accuracy"] == pytest.approx(skm.accuracy_score(g, gp.argmax(1)))
    assert scores["genre/balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(g, gp.argmax(1)))
    assert scores["genre/f1_macro"] == pytest.approx(skm.f1_score(g, gp.argmax(1), average="macro"))
    assert np.sum(scores["genre/confusion_matrix"]) == 80
    assert all(isinstance(v, (float, int, dict, list)) for v in scores.values())
