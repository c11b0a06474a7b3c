"""The `mir` command line: library commands end to end, exit codes and error messages."""
from __future__ import annotations

import json

import pandas as pd
import pytest

from mir.cli.main import main
from mir.datasets import GENRES, SIZES
from helpers import write_clip


@pytest.fixture
def library(tmp_path, capsys):
    music = tmp_path / "music"
    write_clip(music / "one.wav", 1)
    write_clip(music / "two.flac", 2)
    (music / "broken.mp3").write_text("not audio")
    lib = tmp_path / "lib"
    assert main(["scan", str(lib), str(music)]) == 0
    assert main(["analyze", str(lib), "--workers", "1"]) == 0
    capsys.readouterr()
    return lib


def test_info_failures_export_show(library, tmp_path, capsys):
    assert main(["info", str(library), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["tracks"] == 2 and info["analysed"] == {"descriptors": 2, "logmel": 2, "beats": 2} and info["failures"] == 1

    assert main(["failures", str(library)]) == 0
    header, row = capsys.readouterr().out.splitlines()  # one failure: the header and one row
    assert header.split() == ["track_id", "stage", "error", "message"]
    assert row.split()[1:3] == ["scan", "DecodeError"] and row.split()[3].endswith("broken.mp3:")
    assert main(["failures", str(library), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 1 and rows[0]["path"].endswith("broken.mp3") and rows[0]["stage"] == "scan"

    out_csv = tmp_path / "tracks.csv"
    assert main(["export", str(library), "--format", "csv", "--out", str(out_csv)]) == 0
    assert f"wrote {out_csv}" in capsys.readouterr().out
    frame = pd.read_csv(out_csv)
    assert len(frame) == 2 and frame["tempo"].notna().all()

    track_id = frame["track_id"][0]
    assert main(["show", str(library), track_id[:8], "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["track_id"] == track_id and shown["key"] in "C C# D D# E F F# G G# A A# B".split()


def test_errors_exit_1_with_a_message_naming_the_value(tmp_path, capsys):
    assert main(["info", str(tmp_path / "nope")]) == 1
    err = capsys.readouterr().err
    assert "mir info: error:" in err and "nope" in err and "does not exist" in err
    assert main(["scan", str(tmp_path / "lib"), str(tmp_path / "missing")]) == 1
    assert "missing" in capsys.readouterr().err


def test_no_command_prints_help(capsys):
    assert main([]) == 2
    assert "scan" in capsys.readouterr().out


@pytest.mark.slow  # ~170 s: the whole demo, twice, then without generation
def test_demo_tiny_runs_end_to_end(tmp_path, capsys):
    assert main(["demo", "--size", "tiny", "--dir", str(tmp_path / "demo"), "--workers", "1"]) == 0
    out = capsys.readouterr().out
    n = SIZES["tiny"].clips_per_genre * len(GENRES)
    assert f"{n} tracks" in out and "0 failures" in out
    assert f"descriptors against the rendered ground truth ({n} clips)" in out
    assert f"{n} tracks in a Flat index ({n} added, 0 removed)" in out
    assert "nearest neighbours share its genre" in out and "tracks most similar to" in out
    assert "tracks are in genres the model was not trained on" in out  # the default model knows the 11 scored genres
    # [6/6] recommendations from the collection's histories: a table of four methods, one user's list, a playlist
    table = out[out.index(f"recall@{n // 5}  nDCG@{n // 5}  coverage  taste prec."):].splitlines()  # k = tracks // 5
    assert [line.split()[0] for line in table[2:6]] == ["popularity", "content", "als", "hybrid"]
    assert all(0.0 <= float(x) <= 1.0 for line in table[2:6] for x in line.split()[1:])
    assert "ALS settings chosen on a validation split of the training events: factors" in out
    top5 = out[out.index("top 5 for user"):].splitlines()[1:6]
    assert [line.split(".")[0].strip() for line in top5] == ["1", "2", "3", "4", "5"]
    playlist = out[out.index("playlist continuing"):].splitlines()[1:11]
    assert len(playlist) == 10 and playlist[0].split()[0] == "1*" and playlist[1].split()[0] == "2*"
    # [7/7] a 30 s piece from a small generator trained on the library, with its measures and picture
    assert "trained (small" in out and "generated piece:" in out and "(limit 4)" in out and "dBFS; loudness" in out
    for name in ("piece.wav", "piece.provenance.json", "piece.png"):
        assert (tmp_path / "demo" / name).is_file(), name
    piece = (tmp_path / "demo" / "piece.wav").read_bytes()
    # a second run reuses everything and makes the same piece
    assert main(["demo", "--size", "tiny", "--dir", str(tmp_path / "demo"), "--workers", "1"]) == 0
    out = capsys.readouterr().out
    assert "0 tracks analysed" in out and "(0 added, 0 removed)" in out
    assert "reused" in out and (tmp_path / "demo" / "piece.wav").read_bytes() == piece
    assert main(["demo", "--size", "tiny", "--dir", str(tmp_path / "demo"), "--workers", "1", "--no-generate"]) == 0
    assert "[7/7] generation skipped: --no-generate" in capsys.readouterr().out
