"""Taste logits over track features: mir.recommend.affinity, ContentTaste, Hybrid (the default hybrid)."""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from mir.errors import ParameterError
from mir.recommend import Collaborative, ContentTaste, Hybrid, Interactions, TrackSet, load_model, make, save_model
from mir.recommend import affinity, hybrid

N_GENRES, PER_GENRE = 3, 8


def feature_tracks(hidden: int = 0) -> TrackSet:
    """Tracks whose predicted genre probabilities say the genre (0.9 / 0.05 / 0.05); 2 tags shared by all."""
    n = N_GENRES * PER_GENRE + hidden
    genre = np.arange(n) % N_GENRES
    feats = np.full((n, N_GENRES), 0.05)
    feats[np.arange(n), genre] = 0.9
    feats = np.hstack([feats, np.full((n, 2), 0.5)])
    emb = np.random.default_rng(0).normal(size=(n, 8))
    return TrackSet(track_ids=[f"t{i:02d}" for i in range(n)], embeddings=emb, features=feats,
                    genre=np.array([f"g{g}" for g in genre], dtype=object))


def genre_history(tracks: TrackSet, n_users: int = 60, plays: int = 6, seed: int = 1, never: tuple = ()) -> Interactions:
    """Each user plays ``plays`` tracks of one genre (user % 3); low-index tracks are more popular."""
    rng = np.random.default_rng(seed)
    genre = np.argmax(tracks.features[:, :N_GENRES], axis=1)
    rows = []
    for u in range(n_users):
        pool = np.flatnonzero((genre == u % N_GENRES) & ~np.isin(np.arange(len(tracks)), never))
        p = 1.0 / (1.0 + np.arange(len(pool)))
        for e, t in enumerate(rng.choice(pool, size=min(plays, len(pool)), replace=False, p=p / p.sum())):
            rows.append((f"u{u:03d}", tracks.track_ids[t], 1_700_000_000 + 1000 * e, 1))
    events = pd.DataFrame(rows, columns=["user", "track_id", "timestamp", "plays"])
    return Interactions.from_events(events, tracks.track_ids)


def test_fit_tastes_recovers_a_genre_preference():
    rng = np.random.default_rng(0)
    Phi = np.eye(4)[np.repeat(np.arange(4), 10)]  # 40 tracks, one-hot over 4 genres
    Y = np.zeros((30, 40))
    for u in range(30):
        Y[u, rng.choice(np.arange(10 * (u % 4), 10 * (u % 4) + 10), 5, replace=False)] = 1
    theta, mu, b = affinity.fit_tastes(sp.csr_matrix(Y), Phi, item_bias=False, iterations=15)
    assert np.all(np.argmax(theta, axis=1) == np.arange(30) % 4)
    assert np.allclose(b, 0) and mu.shape == (4,)
    # the exact and the shared-curvature Newton steps agree on the ranking
    approx, _, _ = affinity.fit_tastes(sp.csr_matrix(Y), Phi, item_bias=False, iterations=15, exact_limit=0)
    assert np.all(np.argmax(approx, axis=1) == np.arange(30) % 4)


def test_fit_tastes_item_bias_follows_popularity():
    Phi = np.ones((6, 1))  # no content signal: the bias alone explains the plays
    Y = np.zeros((40, 6))
    Y[:, 0] = 1
    Y[:20, 1] = 1
    Y[:5, 2] = 1
    _, _, b = affinity.fit_tastes(Y, Phi, iterations=15)
    assert b[0] > b[1] > b[2] > b[3] == pytest.approx(b[5])


@pytest.mark.parametrize("scale", [1.0, 20.0])
@pytest.mark.parametrize("exact_limit", [0, 2e9])
def test_fit_tastes_is_stable_at_any_feature_scale(scale, exact_limit):
    """Popular tracks plus large features: the old undamped shared-curvature step and bias step overflowed here."""
    rng = np.random.default_rng(0)
    U, N, F = 120, 400, 6
    Phi = scale * rng.standard_normal((N, F))
    true = rng.standard_normal((U, F)) / scale
    Y = np.zeros((U, N))
    for u in range(U):
        p = np.exp(true[u] @ Phi.T - (true[u] @ Phi.T).max())
        Y[u, rng.choice(N, size=8, replace=False, p=p / p.sum())] = 1
    Y[:, :5] = 1  # five tracks everyone played
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an overflow warning fails the test
        theta, mu, b = affinity.fit_tastes(sp.csr_matrix(Y), Phi, iterations=10, exact_limit=exact_limit)
    assert np.isfinite(theta).all() and np.isfinite(b).all() and np.isfinite(mu).all()
    assert np.mean([np.corrcoef(theta[u], true[u])[0, 1] for u in range(U)]) > 0.7
    assert b[:5].min() > b[5:].max()  # the tracks everyone played get the largest biases


