"""Robustness: a corpus of damaged and odd files through scan + analyse + tag, the CLI's handling of
unplanned errors, and bad events files.

The corpus (tests/robustness_corpus.py) is generated here; one run of the real CLI (a subprocess,
so standard error is seen as a user sees it) scans, analyses and tags all of it, then every case
is checked on its own: a good file is analysed and tagged, a bad one is listed with a message
naming it, nothing prints a traceback, and no decoder chatter reaches the terminal.
"""
from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

import robustness_corpus as corpus
from mir.catalog import Library, analyze, stage_versions
from mir.cli.main import main
from mir.errors import CatalogError, ParameterError
from mir.recommend.events import clean_events, read_events

ROOT = Path(__file__).resolve().parents[1]
CASES = corpus.cases("/corpus")  # names and expectations only; the fixture writes the files
TAG_STAGE = "tags"  # mir.tagging.STAGE
# lines mir itself writes to standard error during scan/analyze/tag
OWN_LINES = ("  unreadable: ", "  failed: ", "  warning: ", "  … ")


def _debug_model(path: Path) -> str:
    import torch

    from mir.config import get_config
    from mir.models import build_model, debug, save_checkpoint

    torch.manual_seed(0)
    tags, genres = [f"tag{i}" for i in range(4)], ["folk", "jazz"]
    config = debug(n_tags=len(tags), n_genres=len(genres))
    return save_checkpoint(path, build_model(config), config=config, tags=tags, genres=genres,
                           thresholds=np.full(len(tags), 0.5), metrics={},
                           analysis=dataclasses.asdict(get_config().analysis))


@contextlib.contextmanager
def terminal_stderr(path: Path):
    """Everything written to standard error inside the block, at the file-descriptor level (as a
    terminal would show it: Python's output and C libraries' alike), goes to ``path``."""
    sys.stderr.flush()
    saved_fd, saved_obj = os.dup(2), sys.stderr
    with open(path, "w", encoding="utf-8", errors="backslashreplace") as fh:
        os.dup2(fh.fileno(), 2)
        sys.stderr = open(2, "w", encoding="utf-8", errors="backslashreplace", closefd=False)
        try:
            yield
        finally:
            sys.stderr.flush()
            sys.stderr = saved_obj
            os.dup2(saved_fd, 2)
            os.close(saved_fd)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """The corpus written, then `mir scan`, `analyze`, `tag` and `failures --json` run on it once."""
    tmp = tmp_path_factory.mktemp("robust")
    music, lib = tmp / "music", tmp / "lib"
    cases = {c.name: c for c in corpus.build(music)}
    model = tmp / "debug.pt"
    model_id = _debug_model(model)
    codes = {}
    with terminal_stderr(tmp / "stderr.txt"), contextlib.redirect_stdout(io.StringIO()) as out:
        try:
            for argv in (["scan", str(lib), str(music)], ["analyze", str(lib), "--workers", "1"],
                         ["tag", str(lib), "--model", str(model), "--workers", "1"]):
                codes[argv[0]] = main(argv)
            print()
            main(["failures", str(lib), "--json"])
        finally:
            corpus.restore_permissions(music)
    out = out.getvalue()
    library = Library(lib)
    versions = stage_versions()
    return {
        "cases": cases, "music": music, "out": out, "err": (tmp / "stderr.txt").read_text(), "codes": codes,
        "listed": json.loads(out[out.index("\n[") + 1:]),
        "files": dict(zip(library.files()["path"], library.files()["hash"])),
        "tracks": set(library.tracks(include_missing=False)["hash"]),
        "analysed": set.intersection(*(library.stages.table(s, v).keys() for s, v in versions.items())),
        "tagged": library.stages.table(TAG_STAGE, model_id).keys(),
        "library": library,
    }


def test_corpus_is_large_and_covers_every_format():
    assert len(CASES) >= 200
    kinds = {c.name.split("-", 1)[1].rsplit(".", 1)[0] for c in CASES if "-" in c.name}
    assert {"zero-bytes", "cut-0.5", "dc-only", "eight-channels", "rate192k", "silence", "nan"} <= kinds
    if corpus.MP3_SKIP_REASON:
        pytest.skip(corpus.MP3_SKIP_REASON)
    assert {c.path.rsplit(".", 1)[1] for c in CASES} >= {"wav", "flac", "ogg", "mp3", "aiff"}


