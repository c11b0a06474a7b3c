"""mir.recommend: metrics, events, split, the recommenders, re-ranking, persistence."""
from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest

from mir.errors import ParameterError
from mir.recommend import (Collaborative, ContentBased, Hybrid, Interactions, Popularity, Reranker,
                           clean_events, load_model, save_model, temporal_split, track_resolver)
from mir.recommend import metrics
from mir.recommend.arrays import zscore_rows
from mir.recommend.taste import mixture_scores, user_tastes
from mir.topk import top_k
from helpers import tiny_tracks, two_groups

# --- metrics on hand-computed cases -----------------------------------------------------------------------
REC = ["a", "b", "c", "d"]
REL = {"b", "d", "e"}


def test_metrics_hand_computed():
    assert metrics.recall_at_k(REC, REL, 4) == pytest.approx(2 / 3)
    assert metrics.precision_at_k(REC, REL, 4) == pytest.approx(0.5)
    dcg = 1 / np.log2(3) + 1 / np.log2(5)
    idcg = 1 + 1 / np.log2(3) + 1 / np.log2(4)
    assert metrics.ndcg_at_k(REC, REL, 4) == pytest.approx(dcg / idcg)
    assert metrics.average_precision_at_k(REC, REL, 4) == pytest.approx((1 / 2 + 2 / 4) / 3)
    # only the first k count; AP divides by min(|relevant|, k)
    assert metrics.recall_at_k(REC, REL, 2) == pytest.approx(1 / 3)
    assert metrics.average_precision_at_k(REC, REL, 2) == pytest.approx(0.5 / 2)
    assert metrics.ndcg_at_k(REC, REL, 2) == pytest.approx((1 / np.log2(3)) / (1 + 1 / np.log2(3)))
    assert metrics.ndcg_at_k(["b", "d", "e"], REL, 3) == pytest.approx(1.0)
    assert metrics.average_precision_at_k(["x", "y"], REL, 2) == 0.0


def test_coverage_novelty_and_mean_over_users():
    assert metrics.coverage([["a", "b"], ["b", "c"]], 10) == pytest.approx(0.3)
    # p(a) = (3 + 1) / (3 + 1) -> 0 bits; p(b) = (0 + 1) / 4 -> 2 bits
    assert metrics.novelty([["a", "b"]], {"a": 3}, 3) == pytest.approx(1.0)
    out = metrics.evaluate_lists({"u1": REC, "u2": ["e"]}, {"u1": REL, "u2": {"e"}, "u3": set()}, 4)
    assert out["recall@4"] == pytest.approx((2 / 3 + 1) / 2)
    assert (out["n_users"], out["skipped"]) == (2, 1)


def test_metrics_reject_malformed_input():
    with pytest.raises(ParameterError, match="relevant is empty"):
        metrics.recall_at_k(["a"], set(), 1)
    with pytest.raises(ParameterError, match="twice"):
        metrics.ndcg_at_k(["a", "a"], {"a"}, 2)
    with pytest.raises(ParameterError, match="k must be"):
        metrics.recall_at_k(["a"], {"a"}, 0)


# --- a tiny world with obvious answers --------------------------------------------------------------------------
def interactions(rows, tracks) -> Interactions:
    frame = pd.DataFrame(rows, columns=["user", "track", "timestamp", "plays"])
    clean, report = clean_events(frame)
    assert report.n_skipped == 0
    return Interactions.from_events(clean, tracks.track_ids)


def test_popularity_ranks_by_distinct_listeners_and_skips_played():
    tracks = tiny_tracks()
    rows = [(f"u{u}", "t03", u, 1) for u in range(5)] + [(f"u{u}", "t07", 10 + u, 9) for u in range(3)] + \
           [("u0", "t01", 20, 1), ("u0", "t01", 21, 1)]
    m = Popularity().fit(interactions(rows, tracks), tracks)
    recs = m.recommend(["u3", "u0", "nobody"], 2)
    by = {u: list(g["track_id"]) for u, g in recs.groupby("user")}
    assert by["u3"] == ["t07", "t01"]  # t03 already played; t07 has 3 listeners, t01 one
    assert by["u0"] == ["t00", "t02"]  # t03, t07, t01 played: the rest tie at zero, broken by index
    assert by["nobody"] == ["t03", "t07"]  # unknown users get the most popular tracks
    assert list(recs["rank"][recs["user"] == "u3"]) == [1, 2]