def test_fit_tastes_rejects_bad_settings():
    with pytest.raises(ParameterError, match="iterations"):
        affinity.fit_tastes(np.ones((2, 2)), np.eye(2), iterations=0)
    with pytest.raises(ParameterError, match="features"):
        affinity.fit_tastes(np.ones((2, 2)), np.full((2, 2), np.nan))


def _taste_problem(seed: int = 0, U: int = 40, N: int = 60, F: int = 4, plays: int = 8):
    rng = np.random.default_rng(seed)
    Phi = rng.standard_normal((N, F))
    true = rng.standard_normal((U, F))
    Y = np.zeros((U, N))
    for u in range(U):
        p = np.exp(true[u] @ Phi.T - (true[u] @ Phi.T).max())
        Y[u, rng.choice(N, size=plays, replace=False, p=p / p.sum())] = 1
    return Y, Phi


@pytest.mark.parametrize("item_bias", [False, True])
@pytest.mark.parametrize("exact_limit", [0, 2e9])
def test_fit_taste_model_warm_start_continues_the_fit(item_bias, exact_limit):
    """A fit started from a 4-round fit and run 4 more rounds is the 8-round fit (the state is complete)."""
    Y, Phi = _taste_problem()
    kw = dict(item_bias=item_bias, exact_limit=exact_limit, tol=0.0)
    full = affinity.fit_taste_model(Y, Phi, iterations=8, **kw)
    half = affinity.fit_taste_model(Y, Phi, iterations=4, **kw)
    cont = affinity.fit_taste_model(Y, Phi, iterations=4, init=half, **kw)
    assert full.rounds == 8 and half.rounds == cont.rounds == 4
    for a, b in [(full.theta, cont.theta), (full.b, cont.b), (full.mu, cont.mu), (full.prec, cont.prec)]:
        assert np.allclose(a, b, rtol=1e-4, atol=1e-5)


def test_fit_taste_model_warm_start_from_fewer_events_reaches_the_same_optimum():
    """Start from a fit on half the plays: after the rounds to convergence, the cold-started optimum."""
    Y, Phi = _taste_problem(seed=1)
    rng = np.random.default_rng(2)
    Y_half = Y * (rng.random(Y.shape) < 0.5)
    kw = dict(item_bias=True, iterations=300, tol=1e-7)
    cold = affinity.fit_taste_model(Y, Phi, **kw)
    warm = affinity.fit_taste_model(Y, Phi, init=affinity.fit_taste_model(Y_half, Phi, **kw), **kw)
    assert cold.rounds < 300 and warm.rounds < 300  # both stopped on the tolerance
    assert np.allclose(warm.theta, cold.theta, atol=1e-2 * np.abs(cold.theta).max())
    assert np.allclose(warm.b, cold.b, atol=2e-2 * np.abs(cold.b).max())
    with pytest.raises(ParameterError, match="init"):
        affinity.fit_taste_model(Y[:10], Phi, init=cold)


def test_fit_taste_model_stops_on_the_tolerance():
    Y, Phi = _taste_problem(seed=3)
    loose = affinity.fit_taste_model(Y, Phi, iterations=50, tol=1e-2)
    assert 1 < loose.rounds < 50 and len(loose.objective) == loose.rounds
    fixed = affinity.fit_taste_model(Y, Phi, iterations=loose.rounds, tol=0.0)  # deterministic: the same fit
    assert np.array_equal(loose.theta, fixed.theta) and np.array_equal(loose.b, fixed.b)
    tight = affinity.fit_taste_model(Y, Phi, iterations=loose.rounds + 5, tol=0.0)
    step = np.linalg.norm(tight.theta - affinity.fit_taste_model(Y, Phi, iterations=loose.rounds + 4, tol=0.0).theta)
    assert step <= 1e-2 * np.linalg.norm(tight.theta)  # the tastes were barely moving when it stopped
    assert affinity.fit_taste_model(Y, Phi, iterations=7, tol=0.0).rounds == 7