def test_the_whole_run_finishes_without_a_traceback_or_decoder_chatter(run):
    assert run["codes"] == {"scan": 0, "analyze": 0, "tag": 0}, run["err"][-3000:]
    assert "Traceback" not in run["err"]
    strays = [line for line in run["err"].splitlines() if line.strip() and not line.startswith(OWN_LINES)]
    assert strays == []  # e.g. mpg123's "Note: Illegal Audio-MPEG-Header" printed straight to fd 2


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_every_file_is_analysed_or_listed(run, case):
    case = run["cases"][case.name]
    h = run["files"].get(case.path)
    done = h in run["tracks"] and h in run["analysed"] and h in run["tagged"]
    listed = [r for r in run["listed"] if r["path"] == case.path]
    assert corpus.verdict(case, listed, h, done) is None


def test_a_dc_only_file_gets_no_key(run):
    d = run["library"].descriptors().set_index("path")
    dc = [c.path for c in run["cases"].values() if c.expect == "warn:no_sound"]
    assert dc and d.loc[dc, "key"].isna().all()
    good = [c.path for c in run["cases"].values() if c.name.endswith("good.wav")]
    assert d.loc[good, "key"].notna().all()


def test_each_zero_byte_copy_is_listed_under_its_own_path(run):
    empties = [c.path for c in run["cases"].values() if "empty-duplicate" in c.name]
    listed = [r for r in run["listed"] if r["path"] in empties]
    assert sorted(r["path"] for r in listed) == sorted(empties) and len({r["hash"] for r in listed}) == 1


def test_rescan_of_the_corpus_changes_nothing_and_does_not_crash(run, capsys):
    lib = run["library"]
    before = lib.failures()
    assert main(["scan", str(lib.root), str(run["music"])]) == 0
    assert " 0 hashed, 0 new tracks" in capsys.readouterr().out  # nothing read again
    pd.testing.assert_frame_equal(lib.failures(), before)


# --- single fixes, each pinned on its own --------------------------------------------------------
def test_rescan_after_a_failure_does_not_crash(tmp_path, capsys):
    music = tmp_path / "music"
    music.mkdir()
    (music / "bad.mp3").write_text("not audio")
    assert main(["scan", str(tmp_path / "lib"), str(music)]) == 0
    assert main(["scan", str(tmp_path / "lib"), str(music)]) == 0  # was KeyError: Index(['version'])
    assert "1 unreadable" in capsys.readouterr().out


def test_a_crash_mid_scan_keeps_the_files_already_read(tmp_path, monkeypatch):
    music = tmp_path / "music"
    for i in range(5):
        corpus.write(music / f"{i}.wav", corpus.clip(i), "wav")
    lib = Library.open_or_create(tmp_path / "lib")
    from mir.catalog import library as library_mod

    real, calls = library_mod.audio.probe, []

    def probe(path):
        calls.append(path)
        if len(calls) == 4:
            raise KeyboardInterrupt  # Ctrl-C, or any crash of the scan itself
        return real(path)

    monkeypatch.setattr(library_mod.audio, "probe", probe)
    with pytest.raises(KeyboardInterrupt):
        lib.scan([music], checkpoint_every=1000)
    assert len(lib.tracks()) == 3  # ...still keeps the tracks read before it
    monkeypatch.undo()
    assert lib.scan([music]).new_tracks == 2 and len(lib.tracks()) == 5


def test_unexpected_error_in_one_file_becomes_a_failure_row(tmp_path, monkeypatch):
    music = tmp_path / "music"
    corpus.write(music / "a.wav", corpus.clip(1), "wav")
    corpus.write(music / "b.wav", corpus.clip(2), "wav")
    from mir.catalog import library as library_mod

    real = library_mod.audio.read_metadata
    monkeypatch.setattr(library_mod.audio, "read_metadata",
                        lambda p: (_ for _ in ()).throw(IndexError("tag bug")) if p.endswith("a.wav") else real(p))
    lib = Library.open_or_create(tmp_path / "lib")
    report = lib.scan([music])
    assert report.new_tracks == 1
    row = lib.failures().iloc[0]
    assert row["error"] == "IndexError" and row["path"].endswith("a.wav") and "tag bug" in row["message"]


def test_unreadable_file_is_a_failure_row(tmp_path, monkeypatch):
    """chmod 000 does not stop root, so the read error is simulated."""
    music = tmp_path / "music"
    corpus.write(music / "locked.wav", corpus.clip(1), "wav")
    from mir.catalog import library as library_mod

    def denied(path, **kw):
        raise PermissionError(13, "Permission denied", path)

    monkeypatch.setattr(library_mod, "content_hash", denied)
    lib = Library.open_or_create(tmp_path / "lib")
    lib.scan([music])
    row = lib.failures().iloc[0]
    assert row["path"].endswith("locked.wav") and "Permission denied" in row["message"]


