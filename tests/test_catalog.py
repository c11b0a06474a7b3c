"""Catalogue: scanning by content hash, analysis cache, failures, kill-and-resume."""
from __future__ import annotations

import json

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from helpers import write_clip

from mir.catalog import Library, analyze, stage_versions
from mir.catalog import stages as stages_mod
from mir.errors import CatalogError, TrackNotFoundError

SR = 22050


@pytest.fixture
def music(tmp_path) -> Path:
    root = tmp_path / "music"
    write_clip(root / "a" / "one.wav", 1)
    write_clip(root / "a" / "two.flac", 2, channels=2)
    write_clip(root / "b" / "three.ogg", 3, sr=44100)
    write_clip(root / "b" / "four.wav", 4, seconds=3.0)
    (root / "b" / "notes.txt").write_text("not audio")
    return root


def snapshot(lib: Library) -> dict[str, pd.DataFrame]:
    v = stage_versions()
    return {
        "tracks": lib.tracks(),
        "files": lib.files().drop(columns=["mtime_ns"]),
        "descriptors": lib.stage_table("descriptors", v["descriptors"]).sort_values("hash").reset_index(drop=True),
        "logmel": lib.stage_table("logmel", v["logmel"]).sort_values("hash").reset_index(drop=True),
    }


def test_scan_reads_metadata_and_skips_non_audio(tmp_path, music):
    import mutagen

    f = mutagen.File(music / "a" / "two.flac")
    f["title"], f["artist"], f["album"], f["genre"], f["date"] = "Two", "Tester", "Demo", "Reel", "1999"
    f.save()
    lib = Library.open_or_create(tmp_path / "lib")
    report = lib.scan([music])
    assert (report.files, report.new_tracks, report.hashed) == (4, 4, 4)
    tracks = lib.tracks().set_index("path")
    row = tracks.loc[str((music / "a" / "two.flac").resolve())]
    assert (row["title"], row["artist"], row["album"], row["genre"], row["year"]) == ("Two", "Tester", "Demo", "Reel", 1999)
    assert (row["format"], row["channels"], row["sample_rate"]) == ("flac", 2, SR)
    assert row["duration"] == pytest.approx(2.0, abs=1e-3)
    assert tracks["track_id"].str.len().eq(16).all() and tracks["track_id"].is_unique


def test_rescan_and_reanalyze_are_idempotent(tmp_path, music):
    lib = Library.open_or_create(tmp_path / "lib")
    lib.scan([music])
    first = analyze(lib, workers=1)
    assert (first.done, first.failed) == (4, 0)
    before = snapshot(lib)
    again = lib.scan([music])
    assert (again.hashed, again.new_tracks, again.moved, again.missing) == (0, 0, 0, 0)
    second = analyze(lib, workers=1)
    assert second.todo == 0 and second.done == 0  # nothing decoded again
    after = snapshot(lib)
    for name in before:
        pd.testing.assert_frame_equal(before[name], after[name])


def test_renamed_and_moved_file_keeps_track_and_analysis(tmp_path, music):
    lib = Library.open_or_create(tmp_path / "lib")
    lib.scan([music])
    analyze(lib, workers=1)
    old = lib.track(str(music / "a" / "one.wav"))
    target = music / "moved" / "renamed.wav"
    target.parent.mkdir()
    shutil.move(music / "a" / "one.wav", target)
    report = lib.scan([music])
    assert (report.moved, report.new_tracks, report.missing) == (1, 0, 0)
    new = lib.track(str(target))
    assert new["track_id"] == old["track_id"] and new["path"] == str(target.resolve())
    assert analyze(lib, workers=1).todo == 0
    assert lib.logmel(new["track_id"]).shape[0] == 128