def test_content_taste_recommends_the_users_genre():
    tracks = feature_tracks()
    X = genre_history(tracks)
    m = ContentTaste(iterations=10).fit(X, tracks)
    recs = m.recommend(k=2)
    genre_of = dict(zip(tracks.track_ids, tracks.genre))
    for user, group in recs.groupby("user"):
        assert {genre_of[t] for t in group["track_id"]} == {f"g{int(user[1:]) % N_GENRES}"}
    played = set(zip(X.users[X.user_idx], X.items[X.item_idx]))
    assert not any((u, t) in played for u, t in zip(recs["user"], recs["track_id"]))


def test_track_features_fall_back_to_embeddings():
    tracks = TrackSet(track_ids=["a", "b"], embeddings=np.eye(2))
    assert np.allclose(affinity.track_features(tracks), np.eye(2))
    with pytest.raises(ParameterError, match="features"):
        TrackSet(track_ids=["a", "b"], embeddings=np.eye(2), features=np.ones((3, 2)))


ALS = {"factors": 4, "regularization": 0.1, "alpha": 1.0, "iterations": 5, "num_threads": 1}


def test_hybrid_genre_popularity_and_cold_tracks(tmp_path):
    tracks = feature_tracks(hidden=N_GENRES)  # the last 3 tracks (one per genre) are never played
    never = tuple(range(N_GENRES * PER_GENRE, len(tracks)))
    X = genre_history(tracks, never=never)
    m = Hybrid(collaborative=Collaborative(**ALS), tune_k=4).fit(X, tracks)
    assert m.weight_ in m.grid and m.cold_offset_ in m.cold_grid and len(m.tuning_) > 0
    assert m.never_played_[list(never)].all()
    recs = m.recommend(k=2)  # each user has 2 unplayed, played-by-others tracks of their genre
    genre_of = dict(zip(tracks.track_ids, tracks.genre))
    for user, group in recs.groupby("user"):
        assert {genre_of[t] for t in group["track_id"]} == {f"g{int(user[1:]) % N_GENRES}"}
    # no never-played track is relevant on validation here, so the matched offset keeps them down
    assert m.cold_share_target_ == 0.0 and m.cold_offset_ < 0
    # without an offset, a never-played track of the user's genre outranks the other genres (content reaches it)
    m0 = Hybrid(collaborative=Collaborative(**ALS), weight=0.5, cold_offset=0.0).fit(X, tracks)
    big = m0.recommend(["u000"], k=len(tracks) - 6, exclude_seen=True)
    order = list(big["track_id"])
    cold0 = tracks.track_ids[never[0]]  # genre 0, like u000
    assert order.index(cold0) < min(order.index(t) for t in order if genre_of[t] != "g0")
    # stored without pickle and reloaded to the same lists
    save_model(m, tmp_path / "m")
    again = load_model(tmp_path / "m")
    pd.testing.assert_frame_equal(again.recommend(k=2), recs)


