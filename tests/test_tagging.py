"""Chunked inference (mir.models.inference) and the batch tagging job (mir.tagging, `mir tag`, `mir show`)."""
from __future__ import annotations

import dataclasses
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from mir import audio
from mir.catalog import Library, analyze
from mir.cli.main import main as cli
from mir.config import get_config
from mir.errors import ModelError, ParameterError
from mir.models import build_model, debug, save_checkpoint
from mir.models.inference import (
    PAD_DB, chunk_starts, cpu_supports_bf16, cut_chunks, decide_tags, predict_chunks, predict_logmels, prepare_model,
)
from mir.catalog.predictions import load_embeddings, load_tags
from mir.models import checkpoint
from mir.tagging import tag, write_file_tags
from mir.tagging.worker import TagSettings, worker_model
from helpers import GENRES, SR, TAGS, save_debug_model, synth

# (seconds, format): one track shorter than a chunk (160 frames ≈ 3.7 s), the others 1-5 chunks
CLIPS = [(2.5, "wav"), (4.0, "flac"), (9.0, "ogg"), (12.0, "mp3"), (19.0, "wav"), (7.0, "flac")]


@pytest.fixture(scope="session")
def assets(tmp_path_factory) -> dict:
    """Audio clips, a scanned (not analysed) library, an analysed copy, and a debug checkpoint."""
    root = tmp_path_factory.mktemp("tagging")
    music = root / "music"
    music.mkdir()
    for i, (seconds, fmt) in enumerate(CLIPS):
        audio.save(music / f"clip{i}.{fmt}", synth(i, seconds), SR)
    model = root / "debug.pt"
    model_id = save_debug_model(model)
    fresh = root / "fresh"
    Library.open_or_create(fresh).scan([music])
    analysed = root / "analysed"
    shutil.copytree(fresh, analysed)
    analyze(Library(analysed), workers=1)
    return {"root": root, "music": music, "model": model, "model_id": model_id, "fresh": fresh, "analysed": analysed}


@pytest.fixture
def lib(assets, tmp_path) -> Library:
    """A private copy of the analysed library."""
    shutil.copytree(assets["analysed"], tmp_path / "lib")
    return Library(tmp_path / "lib")


@pytest.fixture(scope="session")
def tagged(assets, tmp_path_factory) -> Library:
    """An analysed library tagged in-process once (the reference run); read-only for tests."""
    path = tmp_path_factory.mktemp("tagged") / "lib"
    shutil.copytree(assets["analysed"], path)
    lib = Library(path)
    tag(lib, model=assets["model"])
    return lib


def tag_table(lib: Library, model_id: str):
    return lib.stages.table("tags", model_id).read().sort_values("hash").reset_index(drop=True)


def assert_same_tables(a, b) -> None:
    assert list(a["hash"]) == list(b["hash"])
    for col in ("tag_probs", "genre_probs", "embedding"):
        np.testing.assert_array_equal(np.stack(a[col].to_numpy()), np.stack(b[col].to_numpy()), err_msg=col)
    for col in ("genre", "n_chunks", "precision"):
        assert list(a[col]) == list(b[col]), col
    assert [list(t) for t in a["tags"]] == [list(t) for t in b["tags"]]


# --- chunking --------------------------------------------------------------------------------------
@pytest.mark.parametrize("n_frames, n_chunks, expected", [
    (500, None, [0, 160, 320]),  # tail of 20 frames dropped
    (480, None, [0, 160, 320]),
    (100, None, [0]),  # shorter than a chunk: one (padded) chunk
    (100, 3, [0]),
    (170, None, [0]),
    (1000, 2, [0, 840]),  # first and last full chunk
    (1000, 3, [0, 420, 840]),
    (1000, 1, [420]),  # the middle chunk
    (1000, 6, [0, 160, 320, 480, 640, 800]),  # asking for more than fit gives all
    (1000, 50, [0, 160, 320, 480, 640, 800]),
])
def test_chunk_starts(n_frames, n_chunks, expected):
    assert chunk_starts(n_frames, 160, n_chunks).tolist() == expected