def test_content_based_recommends_the_genre_played():
    tracks = tiny_tracks()
    rows = [("u0", f"t{i:02d}", i, 2) for i in (5, 6, 7)] + [("u1", "t00", 0, 1)]
    m = ContentBased().fit(interactions(rows, tracks), tracks)
    top = list(m.recommend(["u0"], 2)["track_id"])
    assert set(top) <= {"t08", "t09"}  # the rest of jazz (t05-t09)


def test_content_based_keeps_several_tastes():
    tracks = tiny_tracks()
    # 6 rock plays (heavier) + 4 folk tracks: two tastes, both represented at the top
    rows = [("u0", f"t{i:02d}", i, 3) for i in (0, 1, 2)] + [("u0", f"t{i:02d}", 10 + i, 1) for i in (10, 11, 12)]
    m = ContentBased(n_tastes=2, min_tracks=3).fit(interactions(rows, tracks), tracks)
    assert np.count_nonzero(m.shares_[0]) == 2
    top = list(m.recommend(["u0"], 4)["track_id"])
    assert set(top) == {"t03", "t04", "t13", "t14"}
    assert top[0] in ("t03", "t04")  # the heavier taste first
    one = ContentBased(n_tastes=1).fit(interactions(rows, tracks), tracks)
    assert np.count_nonzero(one.shares_[0]) == 1


def test_taste_mixture_math():
    X = np.array([[1.0, 0], [1, 0], [0, 1]])
    T, s = user_tastes(X, np.array([1.0, 1.0, 2.0]), n_tastes=3, min_tracks=1)
    assert s[:2].sum() == pytest.approx(1.0) and s[2] == 0.0
    assert sorted(np.round(s[:2], 6)) == [0.5, 0.5]
    sims = np.array([[[1.0, 0.0], [0.0, 1.0]]])  # tastes x items
    out = mixture_scores(sims, np.array([[0.5, 0.5]]), 0.1)
    assert out[0, 0] == pytest.approx(out[0, 1])
    out = mixture_scores(sims, np.array([[0.9, 0.1]]), 0.1)
    assert out[0, 0] > out[0, 1]
    assert np.isneginf(mixture_scores(sims, np.zeros((1, 2)), 0.1)).all()


def test_collaborative_recommends_what_similar_users_played():
    tracks = tiny_tracks()
    X = interactions(two_groups(tracks), tracks)
    m = Collaborative(factors=4, iterations=20, regularization=0.01).fit(X, tracks)
    recs = m.recommend(["u00", "u13"], 1)
    assert list(recs["track_id"]) == ["t00", "t08"]  # each user's one missing track of their group


def test_zscore_rows_standardises_over_the_chosen_columns():
    S = np.array([[1.0, 3.0, 10.0], [2.0, 2.0, 5.0]])
    np.testing.assert_allclose(zscore_rows(S, np.array([True, True, False])), [[-1.0, 1.0, 8.0], [0.0, 0.0, 3.0]])
    z = zscore_rows(S.astype(np.float32))
    assert z.dtype == np.float32
    np.testing.assert_allclose(z.mean(axis=1), 0.0, atol=1e-6)
    np.testing.assert_allclose(z.std(axis=1), 1.0, rtol=1e-6)


def test_top_k_pads_and_orders_like_the_index():
    vals, cols = top_k(np.array([[0.5, 2.0, -np.inf, 2.0]], np.float32), 5)
    assert cols.tolist() == [[1, 3, 0, -1, -1]]  # ties by column; -inf never chosen; padded to k
    assert vals.dtype == np.float32 and np.isneginf(vals[0, 3:]).all()


