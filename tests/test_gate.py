"""The music gate: fitting on features of a debug model, weights_only round trip, the ``music`` column of
tagging, and ``--music-only`` in similar filters, recommend re-ranking and playlists."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from mir import audio
from mir.catalog import Library, analyze
from mir.catalog.predictions import load_tags, music_probs, track_tags
from mir.cli.main import main as cli
from mir.config import get_config
from mir.errors import ModelError, ParameterError
from mir.models import build_model, debug, load_checkpoint, save_checkpoint
from mir.models.gate import GATE_KEY, MusicGate, gate_of
from mir.models.inference import prepare_model
from mir.recommend import Reranker, TrackSet
from mir.recommend.playlist import continue_from
from mir.similar import Filters
from mir.similar.filters import music_mask
from mir.tagging import predict_files, tag
from mir.train.gate import clip_features, fit_gate, write_gated
from mir.train.metrics import roc_auc

SR = 22050


def music_like(seed: int, seconds: float = 4.0) -> np.ndarray:
    """Tones on a beat: a few harmonics switching notes every 0.25 s, with clicks."""
    g = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    notes = g.choice([220.0, 247.0, 262.0, 294.0, 330.0, 392.0], int(seconds * 4) + 1)
    f = notes[(t * 4).astype(int)]
    y = sum(0.3 / h * np.sin(2 * np.pi * h * f * t) for h in (1, 2, 3)) * np.exp(-6 * (t % 0.25))
    y[(np.arange(t.size) % (SR // 2)) < 40] += 0.5
    return (0.8 * y / np.abs(y).max()).astype(np.float32)


def noise_like(seed: int, seconds: float = 4.0) -> np.ndarray:
    """Speech-like noise: white noise shaped by a slow random syllable envelope."""
    g = np.random.default_rng(1000 + seed)
    n = int(seconds * SR)
    env = np.repeat(g.uniform(0, 1, n // 2000 + 1), 2000)[:n] ** 2
    y = g.standard_normal(n) * (0.05 + env)
    return (0.5 * y / np.abs(y).max()).astype(np.float32)


def save_debug(path, *, extra=None) -> str:
    torch.manual_seed(0)
    config = debug(n_tags=4, n_genres=3)
    model = build_model(config)
    with torch.no_grad():
        model.input_norm.running_mean.fill_(-40.0)
        model.input_norm.running_var.fill_(400.0)
    return save_checkpoint(path, model, config=config, tags=[f"t{i}" for i in range(4)], genres=["a", "b", "c"],
                           thresholds=[0.5] * 4, metrics={}, analysis=dataclasses.asdict(get_config().analysis),
                           extra=extra)


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    root = tmp_path_factory.mktemp("gate")
    paths, labels = [], []
    for i in range(12):
        for label, make in ((1, music_like), (0, noise_like)):
            p = root / "clips" / f"{'m' if label else 'n'}{i:02d}.wav"
            audio.save(p, make(i), SR)
            paths.append(str(p))
            labels.append(label)
    model = root / "debug.pt"
    save_debug(model)
    return {"root": root, "paths": paths, "labels": np.array(labels), "model": model}


@pytest.fixture(scope="module")
def gated(clips):
    """A debug model with a gate fitted on the first 16 clips (valid: the rest) and written as a new checkpoint."""
    loaded = load_checkpoint(clips["model"])
    model = prepare_model(loaded.model)
    feats, kept = clip_features(model, clips["paths"], [4.0] * len(clips["paths"]),
                                chunk_frames=loaded.config.chunk_frames)
    assert kept.tolist() == list(range(len(clips["paths"])))
    y = clips["labels"]
    gate, fit = fit_gate(feats[:16], y[:16], feats[16:], y[16:])
    out = clips["root"] / "gated.pt"
    new_id = write_gated(loaded, gate, out, metrics={"C": fit["C"]})
    return {"gate": gate, "fit": fit, "path": out, "model_id": new_id, "base_id": loaded.model_id, "features": feats}


def test_gate_separates_tones_from_noise(gated, clips):
    assert gated["features"].shape == (24, 32)  # mean and std of the debug model's 16-d chunk embeddings
    p = gated["gate"].probability(gated["features"])
    assert roc_auc(clips["labels"][16:], p[16:]) == 1.0
    assert set(gated["fit"]["valid_auc"]) == {"0.001", "0.003", "0.01", "0.03", "0.1", "0.3", "1.0"}


def test_gate_round_trips_through_a_weights_only_checkpoint(gated, clips):
    loaded = load_checkpoint(gated["path"])  # weights_only=True inside
    raw = torch.load(gated["path"], weights_only=True)
    assert isinstance(raw["extra"][GATE_KEY]["coef"], list)  # plain floats, no sklearn object
    assert loaded.music_gate is not None
    x = gated["features"]
    np.testing.assert_array_equal(loaded.music_gate.probability(x), gated["gate"].probability(x))
    # same weights, new id only through the gate; the ungated model keeps its id
    assert gated["model_id"] != gated["base_id"] and loaded.model_id == gated["model_id"]
    base = load_checkpoint(clips["model"])
    assert base.music_gate is None and base.model_id == gated["base_id"]
    for name, w in base.model.state_dict().items():
        assert torch.equal(w, loaded.model.state_dict()[name]), name
    assert loaded.metrics["music_gate"]["C"] == gated["fit"]["C"]


def test_edited_gate_is_refused(gated, tmp_path):
    raw = torch.load(gated["path"], weights_only=True)
    raw["extra"][GATE_KEY]["intercept"] += 1.0
    torch.save(raw, tmp_path / "edited.pt")
    with pytest.raises(ModelError, match="do not match the stored model_id"):
        load_checkpoint(tmp_path / "edited.pt")
    raw["extra"][GATE_KEY]["scale"][0] = -1.0
    with pytest.raises(ModelError, match="music gate is malformed"):
        gate_of(raw["extra"])
    with pytest.raises(ParameterError, match=r"shape \(n, 32\)"):
        gated["gate"].probability(np.zeros((2, 5)))


def test_predict_files_returns_music_only_with_a_gate(gated, clips):
    loaded = load_checkpoint(gated["path"])
    model = prepare_model(loaded.model)
    paths = [clips["paths"][i] for i in (16, 17, 18, 19)]  # m08, n08, m09, n09
    out = predict_files(model, paths, chunk_frames=loaded.config.chunk_frames, music_gate=loaded.music_gate)
    assert (out["music"] >= 0.5).tolist() == [True, False, True, False]
    assert "music" not in predict_files(model, paths, chunk_frames=loaded.config.chunk_frames)


@pytest.fixture(scope="module")
def library(clips, tmp_path_factory):
    lib = Library.open_or_create(tmp_path_factory.mktemp("gatelib") / "lib")
    lib.scan([clips["root"] / "clips"])
    analyze(lib, workers=1)
    return lib


def test_tagging_writes_music_for_gated_models_only(library, gated, clips, capsys):
    plain = tag(library, model=clips["model"])
    assert plain.non_music is None and "not music" not in plain.summary()
    frame = load_tags(library, plain.model_id)
    assert "music" in frame and frame["music"].isna().all()
    assert music_probs(library, plain.model_id) is None
    report = tag(library, model=gated["path"])
    assert report.done == 24 and report.non_music == 12
    assert "12 of them not music" in report.summary()
    frame = load_tags(library, report.model_id)
    is_music = frame["path"].str.contains("/m")
    assert ((frame["music"] >= 0.5) == is_music).all()
    row = track_tags(library, frame["hash"][0], report.model_id)
    assert row["music"] == pytest.approx(float(frame["music"][0]))
    assert track_tags(library, frame["hash"][0], plain.model_id)["music"] is None
    probs = music_probs(library, report.model_id)
    assert len(probs) == 24 and (probs >= 0.5).sum() == 12
    assert cli(["show", str(library.root), frame["track_id"][0], "--model", report.model_id]) == 0
    assert "music      " in capsys.readouterr().out


def test_api_track_detail_gives_the_music_probability(library, gated, clips):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # starlette's note that its TestClient will move to httpx2
        from fastapi.testclient import TestClient
    from mir.api import create_app

    report = tag(library, model=gated["path"])  # already tagged above: the newest model is the gated one
    frame = load_tags(library, report.model_id)
    with TestClient(create_app(library.root, read_only=True)) as client:
        d = client.get(f"/tracks/{frame['track_id'][0]}").json()
    assert d["model_id"] == report.model_id and d["music"] == pytest.approx(float(frame["music"][0]))


def test_loose_files_and_uploads_get_the_music_probability(library, gated, clips, capsys):
    """`mir tag FILE…` and the API's /analyze give the same music probability as tagging a library."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient
    from mir.api import create_app

    paths = [clips["paths"][i] for i in (16, 17)]  # m08 (music), n08 (noise)
    assert cli(["tag", *paths, "--model", str(gated["path"]), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    stored = load_tags(library, tag(library, model=gated["path"]).model_id).set_index("path")
    for r in rows:
        assert r["music"] == pytest.approx(float(stored.loc[str(Path(r["path"]).resolve()), "music"]), abs=1e-4)
    assert rows[0]["music"] >= 0.5 > rows[1]["music"]
    assert cli(["tag", *paths, "--model", str(gated["path"])]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["file", "genre", "BPM", "key", "music", "tags"]
    assert "(no)" not in lines[1] and "(no)" in lines[2] and "not music to the music gate" in lines[-1]
    assert cli(["tag", paths[0], "--model", str(clips["model"]), "--json"]) == 0  # no gate: no music
    assert json.loads(capsys.readouterr().out)[0]["music"] is None
    with TestClient(create_app(library.root, read_only=True)) as client:
        a = client.post("/analyze", content=Path(paths[1]).read_bytes(), headers={"content-type": "audio/wav"}).json()
    assert a["model_id"] == gated["model_id"] and a["music"] == pytest.approx(rows[1]["music"], abs=1e-4)
    from mir.similar import build_library_index, similar

    res = similar(build_library_index(library, gated["model_id"]), audio=paths[1], k=2)
    assert res.seeds[0]["music"] == pytest.approx(rows[1]["music"], abs=1e-4)
    assert cli(["similar", str(library.root), "--model", gated["model_id"], "--audio", paths[1], "-k", "1"]) == 0
    assert f"music {rows[1]['music']:.2f} (not music)" in capsys.readouterr().out.splitlines()[0]


def meta(music):
    m = pd.DataFrame({"artist": ["a", "b", "c", "d"], "music": music}, index=["t0", "t1", "t2", "t3"])
    m.attrs["model_id"] = "abc123"
    return m


def test_music_only_filter():
    f = Filters(music_only=True)
    assert f.per_track
    assert f.allowed(meta([0.9, 0.1, 0.5, np.nan])).tolist() == ["t0", "t2"]
    with pytest.raises(ParameterError, match="model abc123 has no music gate.*mir train-gate"):
        f.allowed(meta([np.nan] * 4))
    with pytest.raises(ParameterError, match="no music gate"):
        music_mask(None, "x")
    assert Filters().allowed(meta([np.nan] * 4)) is None  # off: nothing needed


def trackset(music):
    g = np.random.default_rng(0)
    n = len(music)
    return TrackSet(track_ids=[f"t{i}" for i in range(n)], embeddings=g.standard_normal((n, 4)),
                    artist=[f"a{i}" for i in range(n)], music=music, model_id="abc123")


def test_music_only_in_recommend_and_playlists():
    music = [0.9, 0.2, 0.8, 0.1, 0.7, 0.95]
    rr = Reranker(trackset(music), music_only=True)
    assert rr.allowed(6).tolist() == [True, False, True, False, True, True]
    with pytest.raises(ParameterError, match="no music gate"):
        Reranker(trackset([np.nan] * 6), music_only=True)
    tracks = trackset(music)
    pl = continue_from(tracks, ["t1"], 5, music_only=None)  # default: on, the tracks have music probabilities
    assert sorted(pl.track_ids) == ["t0", "t2", "t4", "t5"]  # the non-music seed may start it
    assert len(continue_from(tracks, ["t1"], 5, music_only=False).track_ids) == 5
    ungated = trackset([np.nan] * 6)
    assert len(continue_from(ungated, ["t1"], 5).track_ids) == 5  # default: off without a gate
    with pytest.raises(ParameterError, match="mir train-gate"):
        continue_from(ungated, ["t1"], 5, music_only=True)


def test_plain_gate_round_trip():
    g = MusicGate(mean=np.zeros(3), scale=np.ones(3), coef=np.array([1.0, -2.0, 0.5]), intercept=0.25)
    back = MusicGate.from_plain(g.to_plain())
    x = np.array([[1.0, 0.0, 2.0], [0.0, 1.0, 0.0]])
    np.testing.assert_allclose(back.probability(x), 1 / (1 + np.exp(-np.array([2.25, -1.75]))), rtol=1e-6)


def test_short_crops_give_every_music_clip_a_short_copy():
    from mir.train.gate import SHORT, short_crops

    music = [{"path": f"{i}.ogg", "duration": d, "music": 1, "kind": "music"} for i, d in enumerate([300.0, 4.0, 60.0])]
    crops = short_crops(music)
    assert [c["path"] for c in crops] == ["0.ogg", "1.ogg", "2.ogg"] and all(c["music"] == 1 for c in crops)
    assert all(SHORT[0] <= c["seconds"] <= SHORT[1] and c["seconds"] <= c["duration"] for c in crops)
    assert crops == short_crops(music)  # deterministic


def test_clip_features_honour_per_clip_lengths(clips):
    model = load_checkpoint(clips["model"]).model
    paths, durations = clips["paths"][:2], [4.0, 4.0]
    whole, _ = clip_features(model, paths, durations, chunk_frames=80, max_seconds=60.0)
    short, _ = clip_features(model, paths, durations, chunk_frames=80, max_seconds=60.0, lengths=[1.5, 60.0])
    assert not np.allclose(whole[0], short[0]) and np.allclose(whole[1], short[1])
    assert np.allclose(short[0][16:], 0.0)  # one chunk: no spread