def test_chunk_starts_evenly_spaced_chunks_never_overlap():
    for n_frames in range(160, 3000, 37):
        for n in range(1, 12):
            s = chunk_starts(n_frames, 160, n)
            assert len(s) == min(n, n_frames // 160) and s[-1] + 160 <= n_frames
            assert np.all(np.diff(s) >= 160)


@pytest.mark.parametrize("bad", [dict(n_frames=0), dict(chunk_frames=0), dict(n_chunks=0), dict(n_frames=2.5)])
def test_chunk_starts_rejects_bad_values(bad):
    args = dict(n_frames=100, chunk_frames=160, n_chunks=None) | bad
    name = next(iter(bad))
    with pytest.raises(ParameterError, match=name):
        chunk_starts(**args)


def test_cut_chunks_pads_short_tracks_with_silence(rng):
    mel = rng.normal(size=(4, 10)).astype(np.float32)
    out = cut_chunks(mel, np.array([0]), 16)
    np.testing.assert_array_equal(out[0, :, :10], mel)
    assert np.all(out[0, :, 10:] == PAD_DB)


# --- inference -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def model():
    torch.manual_seed(1)
    return build_model(debug(n_tags=len(TAGS), n_genres=len(GENRES))).eval()


@pytest.fixture(scope="module")
def mels():
    g = np.random.default_rng(3)
    return [g.normal(-40, 15, size=(128, n)).astype(np.float32) for n in (50, 160, 400, 1000, 333)]


def test_predict_logmels_is_the_mean_of_chunk_probabilities(model, mels):
    out = predict_logmels(model, mels, chunk_frames=160)
    assert out["tag_probs"].shape == (5, len(TAGS)) and out["genre_probs"].shape == (5, len(GENRES))
    assert out["embedding"].shape == (5, 16) and out["tag_probs"].dtype == np.float32
    assert out["n_chunks"].tolist() == [1, 1, 2, 6, 2]
    np.testing.assert_allclose(out["genre_probs"].sum(axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(out["embedding"], axis=1), 1.0, rtol=1e-6)
    mel = mels[3]  # by hand: 6 chunks through the plain model, sigmoid / softmax, mean
    x = torch.from_numpy(cut_chunks(mel, chunk_starts(mel.shape[1], 160), 160))
    with torch.no_grad():
        ref = model(x)
    np.testing.assert_allclose(out["tag_probs"][3], torch.sigmoid(ref.tags).mean(0).numpy(), atol=1e-6)
    np.testing.assert_allclose(out["genre_probs"][3], torch.softmax(ref.genre, -1).mean(0).numpy(), atol=1e-6)
    emb = ref.embedding.mean(0)
    np.testing.assert_allclose(out["embedding"][3], (emb / emb.norm()).numpy(), atol=1e-6)


def test_predictions_do_not_depend_on_grouping_threads_or_memory_format(model, mels):
    """Fixed batch shapes make each track's result bit-identical however tracks are grouped."""
    whole = predict_logmels(model, mels, chunk_frames=160, batch_size=4)
    parts = [predict_logmels(model, mels[i:i + 2], chunk_frames=160, batch_size=4) for i in (0, 2, 4)]
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        single = predict_logmels(model, mels, chunk_frames=160, batch_size=4)
    finally:
        torch.set_num_threads(threads)
    for key in whole:
        np.testing.assert_array_equal(whole[key], np.concatenate([p[key] for p in parts]), err_msg=key)
        np.testing.assert_array_equal(whole[key], single[key], err_msg=key)
    cl = predict_logmels(prepare_model(build_model(debug(n_tags=8, n_genres=4)).eval()), mels, chunk_frames=160)
    assert cl["tag_probs"].shape == (5, 8)
    assert model.training is False


def test_predict_logmels_restores_training_mode_and_checks_shapes(model, mels):
    model.train()
    try:
        predict_logmels(model, mels[:1], chunk_frames=160)
        assert model.training
    finally:
        model.eval()
    with pytest.raises(ParameterError, match=r"mels\[1\].*n_mels=128"):
        predict_logmels(model, [mels[0], mels[0][:64]], chunk_frames=160)
    with pytest.raises(ParameterError, match="precision"):
        predict_logmels(model, mels, chunk_frames=160, precision="fp16")
    empty = predict_logmels(model, [], chunk_frames=160)
    assert empty["tag_probs"].shape == (0, len(TAGS))


def test_n_chunks_limits_the_work(model, mels):
    out = predict_logmels(model, mels, chunk_frames=160, n_chunks=2)
    assert out["n_chunks"].tolist() == [1, 1, 2, 2, 2]


@pytest.mark.skipif(not cpu_supports_bf16(), reason="no native bf16 on this CPU")
def test_bf16_stays_close_to_fp32(mels):
    torch.manual_seed(2)
    m = prepare_model(build_model(debug(n_tags=8, n_genres=4)))
    fp32 = predict_logmels(m, mels, chunk_frames=160)
    bf16 = predict_logmels(m, mels, chunk_frames=160, precision="bf16")
    np.testing.assert_allclose(bf16["tag_probs"], fp32["tag_probs"], atol=2e-2)
    np.testing.assert_allclose(bf16["genre_probs"], fp32["genre_probs"], atol=2e-2)
    assert np.min(np.sum(bf16["embedding"] * fp32["embedding"], axis=1)) > 0.99
    # decided tags differ only within the bf16 error of a threshold
    thr = np.full(8, 0.5)
    differ = decide_tags(bf16["tag_probs"], thr) != decide_tags(fp32["tag_probs"], thr)
    assert np.all(np.abs(fp32["tag_probs"][differ] - 0.5) < 2e-2)


def test_predict_chunks_under_bf16_returns_fp32(model, mels):
    out = predict_chunks(model, cut_chunks(mels[3], np.array([0, 160]), 160), precision="auto")
    assert out["tag_probs"].dtype == np.float32 and out["tag_probs"].shape == (2, len(TAGS))


# --- the tagging job ------------------------------------------------------------------------------
def test_tag_decodes_analyses_and_tags_end_to_end(assets, tmp_path):
    shutil.copytree(assets["fresh"], tmp_path / "lib")
    lib = Library(tmp_path / "lib")  # scanned only: no log-mels yet
    report = tag(lib, model=assets["model"])
    assert (report.done, report.failed, report.analysed, report.model_id) == (6, 0, 6, assets["model_id"])
    frame = load_tags(lib, assets["model_id"])
    assert len(frame) == 6 and frame.attrs["tags"] == TAGS and frame.attrs["genres"] == GENRES
    assert set(frame["genre"]) <= set(GENRES)
    # stored values are exactly what predict_logmels gives on the cached log-mels
    mels = [lib.logmel(h) for h in frame["hash"]]
    model = prepare_model(worker_model(TagSettings(
        model_path=str(assets["model"]), model_id=assets["model_id"], lib_root="", logmel_version=""))[0].model)
    ref = predict_logmels(model, mels, chunk_frames=160)
    np.testing.assert_array_equal(np.stack(frame["tag_probs"].to_numpy()), ref["tag_probs"])
    thresholds = np.linspace(0.3, 0.7, len(TAGS))
    for tags, probs in zip(frame["tags"], ref["tag_probs"]):
        assert list(tags) == [TAGS[j] for j in np.argsort(-probs, kind="stable") if probs[j] >= thresholds[j]]
    assert frame["n_chunks"].tolist() == [max(1, m.shape[1] // 160) for m in mels]
    ids, hashes, matrix = load_embeddings(lib, assets["model_id"])
    assert list(ids) == list(frame["track_id"]) and list(hashes) == list(frame["hash"])
    assert matrix.shape == (6, 16) and matrix.dtype == np.float32
    np.testing.assert_array_equal(matrix, ref["embedding"])
    again = tag(lib, model=assets["model"])
    assert (again.done, again.already, again.analysed) == (0, 6, 0)


def test_a_bad_track_is_recorded_and_does_not_stop_the_batch(assets, lib):
    h = lib.tracks()["hash"].iloc[2]
    logmel = lib.arrays.path("logmel", lib.stages.versions("logmel")[0], h)
    logmel.write_bytes(b"not an npy file")
    report = tag(lib, model=assets["model"])
    assert (report.done, report.failed) == (5, 1)
    failures = lib.failures()
    assert list(failures["stage"]) == ["tags"] and failures["hash"].iloc[0] == h
    assert tag(lib, model=assets["model"]).skipped_failed == 1  # not retried …
    assert tag(lib, model=assets["model"], retry_failed=True).failed == 1  # … unless asked


def test_missing_default_model_names_the_path(lib, monkeypatch, tmp_path):
    monkeypatch.setattr(checkpoint, "DEFAULT_CHECKPOINT", tmp_path / "nowhere" / "default.pt")
    with pytest.raises(ModelError, match=r"nowhere/default\.pt.*--model.*mir train"):
        tag(lib)


def test_model_trained_on_other_features_is_refused(lib, tmp_path):
    torch.manual_seed(0)
    config = debug(n_tags=2, n_genres=2)
    analysis = dataclasses.asdict(get_config().analysis) | {"hop_length": 256}
    save_checkpoint(tmp_path / "m.pt", build_model(config), config=config, tags=["a", "b"], genres=["x", "y"],
                    thresholds=[0.5, 0.5], metrics={}, analysis=analysis)
    with pytest.raises(ModelError, match="hop_length"):
        tag(lib, model=tmp_path / "m.pt")


def test_changed_thresholds_re_decide_stored_tags(assets, lib, tmp_path):
    tag(lib, model=assets["model"])
    stricter = tmp_path / "strict.pt"
    assert save_debug_model(stricter, thresholds=np.ones(len(TAGS))) == assets["model_id"]  # same weights
    assert tag(lib, model=stricter).done == 0
    assert all(len(t) == 0 for t in load_tags(lib, assets["model_id"])["tags"])


KILL_SCRIPT = """
import os, signal, sys
from mir.catalog import Library
from mir.tagging import tag

def die(n):
    if n >= {after}:
        os.kill(os.getpid(), signal.SIGKILL)   # no clean-up, no final flush

if __name__ == "__main__":
    tag(Library(sys.argv[1]), model=sys.argv[2], flush_every=1, group_chunks=2, on_flush=die, workers={workers})
"""


@pytest.mark.parametrize("workers", [1, pytest.param(2, marks=pytest.mark.slow)])  # 2 workers: ~45 s
def test_killed_run_resumes_to_the_same_result(assets, tagged, tmp_path, workers):
    shutil.copytree(assets["analysed"], tmp_path / "lib")
    script = tmp_path / "kill.py"
    script.write_text(textwrap.dedent(KILL_SCRIPT.format(after=2, workers=workers)))
    # output to a file, not a pipe: worker processes would hold a pipe open until they notice
    # their parent is gone, which they only can once it is reaped (run() reaps it)
    with open(tmp_path / "log.txt", "w") as log:
        proc = subprocess.run([sys.executable, str(script), str(tmp_path / "lib"), str(assets["model"])],
                              stdout=log, stderr=subprocess.STDOUT, timeout=120)
    assert proc.returncode == -signal.SIGKILL, (tmp_path / "log.txt").read_text()
    lib = Library(tmp_path / "lib")
    partial = lib.stages.table("tags", assets["model_id"]).keys()
    assert 2 <= len(partial) < 6  # killed mid-way, flushed parts kept
    report = tag(lib, model=assets["model"])
    assert report.done == 6 - len(partial) and report.already == len(partial)
    assert_same_tables(tag_table(lib, assets["model_id"]), tag_table(tagged, assets["model_id"]))
    assert len(lib.stages.table("tags", assets["model_id"]).parts()) == 1  # compacted


@pytest.mark.slow  # ~80 s: starts a local dask cluster
def test_dask_cluster_gives_the_in_process_result(assets, tagged, lib):
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
                                  silence_logs=40) as cluster:
        report = tag(lib, model=assets["model"], scheduler=cluster.scheduler_address, group_chunks=4)
    assert (report.done, report.failed) == (6, 0)
    # bit-identical: every forward pass has the same batch shape (see mir.models.inference)
    assert_same_tables(tag_table(lib, assets["model_id"]), tag_table(tagged, assets["model_id"]))


# --- writing tags into files ------------------------------------------------------------------------
def test_write_tags_round_trip_keeps_audio_bit_identical(assets, tagged, tmp_path):
    shutil.copytree(assets["music"], tmp_path / "music")
    lib = Library.open_or_create(tmp_path / "lib")
    lib.scan([tmp_path / "music"])
    # reuse the reference tags: same content hashes, so copy the stage folder over
    shutil.copytree(tagged.root / "stages" / "tags", lib.root / "stages" / "tags")
    paths = sorted((tmp_path / "music").iterdir())
    before = {p: (p.read_bytes(), audio.load(p, check=False)) for p in paths}
    pcm = {p: sf.read(p, dtype="int16")[0] for p in paths if p.suffix in (".wav", ".flac")}

    preview = write_file_tags(lib, assets["model_id"], dry_run=True)
    assert len(preview) == 6 and all(e["error"] is None for e in preview)
    assert all(set(e["changes"]) == {"genre", "mir_tags", "mir_model"} for e in preview)
    assert all(p.read_bytes() == before[p][0] for p in paths)  # dry run writes nothing

    written = write_file_tags(lib, assets["model_id"])
    assert [e["changes"] for e in written] == [e["changes"] for e in preview]
    frame = load_tags(lib, assets["model_id"]).set_index("path")
    for p in paths:
        got = audio.read_metadata(p)
        row = frame.loc[str(p.resolve())]
        assert got["genre"] == row["genre"] and got["mir_model"] == assets["model_id"]
        assert got["mir_tags"] == "; ".join(row["tags"]) or (not row["tags"] and got["mir_tags"] is None)
        np.testing.assert_array_equal(audio.load(p, check=False), before[p][1])  # decoded audio unchanged
        if p in pcm:
            np.testing.assert_array_equal(sf.read(p, dtype="int16")[0], pcm[p])  # samples bit-identical
    assert all(not e["changes"] for e in write_file_tags(lib, assets["model_id"]))  # idempotent

    # the rewritten files are still the same tracks: a rescan finds nothing new, even after a move
    ids = sorted(lib.tracks()["track_id"])
    report = lib.scan([tmp_path / "music"])
    assert (report.new_tracks, report.hashed) == (0, 0) and sorted(lib.tracks()["track_id"]) == ids
    moved = tmp_path / "music" / ("renamed" + paths[0].suffix)
    paths[0].rename(moved)
    report = lib.scan([tmp_path / "music"])
    assert (report.new_tracks, report.hashed, report.moved) == (0, 1, 1)
    assert sorted(lib.tracks()["track_id"]) == ids and lib.track(str(moved))["track_id"] in ids
    assert len(load_tags(lib, assets["model_id"])) == 6


# --- command line ---------------------------------------------------------------------------------
def test_cli_tag_show_and_dry_run(assets, lib, capsys, monkeypatch, tmp_path):
    monkeypatch.setattr(checkpoint, "DEFAULT_CHECKPOINT", tmp_path / "absent.pt")
    assert cli(["tag", str(lib.root)]) == 1
    assert "absent.pt" in capsys.readouterr().err

    assert cli(["tag", str(lib.root), "--model", str(assets["model"]), "--chunks", "2", "-q"]) == 0
    out = capsys.readouterr().out
    assert f"model {assets['model_id']}: 6 tracks tagged" in out
    assert load_tags(lib, assets["model_id"])["n_chunks"].max() == 2

    t = load_tags(lib, assets["model_id"]).iloc[0]
    assert cli(["show", str(lib.root), t["track_id"], "--all-tags", "--model", assets["model_id"][:6]]) == 0
    out = capsys.readouterr().out
    assert f"pred genre {t['genre']} (" in out and "tempo" in out and "key" in out
    probs = dict(zip(TAGS, t["tag_probs"]))
    assert all(f"{name} {p:.2f}" in out for name, p in probs.items())

    before = Path(t["path"]).read_bytes()
    assert cli(["tag", str(lib.root), "--model", str(assets["model"]), "--write-tags", "--dry-run", "-q"]) == 0
    out = capsys.readouterr().out
    assert "would change 6 of 6 files (dry run: nothing written)" in out and "mir_tags" in out
    assert Path(t["path"]).read_bytes() == before