def test_hybrid_saved_before_the_rename_still_loads_and_retired_methods_are_refused(tmp_path):
    """Format 1 (no "format" key) named the default hybrid AffinityHybrid and the retired hybrid-blend Hybrid."""
    import json

    tracks = feature_tracks()
    X = genre_history(tracks)
    m = Hybrid(collaborative=Collaborative(**ALS), weight=0.5, cold_offset=-1.0).fit(X, tracks)
    save_model(m, tmp_path / "m")
    meta = json.loads((tmp_path / "m" / "model.json").read_text())
    assert meta.pop("format") == 2 and meta["class"] == "Hybrid"
    for part in ("collaborative", "collaborative_"):  # format 1: ALS had bpr's algorithm and learning_rate, and cold_ridge
        meta["children"][part]["params"].update(algorithm="als", learning_rate=0.01, cold_ridge=None)
    (tmp_path / "m" / "model.json").write_text(json.dumps({**meta, "class": "AffinityHybrid"}))
    old = load_model(tmp_path / "m")
    assert type(old) is Hybrid and old.collaborative_.factors_ == m.collaborative_.factors_
    pd.testing.assert_frame_equal(old.recommend(k=3), m.recommend(k=3))
    (tmp_path / "m" / "model.json").write_text(json.dumps(meta))  # format 1 "Hybrid": the retired blend
    with pytest.raises(ParameterError, match="retired method 'hybrid-blend'.*mir recommend"):
        load_model(tmp_path / "m")
    meta["children"]["collaborative_"]["params"]["algorithm"] = "bpr"
    (tmp_path / "m" / "model.json").write_text(json.dumps({**meta, "class": "AffinityHybrid"}))
    with pytest.raises(ParameterError, match="retired method 'bpr'"):
        load_model(tmp_path / "m")
    (tmp_path / "m" / "model.json").write_text(json.dumps({**meta, "format": 3}))
    with pytest.raises(ParameterError, match="format 3"):
        load_model(tmp_path / "m")


def test_hybrid_cold_users_variants():
    tracks = feature_tracks()
    X = genre_history(tracks)
    extra = pd.DataFrame({"user": ["z_new"], "track_id": [tracks.track_ids[1]], "timestamp": [1_800_000_000],
                          "plays": [1]})  # one play of genre 1
    events = pd.DataFrame({"user": X.users[X.user_idx], "track_id": X.items[X.item_idx], "timestamp": X.timestamp,
                           "plays": X.plays})
    X2 = Interactions.from_events(pd.concat([events, extra]), tracks.track_ids)
    genre_of = dict(zip(tracks.track_ids, tracks.genre))
    for variant in ("prior", "content"):
        m = Hybrid(collaborative=Collaborative(**ALS), weight=0.5, cold_offset=0.0, cold_users=variant).fit(X2, tracks)
        top = m.recommend(["z_new"], k=3)["track_id"]
        assert {genre_of[t] for t in top} == {"g1"}, variant
    with pytest.raises(ParameterError, match="cold_users"):
        Hybrid(cold_users="nope").fit(X2, tracks)
    with pytest.raises(ParameterError, match="refit_iterations"):
        Hybrid(refit_iterations=0).fit(X2, tracks)


def test_hybrid_refit_starts_from_the_validation_fit(monkeypatch):
    """Tuned: one cold-started taste fit on the validation events, then a warm-started short refit;
    the cold users' content model is fitted once (on all events), and the fit is deterministic."""
    tracks = feature_tracks()
    X = genre_history(tracks)
    calls = []
    real = affinity.fit_taste_model
    monkeypatch.setattr(affinity, "fit_taste_model",
                        lambda *a, **kw: calls.append((kw["item_bias"], kw["iterations"], kw.get("init") is not None))
                        or real(*a, **kw))
    m = Hybrid(collaborative=Collaborative(**ALS), tune_k=4, iterations=12, refit_iterations=3).fit(X, tracks)
    assert calls == [(True, 12, False), (True, 3, True), (False, 12, False)]
    assert m.rounds_ <= 3 and m.content_.rounds_ <= 12
    again = Hybrid(collaborative=Collaborative(**ALS), tune_k=4, iterations=12, refit_iterations=3).fit(X, tracks)
    pd.testing.assert_frame_equal(again.recommend(k=5), m.recommend(k=5))


def test_make_hybrid_is_the_default_hybrid_and_the_retired_ones_are_gone():
    assert isinstance(make("hybrid"), Hybrid) and isinstance(make("content-taste"), ContentTaste)
    assert make("hybrid").cold_users == "content"  # the issue: cold-start users get content-based lists
    for retired in ("hybrid-blend", "hybrid-learned"):
        with pytest.raises(ParameterError, match=f"unknown method '{retired}'"):
            make(retired)


def test_cli_summary_names_the_hybrids_settings():
    from mir.cli.recommend import hybrid_settings, hybrid_summary

    tracks = feature_tracks()
    X = genre_history(tracks)
    m = Hybrid(collaborative=Collaborative(**ALS), weight=0.5, cold_offset=-1.0).fit(X, tracks)
    assert hybrid_settings(m) == {"weight": 0.5, "cold_offset": -1.0, "cold_users": "content"}
    assert hybrid_summary(m) == ("collaborative weight 0.50, cold-track offset -1.00, "
                                 "cold-start users: content lists")
    assert hybrid_settings(Collaborative(**ALS).fit(X, tracks)) is None


