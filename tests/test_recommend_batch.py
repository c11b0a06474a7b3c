"""The batch job (kill and resume, Dask) and the CLI of `mir recommend`, `mir recommend-eval`, `mir playlist`."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mir.catalog import Library
from mir.catalog.stages import stage_versions
from mir.cli.main import main as cli
from mir.recommend import Collaborative, Hybrid
from mir.recommend.batch import BatchJob
from helpers import BATCH_SPEC as SPEC, batch_world as world, tiny_tracks, two_groups

HERE = Path(__file__).resolve().parent

KILL = """
import os, signal, sys
sys.path.insert(0, {tests!r})
from helpers import BATCH_SPEC as SPEC, batch_world as world
from mir.recommend.batch import BatchJob

def die(n):
    if n >= 2:
        os.kill(os.getpid(), signal.SIGKILL)   # no clean-up

tracks, X, model = world()
BatchJob(sys.argv[1], SPEC).run(model, list(X.users), k=4, shard_size=7, on_shard=die)
"""


def test_killed_job_resumes_to_the_uninterrupted_output(tmp_path):
    tracks, X, model = world()
    ref = BatchJob(tmp_path / "ref.parquet", SPEC).run(model, list(X.users), k=4, shard_size=7)
    assert ref.shards == 5 and ref.rows == 30 * 4
    assert not (tmp_path / "ref.parquet.parts").exists()
    script = tmp_path / "kill.py"
    script.write_text(textwrap.dedent(KILL.format(tests=str(HERE))))
    out = tmp_path / "recs.parquet"
    proc = subprocess.run([sys.executable, str(script), str(out)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    parts = sorted(p.name for p in (tmp_path / "recs.parquet.parts").glob("shard-*.parquet"))
    assert parts == ["shard-00000.parquet", "shard-00001.parquet"] and not out.exists()
    # resume with a *different* in-memory model: the saved one must win
    other = Hybrid(collaborative=Collaborative(factors=2, iterations=1), weight=0.0, cold_offset=0.0).fit(X, tracks)
    job = BatchJob(out, SPEC)
    assert job.saved_model() is not None
    report = job.run(other, list(X.users), k=4, shard_size=7)
    assert (report.done_before, report.computed, report.resumed_model) == (2, 3, True)
    pd.testing.assert_frame_equal(pd.read_parquet(out), pd.read_parquet(tmp_path / "ref.parquet"))
    assert out.read_bytes() == (tmp_path / "ref.parquet").read_bytes()


def test_a_different_job_at_the_same_output_is_refused(tmp_path):
    (tmp_path / "o.parquet.parts").mkdir()
    (tmp_path / "o.parquet.parts" / "job.json").write_text(json.dumps({"method": "als", "k": 4}))
    from mir.errors import ParameterError

    with pytest.raises(ParameterError, match="other settings.*method"):
        BatchJob(tmp_path / "o.parquet", SPEC)
    BatchJob(tmp_path / "o.parquet", SPEC, restart=True)  # starts over


def test_dask_cluster_gives_the_in_process_output(tmp_path):
    distributed = pytest.importorskip("distributed")
    tracks, X, model = world()
    BatchJob(tmp_path / "ref.parquet", SPEC).run(model, list(X.users), k=4, shard_size=7)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
                                  silence_logs=40) as cluster:
        report = BatchJob(tmp_path / "dask.parquet", SPEC).run(model, list(X.users), k=4, shard_size=7,
                                                               scheduler=cluster.scheduler_address)
    assert report.computed == 5
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "dask.parquet"), pd.read_parquet(tmp_path / "ref.parquet"))


# --- CLI on a small library with stored embeddings --------------------------------------------------------------
MODEL_ID = "testmodel01"


def fake_library(root: Path) -> Library:
    """A library whose tags stage holds the tiny catalogue's embeddings (no audio needed)."""
    tracks = tiny_tracks()
    lib = Library.open_or_create(root)
    rows = []
    for i, tid in enumerate(tracks.track_ids):
        rows.append({"track_id": tid, "hash": f"h{i:04d}" + "0" * 27, "path": str(root / "music" / f"{tid}.flac"),
                     "n_files": 1, "status": "ok", "format": "FLAC", "subtype": "PCM_16", "duration": 30.0 + i,
                     "sample_rate": 22050, "channels": 2, "size": 1000, "title": f"Song {i}",
                     "artist": tracks.artist[i], "album": None, "genre": tracks.genre[i], "year": None})
    frame = pd.DataFrame(rows)
    lib._write_tables(frame[["path", "hash", "size"]].assign(mtime_ns=0), frame)
    table = lib.stages.table("tags", MODEL_ID)
    table.append(pd.DataFrame({
        "hash": frame["hash"], "tag_probs": [np.zeros(2, np.float32)] * len(frame), "tags": list(map(list, tracks.tags)),
        "genre": tracks.genre, "genre_probs": [np.zeros(3, np.float32)] * len(frame),
        "embedding": list(tracks.embeddings), "n_chunks": 1, "precision": "fp32"}))
    (table.folder / "model.json").write_text(json.dumps({"model_id": MODEL_ID, "tags": ["fast", "slow"], "genres": ["rock", "jazz", "folk"],
                                                        "thresholds": [0.5, 0.5], "config": {"embed_dim": 8}}))
    desc = lib.stages.table("descriptors", stage_versions()["descriptors"])
    desc.append(pd.DataFrame({"hash": frame["hash"], "tempo": tracks.tempo,
                              "key": [k.split()[0] for k in tracks.key], "mode": [k.split()[1] for k in tracks.key],
                              "key_confidence": 0.9, "loudness": -14.0}))
    return lib


