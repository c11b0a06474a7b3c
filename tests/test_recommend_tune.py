"""Collaborative settings chosen on a validation split of the training events (mir.recommend.tune)."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from mir.errors import ParameterError
from mir.recommend import Collaborative, Hybrid, Interactions, TrackSet, save_model
from mir.recommend.methods import ALS_GRID
from mir.recommend.tune import recall, relevance_credit, successive_halving, validation_split


def popular_world(seed: int = 0, n_users: int = 300, n_items: int = 150, per_user: int = 30) -> Interactions:
    """Plays drawn by Zipf popularity x 4 for the user's liked cluster (of 5): like the demo's histories,
    where a lightly regularised many-factor ALS overfits."""
    g = np.random.default_rng(seed)
    cluster = g.integers(0, 5, n_items)
    pop = 1.0 / (1 + g.permutation(n_items)) ** 0.8
    likes = g.integers(0, 5, n_users)
    rows = []
    for u in range(n_users):
        p = pop * np.where(cluster == likes[u], 4.0, 1.0)
        rows += [(f"u{u:03d}", f"t{i:03d}", t, 1.0) for t, i in enumerate(g.choice(n_items, per_user, p=p / p.sum()))]
    events = pd.DataFrame(rows, columns=["user", "track_id", "timestamp", "plays"])
    return Interactions.from_events(events, [f"t{i:03d}" for i in range(n_items)])


def test_relevance_credit_sums_to_each_users_recall():
    cand = np.array([[3, 1, -1], [2, 5, 4]])
    credit = relevance_credit(cand, np.array([7, 9]), {7: np.array([1, 2]), 9: np.array([4])}, 6)
    np.testing.assert_allclose(credit, [[0, 0.5, 0], [0, 0, 1.0]])


def test_auto_settings_beat_a_bad_fixed_setting_on_validation():
    X = popular_world()
    auto = Collaborative(tune_k=10).fit(X)
    assert auto.factors_ in ALS_GRID["factors"] and auto.regularization_ in ALS_GRID["regularization"]
    assert auto.alpha_ in ALS_GRID["alpha"] and auto.tuning_.shape == (18, 5)
    # the same split the search used: auto's choice against a bad fixed setting, both refitted there
    split = validation_split(X, 0.2)
    chosen = dict(factors=auto.factors_, regularization=auto.regularization_, alpha=auto.alpha_)
    bad = recall(Collaborative(factors=64, regularization=0.05, alpha=2.0).fit(split.train), split.users, split.relevant, 10)
    good = recall(Collaborative(**chosen).fit(split.train), split.users, split.relevant, 10)
    assert good >= bad and good > 1.5 * bad  # the bad setting clearly loses here
    assert good == pytest.approx(auto.tuning_[:, 4].max())
    again = Collaborative(tune_k=10).fit(X)  # deterministic with the seed
    np.testing.assert_array_equal(again.tuning_, auto.tuning_)


def test_explicit_settings_are_kept_and_only_auto_ones_searched(tmp_path):
    X = popular_world(n_users=120)
    m = Collaborative(factors=8, alpha=1.0, tune_k=10, iterations=5).fit(X)
    assert m.factors_ == 8 and m.alpha_ == 1.0 and m.regularization_ in ALS_GRID["regularization"]
    assert len(m.tuning_) == len(ALS_GRID["regularization"]) and set(m.tuning_[:, 0]) == {8}
    assert m.user_factors_.shape[1] == 8
    fixed = Collaborative(factors=8, regularization=1.0, alpha=1.0, iterations=5).fit(X)
    assert len(fixed.tuning_) == 0 and fixed.regularization_ == 1.0
    save_model(m, tmp_path / "m")  # the chosen values are in the model's JSON
    params = json.loads((tmp_path / "m" / "model.json").read_text())["params"]
    assert (params["regularization"], params["@regularization_"], params["@factors_"]) == ("auto", m.regularization_, 8)
    with pytest.raises(ParameterError, match="factors must be a positive int or 'auto'"):
        Collaborative(factors=0).fit(X)
    with pytest.raises(ParameterError, match="fit the model first"):
        Collaborative().confidence(X.matrix())


def test_successive_halving_keeps_the_best_third_on_growing_samples():
    X = popular_world(n_users=150)
    split = validation_split(X, 0.2)
    grid = [{"factors": f, "regularization": r} for f in (4, 16) for r in (0.05, 5.0, 50.0)]

    def fit(config, train):
        return Collaborative(**config, alpha=1.0, iterations=5, num_threads=1).fit(train)

    best, rows = successive_halving(grid, fit, split, 10, min_users=50)
    first = [(c, s) for c, share, s in rows if share < 1]
    last = [(c, s) for c, share, s in rows if share == 1]
    assert len(first) == 6 and len(last) == 2 and rows[0][1] == pytest.approx(50 / 150)
    top = sorted(range(6), key=lambda i: -first[i][1])[:2]
    assert sorted(grid.index(c) for c, _ in last) == sorted(top)  # the best third goes on
    assert best == max(last, key=lambda r: r[1])[0]


def test_hybrid_chooses_the_collaborative_settings_once_on_its_split():
    X = popular_world(n_users=120)
    tracks = TrackSet(track_ids=X.items, embeddings=np.random.default_rng(0).standard_normal((X.n_items, 8)))
    h = Hybrid(weight=0.5, cold_offset=0.0, tune_k=10).fit(X, tracks)
    cf = h.collaborative_
    assert cf.factors == cf.factors_ and cf.factors_ in ALS_GRID["factors"]  # fixed for the final fit
    assert len(cf.tuning_) == 18
