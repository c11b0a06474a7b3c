"""The built-in demo collection: build ``tiny`` once per session and check what it holds.

Builds share one parsed-score cache, so only the first parses scores (about 4 s each build).
"""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from mir.datasets import GENRES, TAG_GROUPS, TAG_VOCABULARY, available, build, info, load_labels
from mir.datasets import _build, _render
from mir.datasets._corpus import Work, assign_splits
from mir.datasets._grooves import BANDS
from mir.datasets._spec import SIZES, STYLE_BY_NAME
from mir.errors import DatasetError, LabelError, ParameterError

FONTS = ("TimGM6mb",)  # as the mirdemo_tiny fixture: the same bytes with and without Debian's soundfonts
TINY = SIZES["tiny"]
N_TINY = TINY.clips_per_genre * len(GENRES)
SR = 22050


def _digests(root: Path) -> dict[str, str]:
    """blake2b of every file of a build except the manifest (it holds timings) and .build/."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        if p.is_file() and not rel.startswith(".build") and rel != "manifest.json":
            out[rel] = hashlib.blake2b(p.read_bytes(), digest_size=16).hexdigest()
    return out


@pytest.fixture(scope="session")
def tiny(mirdemo_tiny):
    return mirdemo_tiny


@pytest.fixture(scope="session")
def labels(tiny) -> pd.DataFrame:
    return load_labels(tiny.labels_path, check_files=True)


@pytest.fixture(scope="session")
def clips(tiny) -> pd.DataFrame:
    return pd.read_parquet(tiny.clips_path)


# --- what the build holds -------------------------------------------------------------------------------
def test_manifest_counts(tiny):
    m = json.loads((tiny.path / "manifest.json").read_text())
    assert m["name"] == "mirdemo" and m["size"] == "tiny" and m["seed"] == 0
    assert tiny.n_clips == N_TINY and tiny.n_rejected == 0
    assert tiny.genres == {g: TINY.clips_per_genre for g in GENRES}
    assert tiny.duration_s == pytest.approx(N_TINY * TINY.clip_seconds)
    assert info(tiny.path).n_clips == N_TINY
    for name in ("labels.csv", "clips.parquet", "works.parquet", "events.parquet", "tastes.json"):
        assert (tiny.path / name).is_file()


def test_labels_file_format(tiny, labels):
    header = (tiny.path / "labels.csv").read_text().splitlines()[0]
    assert header == "track,genre,tags"
    assert len(labels) == N_TINY and labels["track"].is_unique
    assert set(labels["genre"]) == set(GENRES)
    for track, genre, tags in labels.itertuples(index=False):
        assert track.startswith(f"audio/{genre}/")
        assert set(tags) <= set(TAG_VOCABULARY), tags
        for group in ("tempo", "mode", "meter", "texture"):
            assert len(set(tags) & set(TAG_GROUPS[group])) == 1, (track, group, tags)
        assert set(tags) & set(TAG_GROUPS["instrument"]), tags


def test_tags_agree_with_recorded_draws(labels, clips):
    ok = clips[clips["status"] == "ok"].set_index("track")
    for track, _, tags in labels.itertuples(index=False):
        row = ok.loc[track]
        assert row["tempo_bucket"] in tags and row["mode"] in tags and row["meter_class"] in tags
        assert set(row["families"].split("|")) == set(tags) & set(TAG_GROUPS["instrument"])
        assert ("drums" in tags) == bool(row["drums"])
        assert ("solo" in tags) == (row["n_programs"] == 1 and not row["drums"])
        limit = len(BANDS[row["genre_leaf"]]) if STYLE_BY_NAME[row["genre"]].procedural else 3
        assert 1 <= row["n_programs"] <= limit


def test_every_file_decodes_with_the_right_shape_and_level(tiny, labels):
    n = int(TINY.clip_seconds * SR)
    formats = set()
    for track in labels["track"]:
        path = tiny.path / track
        y, sr = sf.read(path, dtype="float32", always_2d=True)
        formats.add(path.suffix)
        assert sr == SR and y.shape == (n, 2), (track, y.shape)
        assert np.all(np.isfinite(y))
        problem = _render.check_audio(y, seconds=TINY.clip_seconds, max_gap=1.5 + 0.5)  # lossy codecs smear a little
        assert problem is None, (track, problem)
    assert formats == {".flac", ".ogg", ".wav", ".mp3"}


def test_file_metadata_carries_the_labels(tiny, labels):
    import mutagen

    seen = set()
    for track, genre, tags in labels.itertuples(index=False):
        ext = Path(track).suffix
        if ext in seen:
            continue
        seen.add(ext)
        f = mutagen.File(tiny.path / track)
        text = " ".join(str(v) for v in (f.tags.values() if hasattr(f.tags, "values") else f.tags))
        assert genre in text and "|".join(tags) in text, (track, text)


def test_genres_are_two_level_and_each_clip_records_its_soundfont_and_effects(tiny, labels, clips):
    from mir.datasets._spec import PROCEDURAL_GENRES, TOP_GENRES

    assert all(g.count("/") == 1 and g.split("/")[0] in TOP_GENRES for g in labels["genre"])
    ok = clips[clips["status"] == "ok"]
    assert (ok["genre_top"] + "/" + ok["genre_leaf"] == ok["genre"]).all()
    assert set(ok["genre"]) >= set(PROCEDURAL_GENRES)
    m = tiny.manifest
    assert [f["name"] for f in m["soundfonts"]] == list(FONTS) and m["soundfonts"][0]["file"] == "TimGM6mb.sf2"
    assert set(ok["soundfont"]) == set(FONTS) and sum(m["counts"]["soundfonts"].values()) == len(ok)
    assert m["genre_tops"]["folk"] == [g for g in GENRES if g.startswith("folk/")] and "pedalboard_version" in m
    for row in ok.itertuples():
        chain = json.loads(row.effects)
        assert chain and chain[0]["bus"] in ("drive", "pump", "mix") and any(e["effect"] == "EQ" for e in chain)
        driven = any(e["bus"] == "drive" for e in chain)
        arrangement = json.loads(row.arrangement)
        assert driven == any(c.get("bus") == "drive" for c in arrangement), row.track
        assert (row.progression != "") == STYLE_BY_NAME[row.genre].procedural


def test_a_build_refuses_to_resume_with_other_soundfonts(tiny, tmp_path, score_cache):
    copy = tmp_path / "copy"
    shutil.copytree(tiny.path, copy)
    state = copy / ".build" / "state.json"
    assert json.loads(state.read_text())["soundfonts"] == list(FONTS)
    # as if a machine with Debian's FluidR3 had started this build: its clips drew from two fonts
    state.write_text(json.dumps({**json.loads(state.read_text()), "soundfonts": ["TimGM6mb", "FluidR3_GM"]}))
    with pytest.raises(DatasetError, match=r"soundfonts=\['TimGM6mb', 'FluidR3_GM'\]; this one: soundfonts=\['TimGM6mb'\]"):
        build("mirdemo", "tiny", copy, seed=0, workers=1, progress=False, cache_dir=score_cache, soundfonts=FONTS)


def test_splits_have_no_work_or_group_leakage(clips):
    ok = clips[clips["status"] == "ok"]
    for key in ("work_id", "group"):
        assert (ok.groupby(key)["split"].nunique() == 1).all(), key
    per = ok.groupby(["genre", "split"]).size().unstack(fill_value=0)
    assert (per[["train", "valid", "test"]] > 0).all().all()


def test_split_assignment_is_per_group_and_stable():
    def w(i, genre, group):
        return Work(f"x/{i}", genre, "c", "c", "t", "p", -1, group, 1)

    works = [w(i, "a", f"g{i % 7}") for i in range(40)] + [w(100 + i, "b", f"g{i % 7}") for i in range(5)]
    first = {x.work_id: x.split for x in assign_splits(works)}
    assert first == {x.work_id: x.split for x in assign_splits(list(reversed(works)))}
    by_group = {}
    for x in assign_splits(works):
        assert by_group.setdefault(x.group, x.split) == x.split
    assert {"train", "valid", "test"} <= set(first.values())


def test_listening_histories(tiny, labels):
    events = pd.read_parquet(tiny.events_path)
    tastes = json.loads(tiny.tastes_path.read_text())
    assert list(events.columns) == ["user", "track", "timestamp", "plays"]
    assert set(events["track"]) <= set(labels["track"])
    assert (events["plays"] >= 1).all()
    totals = events.groupby("user")["plays"].sum()
    assert ((totals >= 1) & (totals <= 3)).any(), "some users have only 1-3 plays"
    assert totals.max() > 20, "activity is heavy-tailed"
    assert len(set(labels["track"]) - set(events["track"])) > 0, "some tracks are never played"
    repeats = (events["plays"] > 1).any() or events.duplicated(["user", "track"]).any()
    assert repeats
    assert events.groupby("user")["timestamp"].apply(lambda s: s.is_monotonic_increasing).all()
    assert set(tastes["users"]) == set(events["user"])
    user = tastes["users"][events["user"].iloc[0]]
    assert set(user["genres"]) == set(GENRES) and set(user["tags"]) == set(TAG_VOCABULARY)
    assert sum(user["genres"].values()) == pytest.approx(1.0, abs=1e-4)


# --- determinism and resume -------------------------------------------------------------------------------
def test_same_seed_is_byte_identical_with_two_worker_processes(tiny, tmp_path, score_cache):
    # the fixture was built in one process; this build renders in a pool of two (mir.parallel.process_pool)
    again = build("mirdemo", "tiny", tmp_path / "again", seed=0, workers=2, progress=False,
                  cache_dir=score_cache, soundfonts=FONTS)
    assert _digests(again.path) == _digests(tiny.path)


@pytest.mark.slow  # ~25 s: a second full build
def test_other_seed_differs_but_keeps_splits(tiny, clips, tmp_path, score_cache):
    other = build("mirdemo", "tiny", tmp_path / "seed1", seed=1, workers=1, progress=False,
                  cache_dir=score_cache, soundfonts=FONTS)
    a, b = _digests(tiny.path), _digests(other.path)
    audio = [k for k in a if k.startswith("audio/")]
    assert sum(a[k] != b.get(k) for k in audio) == len(audio)
    assert (tiny.path / "labels.csv").read_bytes() != (other.path / "labels.csv").read_bytes()
    c1 = pd.read_parquet(other.clips_path)
    assert dict(zip(clips["work_id"], clips["split"])) == dict(zip(c1["work_id"], c1["split"]))


def test_resume_rebuilds_only_missing_or_damaged_clips(tiny, labels, tmp_path, score_cache):
    copy = tmp_path / "copy"
    shutil.copytree(tiny.path, copy)
    gone, damaged = labels["track"].iloc[3], labels["track"].iloc[10]
    (copy / gone).unlink()
    (copy / damaged).write_bytes((copy / damaged).read_bytes()[:1000])
    again = build("mirdemo", "tiny", copy, seed=0, workers=1, progress=False,
                  cache_dir=score_cache, soundfonts=FONTS)
    assert again.manifest["timings"]["clips_rendered_this_run"] == 2
    assert _digests(copy) == _digests(tiny.path)


@pytest.mark.slow  # ~35 s; test_resume_rebuilds_only_missing_or_damaged_clips is the fast check
def test_interrupted_build_resumes(tiny, tmp_path, score_cache, monkeypatch):
    out = tmp_path / "interrupted"
    real = _render.render_clip
    calls = {"n": 0}

    def flaky(*args, **kw):
        calls["n"] += 1
        if calls["n"] > 5:
            raise KeyboardInterrupt
        return real(*args, **kw)

    monkeypatch.setattr(_render, "render_clip", flaky)
    with pytest.raises(KeyboardInterrupt):
        build("mirdemo", "tiny", out, seed=0, workers=1, progress=False,
                  cache_dir=score_cache, soundfonts=FONTS)
    monkeypatch.setattr(_render, "render_clip", real)
    assert not (out / "labels.csv").exists()
    done = build("mirdemo", "tiny", out, seed=0, workers=1, progress=False,
                  cache_dir=score_cache, soundfonts=FONTS)
    assert done.manifest["timings"]["clips_rendered_this_run"] == N_TINY - 5
    assert done.build_seconds > done.manifest["timings"]["this_run_s"]  # the interrupted run's time is carried
    assert _digests(out) == _digests(tiny.path)
    reused = build("mirdemo", "tiny", out, seed=0, workers=1, progress=False,
                  cache_dir=score_cache, soundfonts=FONTS)
    assert reused.n_clips == N_TINY  # a finished build is reused as it is


def test_refuses_a_folder_holding_something_else(tiny, tmp_path, score_cache):
    with pytest.raises(DatasetError, match="different build"):
        build("mirdemo", "tiny", tiny.path, seed=7, workers=1, progress=False,
                  cache_dir=score_cache, soundfonts=FONTS)
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(DatasetError, match="not a mirdemo build"):
        build("mirdemo", "tiny", tmp_path, seed=0, workers=1, progress=False,
                  cache_dir=score_cache, soundfonts=FONTS)


# --- API, CLI and renderer guards ------------------------------------------------------------------------
def test_unknown_name_and_size():
    assert available() == ["mirdemo"]
    with pytest.raises(DatasetError, match="known datasets: mirdemo"):
        build("nope", "tiny", "/nonexistent")
    with pytest.raises(ParameterError, match="huge"):
        build("mirdemo", "huge", "/nonexistent")
    with pytest.raises(ParameterError, match="seed"):
        build("mirdemo", "tiny", "/nonexistent", seed=-1)


def test_cli_info_and_errors(tiny, capsys):
    from mir.cli.main import main

    assert main(["dataset", "info", str(tiny.path)]) == 0
    assert f"clips: {N_TINY}" in capsys.readouterr().out
    assert main(["dataset", "build", "nope", "--size", "tiny", "--out", str(tiny.path)]) == 1
    assert "known datasets" in capsys.readouterr().err


@pytest.mark.parametrize("text, match", [
    ("file,genre,tags\na.wav,rock,\n", "line 1: columns"),
    ("track,genre,tags\na.wav,rock,\na.wav,pop,\n", "line 3: track 'a.wav' already listed on line 2"),
    ("track,genre,tags\na.wav,,\n", "line 2: .*neither a genre nor tags"),
    ("track,genre,tags\na.wav,rock\n", "line 2: 2 fields"),
    ("track,genre,tags\n", "no labelled tracks"),
    ("", "empty file"),
])
def test_load_labels_rejects_malformed_files(tmp_path, text, match):
    path = tmp_path / "labels.csv"
    path.write_text(text)
    with pytest.raises(LabelError, match=match):
        load_labels(path)


def test_load_labels_parses_tags(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_text("track,genre,tags\na.wav,rock, loud | fast||loud\nb.ogg,,calm\n")
    df = load_labels(path)
    assert list(df["tags"]) == [("loud", "fast"), ("calm",)]
    assert list(df["genre"]) == ["rock", ""]
    with pytest.raises(LabelError, match="not found"):
        load_labels(path, check_files=True)


def test_audio_checks_flag_bad_renders():
    n = int(4.0 * SR)
    t = np.arange(n) / SR
    good = np.stack([0.1 * np.sin(2 * np.pi * 440 * t)] * 2, axis=1).astype(np.float32)
    assert _render.check_audio(good, seconds=4.0, max_gap=0.5) is None
    assert "wrong length" in _render.check_audio(good[:-10], seconds=4.0, max_gap=0.5)
    assert "clipped" in _render.check_audio(good * 20, seconds=4.0, max_gap=0.5)
    assert "silent" in _render.check_audio(good * 1e-4, seconds=4.0, max_gap=0.5)
    gap = good.copy()
    gap[int(0.5 * SR): int(2.0 * SR)] = 0
    assert "silent stretch" in _render.check_audio(gap, seconds=4.0, max_gap=0.5)


def test_lossy_overshoot_is_turned_down(tmp_path):
    t = np.arange(SR) / SR
    square = 0.95 * np.sign(np.sin(2 * np.pi * 220 * t))
    y = np.stack([square, square], axis=1).astype(np.float32)
    plan = _build.ClipPlan("c", "c.ogg", "w", "reel", "train", 0, "ogg", 1.0)
    _, _, (frames, sr, ch, peak), headroom = _build._save_checked(tmp_path / "c.ogg", y, plan, {"genre": "reel"})
    assert (frames, sr, ch) == (SR, SR, 2)
    assert peak < _render.CLIP_PEAK and headroom < 0
    assert sf.read(tmp_path / "c.ogg")[0].max() < _render.CLIP_PEAK


def test_renderer_stops_at_its_time_limit():
    events = [(0.0, 1.0, 0, 60, 100)]
    channels = [{"family": "piano", "program": 0, "volume": 100, "pan": 64, "channels": [0]}]
    y = _render.synthesise(events, channels, seconds=1.0)
    assert y.shape == (SR, 2) and np.abs(y).max() > 0.01
    with pytest.raises(DatasetError, match="longer than"):
        _render.synthesise(events, channels, seconds=1.0, time_limit=-1.0)


def test_harmonisation_follows_the_melody():
    # C major: bar 1 outlines C-E-G, bar 2 outlines G-B-D
    onset, pitch = [0, 1, 2, 3, 4, 5, 6, 7], [60, 64, 67, 64, 67, 71, 74, 71]
    chords = _render.harmonise(onset, [1] * 8, pitch, tonic=0, mode="major", window_q=4.0, length_q=8.0)
    assert [(root, q) for _, root, q in chords] == [(0, "maj"), (7, "maj")]


def test_plan_targets_and_formats():
    assert _build.split_targets(4) == {"train": 2, "valid": 1, "test": 1}
    t = _build.split_targets(460)
    assert sum(t.values()) == 460 and t["test"] == t["valid"] == 69
    assert SIZES["full"].clips_per_genre * len(GENRES) >= 5000