def test_saved_model_recommends_the_same(tmp_path):
    tracks = tiny_tracks()
    X = interactions(two_groups(tracks) + [("new", "t10", 0, 1)], tracks)
    m = Hybrid(collaborative=Collaborative(factors=4, iterations=5), weight=0.7, cold_offset=-1.0).fit(X, tracks)
    save_model(m, tmp_path / "m")
    back = load_model(tmp_path / "m")
    assert isinstance(back, Hybrid) and back.weight_ == 0.7
    pd.testing.assert_frame_equal(back.recommend(k=5), m.recommend(k=5))


# --- events -----------------------------------------------------------------------------------------------------
def test_bad_events_are_counted_and_skipped_never_silently(caplog, tmp_path):
    path = tmp_path / "events.csv"
    path.write_text("user,track,timestamp,plays\n"
                    "u1,t00,2024-01-01T10:00:00Z,2\n"
                    "u1,t00,2024-01-01T10:00:00Z,2\n"  # duplicate
                    "u1,nope,2024-01-02,1\n"  # unknown track
                    "u2,t01,not a time,1\n"  # bad timestamp
                    "u2,t01,2024-01-03,-4\n"  # negative plays
                    "u2,t02,2024-01-03,0\n"  # zero plays
                    "u2,t03,2024-01-03,many\n"  # not a number
                    ",t03,2024-01-03,1\n"  # no user
                    "u2,t04,1704300000,3\n")  # Unix seconds
    from mir.recommend import read_events

    with caplog.at_level(logging.WARNING, logger="mir.recommend.events"):
        clean, report = clean_events(read_events(path), {f"t{i:02d}": f"t{i:02d}" for i in range(5)}, source=str(path))
    assert report.rows == 9 and report.kept == 2 and report.n_skipped == 7
    assert {k: v for k, v in report.skipped.items() if v} == {
        "duplicate": 1, "unknown_track": 1, "bad_timestamp": 1, "negative_plays": 1, "zero_plays": 1,
        "bad_plays": 1, "missing_user": 1}
    assert report.examples["unknown_track"] == ["nope"]
    assert "7" not in report.summary() or "skipped" in report.summary()
    assert "1 unknown track" in report.summary() and "events.csv" in caplog.text
    assert list(clean["track_id"]) == ["t00", "t04"]
    assert list(clean["timestamp"]) == [1704103200, 1704300000]


def test_events_need_the_columns(tmp_path):
    from mir.recommend import read_events

    path = tmp_path / "e.csv"
    path.write_text("who,what\n1,2\n")
    with pytest.raises(ParameterError, match="missing"):
        read_events(path)
    with pytest.raises(ParameterError, match="does not exist"):
        read_events(tmp_path / "none.parquet")


def test_track_resolver_maps_ids_hashes_and_paths(tmp_path):
    resolve = track_resolver(["aa11", "bb22"], hashes=["h1", "h2"], paths=["/music/rock/x.flac", "/music/jazz/x.flac"],
                             base="/music")
    assert resolve("aa11") == "aa11" and resolve("h2") == "bb22"
    assert resolve("/music/jazz/x.flac") == "bb22"
    assert resolve("rock/x.flac") == "aa11"  # relative to base
    assert resolve("audio/rock/x.flac") is None  # a path under another folder is not guessed
    assert resolve("x.flac") is None  # ambiguous tail
    assert resolve("nope") is None


def test_timestamps_of_any_unit_become_seconds():
    frame = pd.DataFrame({"user": ["a", "b"], "track": ["t", "t"],
                          "timestamp": pd.to_datetime(["2024-01-01", "2024-01-02"]).astype("datetime64[ms]")})
    clean, _ = clean_events(frame)
    assert list(clean["timestamp"]) == [1704067200, 1704153600]
    assert list(clean["plays"]) == [1.0, 1.0]  # no plays column: one per row


# --- split ------------------------------------------------------------------------------------------------------
def test_temporal_split_holds_out_each_users_last_events():
    tracks = tiny_tracks()
    rows = [("u0", f"t{i:02d}", i, 1) for i in range(10)] + [("u0", "t00", 99, 1)]  # last event: a repeat
    rows += [("u1", "t00", 5, 1), ("u1", "t01", 1, 1)]  # out of order in the input
    rows += [("u2", "t03", 1, 1)]  # one event: stays in train
    X = interactions(rows, tracks)
    train, relevant = temporal_split(X, 0.2)
    assert len(X) - len(train) == 3  # u0: round(0.2 * 11) = 2, u1: 1
    assert sorted(relevant) == [0, 1] and list(relevant[0]) == [9]  # t00 played before: not new
    assert list(relevant[1]) == [0]  # u1's later event is t00 (timestamp 5)
    assert 2 not in relevant


