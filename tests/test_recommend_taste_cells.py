"""The taste fit over cells of tracks (mir.recommend.taste_cells) against the exact fit (mir.recommend.affinity)."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from mir.errors import ParameterError
from mir.recommend import affinity, taste_cells


def choices(n_users=120, n_items=300, n_feats=6, clusters=10, seed=0):
    """Users pick distinct tracks by softmax over ``pop + theta · phi``; tracks lie around ``clusters`` centres.
    Returns ``(Y, first_play, Phi, held_out)``: the last pick of each user held out."""
    g = np.random.default_rng(seed)
    centres = g.random((clusters, n_feats))
    Phi = centres[g.integers(0, clusters, n_items)] + 0.05 * g.standard_normal((n_items, n_feats))
    theta = 3.0 * g.standard_normal((n_users, n_feats))
    S = theta @ Phi.T + g.standard_normal(n_items)
    rows, cols, order, held = [], [], [], {}
    for u in range(n_users):
        p = np.exp(S[u] - S[u].max())
        picks = g.choice(n_items, int(g.integers(4, 25)), replace=False, p=p / p.sum())
        held[u] = picks[-1]
        rows += [u] * (len(picks) - 1)
        cols += list(picks[:-1])
        order += list(range(1, len(picks)))
    Y = sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(n_users, n_items))
    first = sp.csr_matrix((np.array(order, float), (rows, cols)), shape=(n_users, n_items))
    return Y, first, Phi, held


def hit_rate(fit, Phi, Y, held, k=20):
    S = affinity.scores(fit.theta, Phi, fit.b)
    S[Y.nonzero()] = -np.inf
    top = np.argsort(-S, axis=1)[:, :k]
    return float(np.mean([held[u] in top[u] for u in held]))


@pytest.mark.parametrize("sequential", [False, True])
@pytest.mark.parametrize("item_bias", [False, True])
def test_one_track_per_cell_is_the_exact_fit(sequential, item_bias):
    Y, first, Phi, _ = choices()
    kw = dict(item_bias=item_bias, bias_l2=0.1, first_play=first if sequential else None, iterations=8)
    exact = affinity.fit_taste_model(Y, Phi, **kw)
    cells = taste_cells.fit_taste_cells(Y, Phi, cells=Phi.shape[0], **kw)
    assert cells.rounds == exact.rounds
    np.testing.assert_allclose(cells.objective, exact.objective, rtol=1e-6)
    np.testing.assert_allclose(cells.theta, exact.theta, atol=0.02)
    np.testing.assert_allclose(cells.b, exact.b, atol=1e-3)


def test_fewer_cells_rank_as_the_exact_fit():
    Y, first, Phi, held = choices()
    exact = affinity.fit_taste_model(Y, Phi, bias_l2=0.1, first_play=first)
    fast = taste_cells.fit_taste_cells(Y, Phi, bias_l2=0.1, first_play=first, cells=30)  # 10 tracks per cell
    assert abs(hit_rate(fast, Phi, Y, held) - hit_rate(exact, Phi, Y, held)) <= 0.02
    assert np.corrcoef(fast.b, exact.b)[0, 1] > 0.95
    assert fast.objective[-1] == pytest.approx(exact.objective[-1], rel=0.02)


def test_threads_and_dask_give_the_serial_fit():
    distributed = pytest.importorskip("distributed")
    Y, first, Phi, _ = choices(n_users=90)
    kw = dict(bias_l2=0.1, first_play=first, cells=40, iterations=4, block=25)
    serial = taste_cells.fit_taste_cells(Y, Phi, **kw)
    threads = taste_cells.fit_taste_cells(Y, Phi, threads=2, **kw)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=":0",
                                  silence_logs=40) as cluster:
        dask = taste_cells.fit_taste_cells(Y, Phi, scheduler=cluster.scheduler_address, **kw)
    for other in (threads, dask):
        np.testing.assert_array_equal(other.theta, serial.theta)
        np.testing.assert_array_equal(other.b, serial.b)
        np.testing.assert_array_equal(other.objective, serial.objective)


def test_cells_group_similar_tracks():
    Phi = np.repeat(np.eye(3), 5, axis=0) + 0.01 * np.arange(15)[:, None]
    c = taste_cells.make_cells(Phi, 3)
    assert len(c.centre) == 3 and len(np.unique(c.assign[:5])) == 1 and len(np.unique(c.assign)) == 3
    assert np.all(c.spread >= 0) and c.spread.max() < 1e-3
    one = taste_cells.make_cells(Phi, 100)
    assert np.array_equal(one.assign, np.arange(15)) and not one.spread.any()
    assert taste_cells.auto_cells(1500) == 1500 and taste_cells.auto_cells(100_000) == 502


def test_bad_settings_name_the_value():
    Y, _, Phi, _ = choices(n_users=10, n_items=40)
    with pytest.raises(ParameterError, match="cells must be"):
        taste_cells.fit_taste_cells(Y, Phi, cells="many")
    with pytest.raises(ParameterError, match="threads must be"):
        taste_cells.fit_taste_cells(Y, Phi, threads=0)
    with pytest.raises(ParameterError, match=r"\[40, F\]"):
        taste_cells.fit_taste_cells(Y, Phi[:5])