def test_deleted_file_is_marked_missing_then_restored(tmp_path, music):
    lib = Library.open_or_create(tmp_path / "lib")
    lib.scan([music])
    src = music / "b" / "four.wav"
    keep = tmp_path / "four.wav"
    shutil.move(src, keep)
    report = lib.scan([music])
    assert report.missing == 1
    tracks = lib.tracks()
    assert len(tracks) == 4 and (tracks["status"] == "missing").sum() == 1
    assert lib.info()["tracks"] == 3 and lib.info()["missing"] == 1
    shutil.move(keep, src)
    report = lib.scan([music])
    assert report.restored == 1 and (lib.tracks()["status"] == "ok").all()


def test_duplicate_content_is_one_track(tmp_path, music):
    shutil.copy(music / "a" / "one.wav", music / "b" / "copy-of-one.wav")
    lib = Library.open_or_create(tmp_path / "lib")
    report = lib.scan([music])
    assert report.new_tracks == 4 and report.duplicates == 1
    assert lib.tracks()["n_files"].max() == 2 and len(lib.files()) == 5


def test_changed_stage_version_recomputes_only_that_stage(tmp_path, music, monkeypatch):
    lib = Library.open_or_create(tmp_path / "lib")
    lib.scan([music])
    analyze(lib, workers=1)
    logmel_parts = sorted(lib.stages.table("logmel", stage_versions()["logmel"]).parts())
    monkeypatch.setattr(stages_mod, "DESCRIPTORS_CODE_VERSION", stages_mod.DESCRIPTORS_CODE_VERSION + "-next")
    from mir.catalog import analysis as analyze_mod

    calls = []
    real = analyze_mod.analyze_file
    monkeypatch.setattr(analyze_mod, "analyze_file", lambda *a: calls.append(a[2]) or real(*a))
    report = analyze(lib, workers=1)
    assert report.done == 4
    assert all(set(stages) == {"descriptors"} for stages in calls)
    assert sorted(lib.stages.table("logmel", stage_versions()["logmel"]).parts()) == logmel_parts


def test_bad_files_are_recorded_and_do_not_stop_the_batch(tmp_path, music):
    (music / "b" / "empty.wav").write_bytes(b"")
    (music / "b" / "text.mp3").write_text("this is not an mp3 file\n" * 50)
    write_clip(music / "b" / "silent-but-valid.wav", 9)
    sf.write(music / "b" / "silent.wav", np.zeros(SR * 2, np.float32), SR)
    lib = Library.open_or_create(tmp_path / "lib")
    report = lib.scan([music])
    bad_scan = {Path(p).name for p, _ in report.failures}
    assert bad_scan == {"empty.wav", "text.mp3"}
    result = analyze(lib, workers=1)
    assert result.failed == 1 and result.done == 5
    failures = lib.failures()
    assert set(failures["stage"]) >= {"scan"}
    by_file = {Path(p).name: (s, e) for p, s, e in zip(failures["path"], failures["stage"], failures["error"])}
    assert by_file["silent.wav"][1] == "SilentAudioError"
    assert "empty.wav" in by_file and "text.mp3" in by_file
    assert all(str(p) in m for p, m in zip(failures["path"], failures["message"]))
    # known failures are not retried by default, but are with retry_failed
    assert analyze(lib, workers=1).skipped_failed == 1
    assert analyze(lib, workers=1, retry_failed=True).failed == 1


def test_parallel_workers_equal_single_process(tmp_path, music):
    a = Library.open_or_create(tmp_path / "a")
    b = Library.open_or_create(tmp_path / "b")
    a.scan([music]), b.scan([music])
    analyze(a, workers=1)
    analyze(b, workers=2)
    sa, sb = snapshot(a), snapshot(b)
    for name in ("descriptors", "logmel"):
        pd.testing.assert_frame_equal(sa[name], sb[name])
    for t in a.tracks()["track_id"]:
        np.testing.assert_array_equal(a.logmel(t), b.logmel(t))


