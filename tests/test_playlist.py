"""mir.recommend.playlist: continuation and paths obey no-repeat, artist spread and smooth transitions."""
from __future__ import annotations

import numpy as np
import pytest

from mir.errors import ParameterError, TrackNotFoundError
from mir.recommend import TrackSet
from mir.recommend.playlist import camelot, continue_from, key_step, path_between, tempo_step


def catalogue(n=60, seed=1):
    g = np.random.default_rng(seed)
    emb = g.standard_normal((n, 6))
    keys = [f"{p} {m}" for p, m in zip(g.choice(["C", "D", "E", "F", "G", "A", "B"], n), g.choice(["major", "minor"], n))]
    return TrackSet(track_ids=[f"t{i:03d}" for i in range(n)], embeddings=emb, artist=[f"a{i % 6}" for i in range(n)],
                    tempo=g.uniform(70, 170, n), key=keys)


def test_camelot_wheel_and_tempo_folding():
    assert camelot("C major") == (8, "B") and camelot("A minor") == (8, "A") and camelot("G major") == (9, "B")
    assert camelot("Bb minor") == camelot("A# minor") and camelot(None) is None and camelot("H dur") is None
    assert key_step("C major", "A minor") == pytest.approx(1 / 6)  # relative keys
    assert key_step("C major", "G major") == pytest.approx(1 / 6)  # a fifth apart
    assert key_step("C major", "F# major") == pytest.approx(1.0)  # opposite side of the wheel
    assert tempo_step(120, 60) == 0.0 and tempo_step(100, 100 * 2 ** 0.25) == pytest.approx(0.25)
    assert tempo_step(np.nan, 90) == 0.0


def test_continuation_has_no_repeats_and_spreads_artists():
    tracks = catalogue()
    pl = continue_from(tracks, ["t000", "t007"], 30, artist_gap=3)
    assert len(pl.track_ids) == 30 and len(set(pl.track_ids)) == 30
    assert not {"t000", "t007"} & set(pl.track_ids)
    artists = [tracks.artist[tracks.index_of(t)] for t in ["t000", "t007", *pl.track_ids]]
    for i in range(1, len(artists)):
        assert artists[i] not in artists[max(0, i - 3):i], (i, artists)
    assert pl.relaxed == 0


def test_tempo_weight_smooths_transitions():
    tracks = catalogue()
    steps = {}
    for w in (0.0, 5.0):
        pl = continue_from(tracks, ["t000"], 20, tempo_weight=w, key_weight=0.0, artist_gap=0)
        seq = [tracks.tempo[tracks.index_of(t)] for t in ["t000", *pl.track_ids]]
        steps[w] = np.mean([tempo_step(a, b) for a, b in zip(seq, seq[1:])])
    assert steps[5.0] < 0.5 * steps[0.0]


def test_artist_rule_relaxes_only_when_it_must():
    tracks = TrackSet(track_ids=["a", "b", "c"], embeddings=np.eye(3), artist=["x", "x", "x"])
    pl = continue_from(tracks, ["a"], 2, artist_gap=2)
    assert sorted(pl.track_ids) == ["b", "c"] and pl.relaxed == 2


def test_path_walks_from_start_to_end():
    tracks = catalogue()
    E = tracks.embeddings
    pl = path_between(tracks, "t001", "t002", 12)
    assert pl.track_ids[0] == "t001" and pl.track_ids[-1] == "t002" and len(set(pl.track_ids)) == 12
    # the walk drifts: similarity to the end rises along the path (compare the two halves)
    sims = [float(E[tracks.index_of(t)] @ E[2]) for t in pl.track_ids[1:-1]]
    assert np.mean(sims[5:]) > np.mean(sims[:5])


def test_bad_playlist_requests():
    tracks = catalogue()
    with pytest.raises(ParameterError, match="twice"):
        continue_from(tracks, ["t000", "t000"])
    with pytest.raises(ParameterError, match="different"):
        path_between(tracks, "t001", "t001")
    with pytest.raises(TrackNotFoundError):
        continue_from(tracks, ["zzz"])
    with pytest.raises(ParameterError, match="length"):
        continue_from(tracks, ["t000"], 0)


def test_a_short_playlist_says_why_and_untitled_m3u_entries_show_the_file_name():
    from mir.recommend.playlist import m3u_text, playlist_doc, shortfall

    tracks = TrackSet(track_ids=[f"t{i}" for i in range(14)], embeddings=np.eye(14),
                      path=[f"/music/song {i}.ogg" for i in range(14)], title=["Named"] + [None] * 13)
    pl = continue_from(tracks, ["t0"], 30)
    assert len(pl.track_ids) == 13
    assert shortfall(pl, tracks) == ("13 of 30 tracks: the library has 14 tagged tracks, 1 of them the seed, and a "
                                     "playlist never repeats a track (tag more tracks for longer playlists)")
    assert playlist_doc(pl, tracks)["shortfall"] == shortfall(pl, tracks)
    assert shortfall(continue_from(tracks, ["t0"], 5), tracks) is None
    lines = m3u_text(pl, tracks).splitlines()
    assert lines[1].endswith(f",song {pl.track_ids[0][1:]}.ogg") and lines[2] == f"/music/song {pl.track_ids[0][1:]}.ogg"