def test_cli_recommend_eval_and_playlist(tmp_path, capsys):
    lib = fake_library(tmp_path / "lib")
    rows = [(u, str(tmp_path / "lib" / "music" / f"{t}.flac") if i % 3 == 0 else t, f"2024-01-0{1 + ts % 9}T00:00:{ts:02d}Z", p)
            for i, (u, t, ts, p) in enumerate(two_groups(tiny_tracks(), n_users=20))]
    rows += [("u00", "unknown-track", "2024-01-01", 1), ("u01", "t01", "yesterday", 1)]
    events = tmp_path / "events.csv"
    pd.DataFrame(rows, columns=["user", "track", "timestamp", "plays"]).to_csv(events, index=False)
    out = tmp_path / "recs.parquet"
    assert cli(["recommend", str(lib.root), "--events", str(events), "--out", str(out), "-k", "3", "--method", "als",
                "--factors", "4", "--shard-size", "6", "--max-per-artist", "2", "-q"]) == 0
    printed = capsys.readouterr()
    assert "1 unknown track" in printed.err and "1 bad timestamp" in printed.err
    recs = pd.read_parquet(out)
    assert list(recs.columns) == ["user", "rank", "track_id", "score"]
    assert recs["user"].nunique() == 20 and (recs.groupby("user").size() == 3).all()

    assert cli(["recommend-eval", str(lib.root), "--events", str(events), "-k", "3", "--methods", "popularity,content,als",
                "--json", str(tmp_path / "eval.json")]) == 0
    text = capsys.readouterr().out
    assert "recall@3" in text and "popularity" in text and "content" in text and "als: als factors " in text
    doc = json.loads((tmp_path / "eval.json").read_text())
    assert set(doc["methods"]) == {"popularity", "content", "als"} and doc["events"]["skipped"]["unknown_track"] == 1
    assert doc["collaborative"]["als"]["factors"] in (16, 32, 64)
    for retired in ("hybrid-blend", "hybrid-learned", "ease", "bpr"):  # gone from mir (ease, bpr: benchmark peers)
        assert cli(["recommend-eval", str(lib.root), "--events", str(events), "--methods", retired]) == 1
        assert f"unknown method(s) ['{retired}']" in capsys.readouterr().err

    m3u, pj = tmp_path / "p.m3u", tmp_path / "p.json"
    assert cli(["playlist", str(lib.root), "--seed", "t00", "--seed", "t01", "--length", "5", "--m3u", str(m3u),
                "--json", str(pj)]) == 0
    listing = json.loads(pj.read_text())
    assert len(listing["tracks"]) == 5 and listing["seeds"] == ["t00", "t01"]
    lines = m3u.read_text().splitlines()
    assert lines[0] == "#EXTM3U" and lines[1].startswith("#EXTINF:") and lines[2].endswith(".flac")
    assert cli(["playlist", str(lib.root), "--seed", "t00", "--to", "t14", "--length", "6", "--json", str(pj)]) == 0
    path = [t["track_id"] for t in json.loads(pj.read_text())["tracks"]]
    assert path[0] == "t00" and path[-1] == "t14" and len(set(path)) == 6
    assert cli(["playlist", str(lib.root), "--seed", "nope"]) == 1