def test_errors_name_the_library_and_track(tmp_path, music):
    with pytest.raises(CatalogError, match="does not exist"):
        Library(tmp_path / "nowhere")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x.txt").write_text("x")
    with pytest.raises(CatalogError, match="not empty"):
        Library.open_or_create(tmp_path / "full")
    lib = Library.open_or_create(tmp_path / "lib")
    lib.scan([music])
    with pytest.raises(TrackNotFoundError, match="no track 'zzzz'"):
        lib.track("zzzz")
    with pytest.raises(CatalogError, match="does not exist"):
        lib.scan([tmp_path / "missing-folder"])


def test_export_formats(tmp_path, music):
    lib = Library.open_or_create(tmp_path / "lib")
    lib.scan([music])
    analyze(lib, workers=1)
    for fmt in ("csv", "parquet", "json"):
        out = lib.export(tmp_path / f"out.{fmt}")
        frame = {"csv": pd.read_csv, "parquet": pd.read_parquet, "json": pd.read_json}[fmt](out)
        assert len(frame) == 4 and {"track_id", "tempo", "key", "loudness"} <= set(frame.columns)
        chroma = frame["chroma"].map(json.loads) if fmt == "csv" else frame["chroma"]  # CSV cells: JSON lists
        assert all(len(c) == 12 and abs(sum(c) - 1) < 1e-3 for c in chroma)


