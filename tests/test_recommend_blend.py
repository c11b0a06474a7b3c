"""The hybrid at catalogue scale: lists as inner products (mir.recommend.blend_topk) against the dense
scores, the cold users' content model on a sample, and the cells made once per fit."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from mir.recommend import Collaborative, ContentTaste, Hybrid, Interactions, TrackSet, taste_cells
from mir.recommend.blend_topk import BlendIndex

ALS = dict(factors=4, regularization=0.05, alpha=2.0, iterations=5, num_threads=1)


def world(n_users=90, n_items=240, n_feats=5, never=20, seed=0):
    """Tracks in 6 feature clusters with Zipf popularity; users pick from 1-2 clusters; users 0-9 have 1-3
    plays (cold), the last ``never`` tracks are never played."""
    g = np.random.default_rng(seed)
    cluster = g.integers(0, 6, n_items)
    feats = np.abs(g.normal(size=(6, n_feats)))[cluster] + 0.1 * g.random((n_items, n_feats))
    pop = 1.0 / (1.0 + np.arange(n_items)) ** 0.8
    pop[n_items - never:] = 0.0
    rows = []
    for u in range(n_users):
        likes = g.choice(6, 1 + u % 2, replace=False)
        p = pop * np.isin(cluster, likes)
        n = 1 + u % 3 if u < 10 else int(g.integers(6, 30))
        for e, t in enumerate(g.choice(n_items, min(n, int((p > 0).sum())), replace=False, p=p / p.sum())):
            rows.append((f"u{u:03d}", f"t{t:03d}", 1_700_000_000 + 100 * e, 1 + e % 2))
    tracks = TrackSet(track_ids=[f"t{i:03d}" for i in range(n_items)], embeddings=feats, features=feats)
    events = pd.DataFrame(rows, columns=["user", "track_id", "timestamp", "plays"])
    return tracks, Interactions.from_events(events, tracks.track_ids)


@pytest.mark.parametrize("cold_users", ["content", "prior"])
def test_blend_lists_are_the_dense_lists(cold_users):
    tracks, X = world()
    fits = {s: Hybrid(collaborative=Collaborative(**ALS), cold_users=cold_users, tune_k=20, scoring=s).fit(X, tracks)
            for s in ("dense", "blend")}
    dense, blend = fits["dense"], fits["blend"]
    np.testing.assert_array_equal(blend.tuning_[:, 0], dense.tuning_[:, 0])
    np.testing.assert_allclose(blend.tuning_[:, 2:], dense.tuning_[:, 2:], atol=1e-9)  # the same validation lists
    assert (blend.weight_, blend.cold_offset_) == (dense.weight_, dense.cold_offset_)
    assert blend.weight_ > 0 and dense.never_played_.sum() == 22 and (dense.user_plays_ <= 3).sum() == 7
    u = np.arange(X.n_users)
    for exclude_seen in (True, False):
        di, ds = dense.recommend_index(u, 30, exclude_seen=exclude_seen)
        bi, bs = blend.recommend_index(u, 30, exclude_seen=exclude_seen)
        assert np.mean(di == bi) >= 0.995  # float32 rounding may swap near-ties
        np.testing.assert_allclose(bs, ds, atol=1e-4)
    np.testing.assert_allclose(blend._score(u, di), dense._score(u, di), atol=1e-4)


def test_blend_index_top_k_is_the_brute_force_top_k():
    g = np.random.default_rng(1)
    N, U = 400, 60
    V, Y = g.normal(size=(N, 4)), g.normal(size=(N, 3)) * np.linspace(0.2, 2.0, N)[:, None]
    never = np.zeros(N, bool)
    never[-30:] = True
    seen = sp.random(U, N, density=0.05, format="csr", random_state=2)
    seen = sp.csr_matrix(seen.multiply(~never[None, :]))
    allowed = g.random(N) > 0.2
    index = BlendIndex(V, Y, never, seen)
    q, x = np.hstack([np.ones((U, 1)), g.normal(size=(U, 3))]), g.normal(size=(U, 3))
    Q = index.queries(q, x, np.full(U, 1.5), np.full(U, -0.5))
    S = np.where(never, (Q.never @ V.T) + Q.never_c[:, None], Q.played @ np.hstack([V, Y]).T + Q.played_c[:, None])
    S[seen.nonzero()] = -np.inf
    S[:, ~allowed] = -np.inf
    want = np.argsort(-S, axis=1, kind="stable")[:, :10]
    items, scores = index.topk(Q, 10, np.arange(U), allowed=allowed)
    np.testing.assert_array_equal(items, want)
    np.testing.assert_allclose(scores, np.take_along_axis(S, want, axis=1), atol=1e-4)
    np.testing.assert_allclose(index.score(Q, items), scores, atol=1e-4)


def test_blend_standardises_as_zscore_rows():
    from mir.recommend.arrays import zscore_rows
    from mir.recommend.blend_topk import moments, row_stats

    g = np.random.default_rng(3)
    V, q = g.normal(size=(50, 4)), g.normal(size=(5, 4))
    m, s = row_stats(q, moments(V))
    np.testing.assert_allclose((q @ V.T - m[:, None]) / s[:, None], zscore_rows(q @ V.T), atol=1e-9)


def test_cold_users_content_model_on_a_sample():
    tracks, X = world()
    full = Hybrid(collaborative=Collaborative(**ALS), weight=0.5, cold_offset=0.0, content_users=None).fit(X, tracks)
    alone = ContentTaste().fit(X, tracks)
    np.testing.assert_allclose(full.content_.theta_, alone.theta_)
    assert full.content_.cells == "auto"  # the parameter, not the cells made for the fit
    m = Hybrid(collaborative=Collaborative(**ALS), weight=0.5, cold_offset=0.0, content_users=20).fit(X, tracks)
    theta, prior = m.content_.theta_, m.content_.prior_mean_
    fitted = ~np.all(np.isclose(theta, prior), axis=1)
    cold = m.user_plays_ <= 3
    assert fitted[cold].all() and fitted.sum() == cold.sum() + 20
    assert theta.shape == full.content_.theta_.shape and len(m.content_.users_) == X.n_users
    top = m.recommend([X.users[0]], k=5)  # a cold user: its content list
    assert len(top) == 5


def test_cells_are_made_once_per_fit(monkeypatch):
    tracks, X = world()
    made = []
    real = taste_cells.make_cells
    monkeypatch.setattr(taste_cells, "make_cells", lambda *a, **kw: made.append(a[1]) or real(*a, **kw))
    m = Hybrid(collaborative=Collaborative(**ALS), taste_fit="cells", cells=60, tune_k=20).fit(X, tracks)
    assert made == [60] and m.content_.rounds_ >= 1 and m.rounds_ <= 10  # "auto" rounds over cells: 10, then 10
