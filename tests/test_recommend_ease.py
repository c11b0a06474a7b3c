"""EASE (mir.recommend.ease): closed form against per-column ridge, tuning, cold users, limits, persistence."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from mir.errors import ParameterError
from mir.recommend import EASE, ease, load_model, make, save_model
from mir.recommend.tune import recall, validation_split

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_recommend import interactions, tiny_tracks, two_groups


def test_ease_weights_equal_the_ridge_regression_of_each_item_on_the_others():
    rng = np.random.default_rng(0)
    Y = (rng.random((40, 7)) < 0.35).astype(float)
    B = ease.ease_weights(ease.gram(Y), 3.0)
    assert np.all(np.diag(B) == 0)
    for j in range(7):  # column j: argmin |y_j - Y_-j b|^2 + 3 |b|^2
        others = np.delete(np.arange(7), j)
        A = Y[:, others]
        ref = np.linalg.solve(A.T @ A + 3.0 * np.eye(6), A.T @ Y[:, j])
        np.testing.assert_allclose(B[others, j], ref, rtol=1e-4, atol=1e-6)


def test_ease_recommends_what_similar_users_played_and_cold_users_get_lists():
    tracks = tiny_tracks()
    X = interactions(two_groups(tracks) + [("new", "t06", 0, 1)], tracks)
    m = make("ease", regularization=1.0).fit(X, tracks)
    assert isinstance(m, EASE)
    recs = m.recommend(["u00", "u13", "new", "nobody"], 2)
    by = {u: list(g["track_id"]) for u, g in recs.groupby("user")}
    assert by["u00"][0] == "t00" and by["u13"][0] == "t08"  # each user's one missing track of their group
    assert set(by["new"]) <= {f"t{i:02d}" for i in range(5, 10)} - {"t06"}  # one jazz play: more jazz
    assert len(by["nobody"]) == 2  # no history: the popularity fallback
    s = m._score(m.user_index(["u00"]), np.array([[0, 7, -1]]))
    assert s[0, 0] > s[0, 1] and np.isneginf(s[0, 2])


def test_ease_validation_shortcut_equals_refitting_at_each_ridge():
    tracks = tiny_tracks()
    rows = two_groups(tracks, n_users=30) + [(f"u{u:02d}", f"t{10 + u % 5:02d}", 9 + u % 3, 1) for u in range(0, 30, 2)]
    X = interactions(rows, tracks)
    split = validation_split(X, 0.3)
    grid = (0.5, 5.0, 50.0)
    fast = ease.validation_recall(split.train.matrix(), split.users, split.relevant, grid, 3)
    slow = [recall(EASE(regularization=l2).fit(split.train, tracks), split.users, split.relevant, 3) for l2 in grid]
    np.testing.assert_allclose(fast, slow, atol=1e-9)
    m = EASE(tune_k=3, grid=grid, validation=0.3).fit(X, tracks)
    assert m.regularization_ == grid[int(np.argmax(fast))] and m.tuning_.shape == (3, 2)


def test_ease_refuses_large_catalogues_and_bad_settings():
    tracks = tiny_tracks()
    X = interactions(two_groups(tracks), tracks)
    with pytest.raises(ParameterError, match=r"max_items=10 .*use method 'als'"):
        EASE(max_items=10).fit(X, tracks)
    for bad in (0.0, -1.0, "big"):
        with pytest.raises(ParameterError, match="regularization must be"):
            EASE(regularization=bad).fit(X, tracks)
    with pytest.raises(ParameterError, match="grid must"):
        EASE(grid=(10.0, 0.0)).fit(X, tracks)


def test_ease_is_deterministic_and_saved_model_recommends_the_same(tmp_path):
    tracks = tiny_tracks()
    X = interactions(two_groups(tracks) + [("new", "t10", 0, 1)], tracks)
    a = EASE(tune_k=3).fit(X, tracks)
    b = EASE(tune_k=3).fit(X, tracks)
    pd.testing.assert_frame_equal(a.recommend(k=4), b.recommend(k=4))
    save_model(a, tmp_path / "m")
    back = load_model(tmp_path / "m")
    assert isinstance(back, EASE) and back.regularization_ == a.regularization_
    pd.testing.assert_frame_equal(back.recommend(k=4), a.recommend(k=4))
    assert sp.issparse(back.seen_)