# --- re-ranking ----------------------------------------------------------------------------------------------------
def test_artist_cap_diversity_and_filters():
    tracks = tiny_tracks()
    items = np.array([[0, 2, 4, 1, 3, 5]])  # rock: artists rock-0 (t00,t02,t04) and rock-1 (t01,t03), then jazz
    scores = np.array([[6, 5, 4, 3, 2, 1]], np.float32)
    capped, _ = Reranker(tracks, max_per_artist=1).rerank(items, scores, 3)
    assert list(capped[0]) == [0, 1, 5]
    # diversity: after t00, the other rock tracks are near-duplicates; MMR brings jazz forward
    plain, _ = Reranker(tracks).rerank(items, scores, 3)
    assert list(plain[0]) == [0, 2, 4]
    diverse, _ = Reranker(tracks, diversity=0.7).rerank(items, scores, 3)
    assert diverse[0][0] == 0 and 5 in diverse[0][:2]
    mask = Reranker(tracks, genres=["Jazz"], tags=["fast"], bpm=(0, 200)).allowed(len(tracks))
    assert list(np.flatnonzero(mask)) == [5, 7, 9]
    with pytest.raises(ParameterError, match="no track passes"):
        Reranker(tracks, bpm=(300, 400))


def test_recommend_applies_filters_and_cap_end_to_end():
    tracks = tiny_tracks()
    X = interactions(two_groups(tracks), tracks)
    m = Popularity().fit(X, tracks)
    recs = m.recommend(k=3, rerank=Reranker(tracks, genres=["jazz", "folk"], max_per_artist=1))
    picked = recs.merge(pd.DataFrame({"track_id": tracks.track_ids, "artist": tracks.artist, "genre": tracks.genre}))
    assert set(picked["genre"]) <= {"jazz", "folk"}
    assert not picked.duplicated(["user", "artist"]).any()
    assert not recs.duplicated(["user", "track_id"]).any()
    kept = m.recommend(["u00"], 5, exclude_seen=False)
    assert set(kept["track_id"]) & {"t01", "t02", "t03", "t04"}  # played tracks allowed when asked


def test_cli_bpm_range_reads_like_mir_similar():
    from mir.cli.recommend import _bpm

    assert _bpm("90-120") == _bpm("90:120") == (90.0, 120.0)
    assert _bpm("90-") == (90.0, float("inf")) and _bpm("-120") == (0.0, 120.0) and _bpm(None) is None
    with pytest.raises(ParameterError, match="--bpm"):
        _bpm("fast")


def test_demo_affinity_reads_the_hidden_tastes_of_a_mirdemo_folder(tmp_path):
    import json

    from mir.catalog.labels import TAG_SEPARATOR
    from mir.datasets.truth import demo_affinity

    tastes = {"beta": 2.0, "users": {"u1": {"genres": {"rock": 0.5}, "tags": {"fast": 1.0, "loud": 0.0}}}}
    (tmp_path / "tastes.json").write_text(json.dumps(tastes))
    pd.DataFrame({"track": ["a.ogg", "b.ogg", "gone.ogg"], "genre": ["rock", "jazz", "rock"],
                  "tags": [f"fast{TAG_SEPARATOR}loud", "", "fast"]}).to_csv(tmp_path / "labels.csv", index=False)
    A = demo_affinity(tmp_path, np.array(["u1", "u2"]), {"a.ogg": "ta", "b.ogg": "tb"}.get, np.array(["tb", "ta", "tc"]))
    assert A[0, 1] == pytest.approx(np.log(0.5 + 1e-3) + 2.0 * 0.5)  # rock, mean tag weight 0.5
    assert A[0, 0] == pytest.approx(np.log(1e-3))  # jazz, no tags
    assert np.isnan(A[0, 2]) and np.isnan(A[1]).all()  # a track without labels; a user the model lacks