def _sequential_brute(S, picks):
    """Sum of log normalisers of picks drawn without replacement: each softmax over the tracks not yet picked."""
    out = []
    for u, order in enumerate(picks):
        avail, total = np.ones(S.shape[1], bool), 0.0
        for t in order:
            total += np.log(np.exp(S[u, avail]).sum())
            avail[t] = False
        out.append(total)
    return np.array(out)


def test_sequential_normalisers_match_brute_force_and_their_gradient():
    rng = np.random.default_rng(0)
    U, N = 5, 12
    Y = sp.csr_matrix((rng.random((U, N)) < 0.5).astype(float))
    first = Y.copy()
    first.data = rng.random(Y.nnz)  # a random first-play time per played track
    indptr, items = affinity._pick_order(first, Y)
    picks = [items[indptr[u]:indptr[u + 1]] for u in range(U)]
    assert all(np.all(np.diff(first[u].toarray()[0][p]) > 0) for u, p in enumerate(picks))  # time order
    S = rng.normal(size=(U, N))
    E = np.exp(S - S.max(axis=1, keepdims=True))
    z = E.sum(axis=1)
    lse = S.max(axis=1) + np.log(z)
    nb = np.diff(Y.indptr).astype(float)
    lse_sum, scale, delta = affinity._normalisers(E.copy(), z, lse, nb, affinity._picks((indptr, items), np.arange(U)))
    W = scale[:, None] * E + delta.toarray()
    assert np.allclose(lse_sum, _sequential_brute(S, picks), atol=1e-10)
    h, grad = 1e-6, np.zeros((U, N))
    for t in range(N):
        up, down = S.copy(), S.copy()
        up[:, t] += h
        down[:, t] -= h
        grad[:, t] = (_sequential_brute(up, picks) - _sequential_brute(down, picks)) / (2 * h)
    assert np.allclose(W, grad, atol=1e-6) and np.allclose(W.sum(axis=1), nb)
    # independent picks: n_u lse_u and n_u P
    lse_ind, scale_ind, delta_ind = affinity._normalisers(E.copy(), z, lse, nb, None)
    W_ind = scale_ind[:, None] * E
    assert delta_ind is None
    assert np.allclose(lse_ind, nb * lse) and np.allclose(W_ind, nb[:, None] * E / z[:, None])


def test_sequential_picks_spread_the_biases_of_a_heavy_users_catalogue():
    """Users who take most of the catalogue: without replacement the popular tracks' early picks count,
    so the biases spread more (toward the true log popularity) than under independent picks."""
    rng = np.random.default_rng(0)
    N, U = 20, 80
    log_pop = np.linspace(1.5, -1.5, N)
    Y, first = np.zeros((U, N)), np.zeros((U, N))
    for u in range(U):
        p = np.exp(log_pop) / np.exp(log_pop).sum()
        order = rng.choice(N, size=15, replace=False, p=p)  # sequential draws without replacement
        Y[u, order] = 1
        first[u, order] = 1 + np.arange(15)
    Phi = np.ones((N, 1))
    ind = affinity.fit_taste_model(Y, Phi, bias_l2=0.01).b
    seq = affinity.fit_taste_model(Y, Phi, bias_l2=0.01, first_play=first).b
    slope = lambda b: np.polyfit(log_pop, b, 1)[0]  # noqa: E731
    assert slope(ind) < 0.7 and 0.8 < slope(seq) < 1.25
    assert np.all(np.diff(affinity.fit_taste_model(Y, Phi, first_play=first, iterations=30).objective) < 1e-9)
    with pytest.raises(ParameterError, match="first_play"):
        affinity.fit_taste_model(Y, Phi, first_play=first[:, :-1])