# --- kill -9 at random moments, then resume: identical to an uninterrupted run ---------------------
def _run_mir(args, env):
    return subprocess.Popen([sys.executable, "-m", "mir", *args], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _processes_with_env(marker: str) -> list[int]:
    found = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            if marker.encode() in environ.read_bytes().split(b"\0"):
                found.append(int(environ.parent.name))
        except OSError:
            pass
    return found


def _newest_write(folder: Path) -> float:
    return max((p.stat().st_mtime for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")), default=0.0)


def _kill_until_done(args, env, rng, lib_dir: Path, kills_wanted: int = 3, timeout: float = 300.0) -> int:
    """Run ``mir ARGS``; SIGKILL it at a random moment after it has written something, repeat.

    Killing only after visible progress guarantees each round advances the job, however slow
    the machine; after ``kills_wanted`` kills the job is left to finish.
    """
    kills = 0
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        before = _newest_write(lib_dir) if lib_dir.exists() else 0.0
        proc = _run_mir(args, env)
        if kills < kills_wanted:
            while proc.poll() is None and (not lib_dir.exists() or _newest_write(lib_dir) <= before):
                time.sleep(0.02)
            time.sleep(rng.uniform(0.0, 0.5))
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                kills += 1
                continue
        proc.wait(timeout=max(1.0, deadline - time.monotonic()))
        assert proc.returncode == 0, proc.stderr.read().decode()
        return kills
    raise AssertionError(f"`mir {' '.join(args)}` did not finish in {timeout} s")


@pytest.mark.slow  # ~230 s: kills `mir scan` and `mir analyze` subprocesses until they finish
def test_kill_and_resume_scan_and_analyze(tmp_path, rng):
    music = tmp_path / "music"
    for i in range(24):
        write_clip(music / f"d{i % 3}" / f"clip{i:02d}.{('wav', 'flac', 'ogg')[i % 3]}", 100 + i, seconds=4.0)
    cfg = tmp_path / "mir.toml"
    cfg.write_text("[runtime]\nflush_every = 1\nflush_seconds = 0.0\n")
    env = {**os.environ, "MIR_CONFIG": str(cfg)}

    reference = Library.open_or_create(tmp_path / "ref")
    reference.scan([music])
    analyze(reference, workers=1)

    killed = tmp_path / "killed"
    kills = _kill_until_done(["scan", str(killed), str(music)], env, rng, killed, kills_wanted=2)
    kills += _kill_until_done(["analyze", str(killed), "--workers", "2"], env, rng, killed, kills_wanted=3)
    assert kills >= 2, "the test never interrupted a run"
    got, want = snapshot(Library(killed)), snapshot(reference)
    for name in want:
        pd.testing.assert_frame_equal(got[name], want[name], obj=name)
        assert not got[name].duplicated(subset=[c for c in got[name].columns if c in ("hash", "path")]).any()
    for t in want["tracks"]["track_id"]:
        np.testing.assert_array_equal(Library(killed).logmel(t), reference.logmel(t))
    # no orphan worker outlives a killed job
    deadline = time.monotonic() + 10
    while _processes_with_env(f"MIR_CONFIG={cfg}") and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _processes_with_env(f"MIR_CONFIG={cfg}")
    # raw storage too: after the final run's compaction each stage is one part without duplicates
    lib = Library(killed)
    for stage, version in stage_versions().items():
        parts = lib.stages.table(stage, version).parts()
        assert len(parts) == 1
        assert not pd.read_parquet(parts[0])["hash"].duplicated().any()


@pytest.mark.slow  # ~40 s; test_features.py::test_track_analyzer_memory_is_bounded is the fast check
def test_long_file_is_analysed_in_bounded_memory(tmp_path):
    """30 minutes of audio (159 MB as float32, log-mel 40 MB) analysed with a peak under 20 MB."""
    import dataclasses
    import tracemalloc

    from mir.config import get_config

    path = tmp_path / "long" / "thirty-minutes.wav"
    path.parent.mkdir()
    g = np.random.default_rng(7)
    with sf.SoundFile(path, "w", samplerate=SR, channels=1, subtype="PCM_16") as f:
        for i in range(30):  # one minute at a time
            t = np.arange(60 * SR) / SR
            f.write((0.2 * np.sin(2 * np.pi * (220 + 5 * i) * t) + 0.02 * g.standard_normal(t.size)).astype(np.float32))
    lib = Library.open_or_create(tmp_path / "lib")
    lib.scan([path.parent])
    cfg = dataclasses.replace(get_config().analysis, stream_block_seconds=5.0)
    warm = Library.open_or_create(tmp_path / "warm")  # first use imports and JIT-compiles: not the job's memory
    warm.scan([write_clip(tmp_path / "warm-audio" / "short.wav", 1)])
    analyze(warm, workers=1, cfg=cfg)
    tracemalloc.start()
    try:
        report = analyze(lib, workers=1, cfg=cfg)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert report.done == 1, report.failures
    mel = lib.logmel(lib.tracks()["track_id"][0], mmap=True)
    assert mel.shape == (128, 1 + 30 * 60 * SR // 512)
    assert mel.nbytes > 39e6 and peak < 20e6, f"peak traced memory {peak / 1e6:.1f} MB"
    print(f"peak traced memory {peak / 1e6:.1f} MB for a {mel.nbytes / 1e6:.0f} MB log-mel")


def test_part_table_reads_a_subset_of_columns_without_its_key(tmp_path):
    """Reading some columns still de-duplicates on the whole key (a rescan crashed on this)."""
    from mir.catalog.store import PartTable

    table = PartTable(tmp_path / "t", key=["hash", "stage", "version"])
    table.append([{"hash": "a", "stage": "scan", "version": "1", "message": "old"}])
    table.append([{"hash": "a", "stage": "scan", "version": "1", "message": "new"},
                  {"hash": "a", "stage": "scan", "version": "2", "message": "other"}])
    frame = table.read(columns=["hash", "message"])
    assert list(frame.columns) == ["hash", "message"] and list(frame["message"]) == ["new", "other"]


def test_scan_and_analyze_leave_a_summary_on_their_progress_bars(tmp_path, music, capsys):
    lib = Library.open_or_create(tmp_path / "lib")
    lib.scan([music], progress=True)
    assert capsys.readouterr().err.rstrip().endswith("4 new, 0 unreadable]")
    analyze(lib, workers=1, progress=True)
    assert capsys.readouterr().err.rstrip().endswith("4 done, 0 failed]")