def test_analyze_rejects_zero_or_negative_workers(tmp_path, capsys):
    lib = Library.open_or_create(tmp_path / "lib")
    for bad in ("0", "-2", "x"):
        with pytest.raises(SystemExit) as exc:
            main(["analyze", str(lib.root), "--workers", bad])
        assert exc.value.code == 2 and "--workers: must be a whole number of worker processes >= 1" in capsys.readouterr().err
    for bad in (0, -1):
        with pytest.raises(ParameterError, match="workers must be None"):
            analyze(lib, workers=bad)


@pytest.mark.parametrize("command", [["demo", "--dir", "{tmp}/demo"], ["dataset", "build", "mirdemo", "--size", "tiny",
                                                                       "--out", "{tmp}/tiny"]])
def test_demo_and_dataset_build_reject_zero_workers_before_any_work(command, tmp_path, capsys):
    args = [a.replace("{tmp}", str(tmp_path)) for a in command]
    with pytest.raises(SystemExit) as exc:
        main(args + ["--workers", "0"])
    assert exc.value.code == 2 and "--workers: must be a whole number of worker processes >= 1" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())  # nothing was rendered


def test_failures_table_is_not_padded_and_json_export_has_plain_slashes(tmp_path, capsys):
    music = tmp_path / "music"
    corpus.write(music / "good.wav", corpus.clip(1), "wav")
    (music / "bad.mp3").write_text("not audio")
    (music / "b.wav").write_bytes(b"")
    lib = tmp_path / "lib"
    main(["scan", str(lib), str(music)])
    main(["analyze", str(lib), "--workers", "1"])
    capsys.readouterr()
    assert main(["failures", str(lib)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["track_id", "stage", "error", "message"]
    assert all(line == line.rstrip() for line in lines)  # nothing padded to a terminal width
    assert all(line.split("  ")[-1].lstrip().startswith(str(music)) for line in lines[1:])
    out = tmp_path / "tracks.json"
    assert main(["export", str(lib), "--format", "json", "--out", str(out)]) == 0
    text = out.read_text()
    assert "\\/" not in text and json.loads(text)[0]["path"] == str(music / "good.wav")


def test_truncated_wav_is_a_warning_in_failures_and_show(tmp_path, capsys):
    music = tmp_path / "music"
    corpus.write(music / "whole.wav", corpus.clip(1), "wav")
    data = (music / "whole.wav").read_bytes()
    (music / "half.wav").write_bytes(data[:len(data) // 2])
    lib = tmp_path / "lib"
    main(["scan", str(lib), str(music)])
    assert "1 with warnings" in capsys.readouterr().out
    main(["failures", str(lib)])
    out = capsys.readouterr().out
    assert "no failures" in out and "truncated" in out and "half.wav" in out and "whole.wav" not in out
    main(["show", str(lib), str(music / "half.wav")])
    assert "warning    " in capsys.readouterr().out
    main(["show", str(lib), str(music / "half.wav"), "--json"])
    shown = json.loads(capsys.readouterr().out)
    assert len(shown["warnings"]) == 1 and "the header declares 33075 frames" in shown["warnings"][0]


# --- the CLI's last line of defence ---------------------------------------------------------------
def test_unexpected_error_prints_one_line_and_logs_the_traceback(tmp_path, capsys, monkeypatch):
    lib = Library.open_or_create(tmp_path / "lib")
    monkeypatch.setattr(Library, "info", lambda self: {}["tracks"])
    assert main(["info", str(lib.root)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("mir info: error: unexpected KeyError: 'tracks'") and str(lib.root / "last-error.log") in err
    assert "Traceback" in (lib.root / "last-error.log").read_text()
    assert main(["--debug", "info", str(lib.root)]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and "traceback above" in err


def test_os_errors_name_the_file_and_the_fix(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    lib = Library.open_or_create(tmp_path / "lib")

    def full(self):
        raise OSError(28, "No space left on device", str(lib.root / "files.parquet"))

    monkeypatch.setattr(Library, "info", full)
    assert main(["info", str(lib.root)]) == 1
    err = capsys.readouterr().err
    assert "files.parquet: No space left on device; free some disk space" in err
    monkeypatch.setattr("mir.cli.library.Library", lambda path: full(None))
    assert main(["info", str(tmp_path / "elsewhere")]) == 1
    assert str(tmp_path / "cache" / "mir" / "last-error.log") in capsys.readouterr().err


def test_similar_with_a_non_utf8_manifest_says_which_file(tmp_path):
    from mir.index.storage import read_manifest

    (tmp_path / "manifest.json").write_bytes(b'{"format": "mir-index\xff"}')
    with pytest.raises(CatalogError, match="manifest.json is unreadable .*build the index again"):
        read_manifest(tmp_path)
    (tmp_path / "manifest.json").write_text("[1, 2]")
    with pytest.raises(CatalogError, match="is not a mir-index"):
        read_manifest(tmp_path)


# --- events files ---------------------------------------------------------------------------------
def test_events_with_only_a_header_are_a_clear_error(tmp_path, capsys):
    events = tmp_path / "events.csv"
    events.write_text("user,track,timestamp,plays\n")
    with pytest.raises(ParameterError, match="holds no events .only a header"):
        read_events(events)
    out, report = clean_events(pd.DataFrame({"user": [], "track": [], "timestamp": []}))
    assert out.empty and report.rows == 0


def test_a_malformed_events_row_is_skipped_and_counted_with_its_line(tmp_path):
    lines = ["user,track,timestamp,plays"] + [f"u{i % 3},t{i % 4},{1700000000 + i},1" for i in range(300)]
    lines[246] = "u1,t1,1700000000,1,extra,more"  # line 247 of the file
    lines[250] = "u1,t1,1700000001,1,extra"
    events = tmp_path / "events.csv"
    events.write_text("\n".join(lines) + "\n")
    frame = read_events(events)
    out, report = clean_events(frame, source=str(events))
    assert report.rows == 300 and report.skipped["malformed_row"] == 2 and report.kept == len(out) == 298
    assert report.examples["malformed_row"] == [247, 251]
    assert "2 malformed row" in report.summary() and "lines 247, 251" in report.summary()


# --- the long file: bounded memory, in a separate process ------------------------------------------
def _analysis_peak_mb(folder: Path, minutes: int) -> float:
    """Peak resident memory (MB) of a fresh process that scans and analyses one ``minutes``-long WAV."""
    music = folder / "music"
    music.mkdir(parents=True)
    with sf.SoundFile(music / "long.wav", "w", 44100, 2, subtype="PCM_16") as f:
        for i in range(minutes * 2):
            f.write(corpus.clip(i, seconds=30.0, sr=44100, channels=2))
    script = textwrap.dedent(f"""
        import resource
        from mir.catalog import Library, analyze
        lib = Library.open_or_create({str(folder / 'lib')!r})
        lib.scan([{str(music)!r}])
        assert analyze(lib, workers=1).done == 1
        print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)}).stdout
    return int(out.split()[-1]) / 1024


@pytest.mark.slow
def test_a_twenty_minute_file_is_analysed_in_bounded_memory(tmp_path):
    """Its peer is a one-minute file: twenty times the audio (200 MB as float32) adds next to no memory."""
    short, long = _analysis_peak_mb(tmp_path / "short", 1), _analysis_peak_mb(tmp_path / "long", 20)
    assert long - short < 40, (short, long)


def test_each_copy_of_content_that_failed_or_warned_is_listed(tmp_path, capsys):
    music = tmp_path / "music"
    for sub in ("a", "b"):
        corpus.write(music / sub / "silence.wav", np.zeros(44100, np.float32), "wav")
        corpus.write(music / sub / "dc.wav", np.full(44100, 0.25, np.float32), "wav")
    lib = tmp_path / "lib"
    main(["scan", str(lib), str(music)])
    main(["analyze", str(lib), "--workers", "1"])
    capsys.readouterr()
    main(["failures", str(lib), "--json"])
    rows = json.loads(capsys.readouterr().out)
    listed = sorted((Path(r["path"]).relative_to(music).as_posix(), r["stage"], r["level"]) for r in rows)
    assert listed == [("a/dc.wav", "descriptors", "warning"), ("a/silence.wav", "beats", "error"),
                      ("a/silence.wav", "descriptors", "error"), ("a/silence.wav", "logmel", "error"),
                      ("b/dc.wav", "descriptors", "warning"), ("b/silence.wav", "beats", "error"),
                      ("b/silence.wav", "descriptors", "error"), ("b/silence.wav", "logmel", "error")]
    assert all(r["message"].startswith(r["path"] + ": ") for r in rows)