def test_first_plays_ranks_each_tracks_first_event():
    tracks = feature_tracks()
    events = pd.DataFrame([("a", "t03", 30, 1), ("a", "t01", 10, 1), ("a", "t03", 5, 2), ("b", "t02", 7, 1),
                           ("a", "t05", 10, 1)], columns=["user", "track_id", "timestamp", "plays"])
    X = Interactions.from_events(events, tracks.track_ids)
    F = hybrid.first_plays(X)
    a, b = list(X.users).index("a"), list(X.users).index("b")
    row = dict(zip(F[a].indices, F[a].data))
    # a: t03 first at time 5, then t01 and t05 at 10 (input order breaks the tie)
    assert row[3] < row[1] < row[5] and list(F[b].indices) == [2]
    assert (F != 0).toarray().tolist() == (X.matrix() != 0).toarray().tolist()


def test_hybrid_picks_setting(tmp_path):
    tracks = feature_tracks()
    X = genre_history(tracks)
    with pytest.raises(ParameterError, match="picks"):
        Hybrid(picks="bag").fit(X, tracks)
    genre_of = dict(zip(tracks.track_ids, tracks.genre))
    for picks, l2 in (("independent", 1.0), ("sequential", 0.1)):
        m = Hybrid(picks=picks, bias_l2=l2, weight=0.0, cold_offset=0.0).fit(X, tracks)
        recs = m.recommend(k=2)  # each user has 2 unplayed tracks of their genre
        for user, group in recs.groupby("user"):
            assert {genre_of[t] for t in group["track_id"]} == {f"g{int(user[1:]) % N_GENRES}"}
        save_model(m, tmp_path / picks)
        again = load_model(tmp_path / picks)
        assert (again.picks, again.bias_l2) == (picks, l2)
        pd.testing.assert_frame_equal(again.recommend(k=2), recs)


def test_taste_fit_stages_newton_step_exact_equals_shared_curvature_when_users_share_it():
    rng = np.random.default_rng(0)
    F, b = 4, 5
    Phi = rng.standard_normal((30, F))
    prec = np.eye(F) + 0.1
    lam, V = affinity._shared_curvature(Phi, np.zeros(F), np.zeros(30), prec)
    A = np.linalg.inv(V.T) @ np.diag(lam) @ np.linalg.inv(V)  # V' A V = diag(lam)
    grad, nb = rng.standard_normal((b, F)), np.arange(1.0, b + 1)
    exact, cov_exact = affinity._newton_step(grad, nb, prec, H=np.broadcast_to(A, (b, F, F)))
    shared, cov_shared = affinity._newton_step(grad, nb, prec, shared=(lam, V))
    np.testing.assert_allclose(exact, shared, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(cov_exact, cov_shared, rtol=1e-8, atol=1e-10)


def test_taste_fit_stages_line_search_never_raises_a_users_objective():
    Y, Phi = _taste_problem(seed=2)
    data = affinity._problem(Y, Phi, None)
    U, F = data.YPhi.shape
    theta, mu, b, prec = affinity._start(None, U, Y.shape[1], F, item_bias=False)
    lse, M, H, _ = affinity._softmax_state(theta, data, None, data.n, None, True, None)
    f0 = affinity._objective(lse, theta, data.YPhi, np.zeros(U), mu, prec)
    grad = -data.YPhi + M + (theta - mu) @ prec
    step = 50.0 * grad  # far too long: the search must halve it
    slope = -np.einsum("uf,uf->u", grad, step)
    blk = affinity._Block(0, U, data.n, data.YPhi, np.zeros(U), None)
    new, _, _, f1, stay = affinity._line_search(data, blk, theta, step, slope, (lse, M, f0), mu, prec, None,
                                                 np.zeros(U), 30, None)
    assert (f1 <= f0).all() and (f1 < f0).any() and not stay.all()
    np.testing.assert_array_equal(new[stay], theta[stay])


def test_collaborative_saved_with_the_retired_cold_ridge_still_loads(tmp_path):
    """Format 2 files written before cold_ridge was retired carry it among ALS's parameters."""
    import json

    tracks = feature_tracks()
    m = Collaborative(**ALS).fit(genre_history(tracks), tracks)
    save_model(m, tmp_path / "m")
    meta = json.loads((tmp_path / "m" / "model.json").read_text())
    meta["params"]["cold_ridge"] = None
    (tmp_path / "m" / "model.json").write_text(json.dumps(meta))
    pd.testing.assert_frame_equal(load_model(tmp_path / "m").recommend(k=3), m.recommend(k=3))
