"""The real-audio corpora (realmusic, nonmusic) and the retrieval measures of benchmarks/real_audio.py.

The Debian packages are replaced by tiny real ``.deb`` files built with ``dpkg-deb -b``; only
``apt-get download`` is faked (it copies the tiny package), so no network is needed.
"""
from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from mir.datasets import nonmusic, realmusic
from mir.datasets._debian import Debian, parse_control
from mir.errors import DatasetError, ParameterError
from mir.train.retrieval_metrics import copy_rank1, knn_balanced_accuracy, knn_predict, same_recording_precision

ROOT = Path(__file__).resolve().parents[1]
needs_dpkg = pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="dpkg-deb not installed")

COPYRIGHT = """Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Files: *
Copyright: 2004 Someone
License: GPL-2+
"""


def _tone(path: Path, seconds: float, freq: float, sr: int = 22050, fmt: str | None = None) -> None:
    t = np.arange(int(seconds * sr)) / sr
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32), sr, format=fmt)


def make_deb(tmp: Path, package: str, files: dict[str, float], *, version: str = "1.0-1") -> Path:
    """A real .deb of ``package`` holding tones at ``files`` {path in package: seconds}, a copyright and a readme."""
    root = tmp / f"src-{package}"
    (root / "DEBIAN").mkdir(parents=True)
    (root / "DEBIAN" / "control").write_text(
        f"Package: {package}\nVersion: {version}\nArchitecture: all\nMaintainer: Test <t@example.org>\n"
        f"Description: test package\n Long text.\n .\n Second paragraph.\n")
    for i, (rel, seconds) in enumerate(files.items()):
        _tone(root / rel, seconds, 220.0 * (i + 1))
    doc = root / "usr" / "share" / "doc" / package
    doc.mkdir(parents=True, exist_ok=True)
    (doc / "copyright").write_text(COPYRIGHT)
    (root / "usr" / "share" / "readme.txt").write_text("not audio")
    out = tmp / "debs-src" / f"{package}_{version}_all.deb"
    out.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["dpkg-deb", "--root-owner-group", "-b", str(root), str(out)], check=True, capture_output=True)
    return out


class FakeDebian(Debian):
    """Real dpkg-deb; ``apt-get download`` replaced by copying prebuilt .debs."""

    def __init__(self, debs: dict[str, Path]):
        self.debs = debs
        self.downloads: list[str] = []

    def download(self, package: str, dest: Path) -> Path:
        self.downloads.append(package)
        if package not in self.debs:
            raise DatasetError(f"apt-get download {package} failed (exit 100): E: Unable to locate package")
        return Path(shutil.copy(self.debs[package], dest))


# --- pure helpers ---------------------------------------------------------------------------------
def test_kind_of_follows_folders_patterns_and_exclusions():
    spec = realmusic.PackageSpec("x", "train", music=("usr/share/x/music", "usr/share/x/factions/*/music"),
                                 effects=("usr/share/x/sfx",), exclude=("*_fast.ogg",))
    assert realmusic.kind_of(spec, "usr/share/x/music/a.ogg") == "music"
    assert realmusic.kind_of(spec, "usr/share/x/music/sub/b.mp3") == "music"
    assert realmusic.kind_of(spec, "usr/share/x/factions/egypt/music/c.ogg") == "music"
    assert realmusic.kind_of(spec, "usr/share/x/sfx/boom.wav") == "effect"
    assert realmusic.kind_of(spec, "usr/share/x/music/a_fast.ogg") is None
    assert realmusic.kind_of(spec, "usr/share/x/music/notes.txt") is None
    assert realmusic.kind_of(spec, "usr/share/x/musicians/a.ogg") is None
    assert realmusic.kind_of(spec, "usr/share/x/music/song.raw") is None  # raw only with a RawPCM spec


def test_style_labels_come_from_words_of_the_file_name():
    assert realmusic.style_labels("music/Olivier_Militon.-.Like_a_rock.ogg") == ["rock"]
    assert realmusic.style_labels("Data/Music/oriental.ogg") == ["oriental"]
    assert realmusic.style_labels("sound/music/AmbientBattle.ogg") == ["ambient"]
    assert realmusic.style_labels("music/Brick.ogg") == []  # no substring matches


def test_licences_from_dep5_fields_or_phrases():
    assert realmusic.licences(COPYRIGHT) == ["GPL-2+"]
    old = "is free software; under the terms of the GNU General Public\n License as published; version 2 dated June"
    assert realmusic.licences(old) == ["GPL-2"]
    assert realmusic.licences("all rights reserved") == []
    assert realmusic.licences("License Elements ... this License: Attribution, ShareAlike.") == ["CC-BY-SA"]


def test_parse_control_joins_continuation_lines():
    f = parse_control("Package: p\nVersion: 2:1.0\nDescription: short\n line one\n .\n line two\n")
    assert f == {"Package": "p", "Version": "2:1.0", "Description": "short\nline one\n\nline two"}


def test_packages_are_exactly_the_issue_list_and_split_by_package():
    names = {p.name for p in realmusic.PACKAGES}
    assert len(names) == len(realmusic.PACKAGES) == 19
    assert {p.split for p in realmusic.PACKAGES} == set(realmusic.SPLITS)
    with pytest.raises(DatasetError, match="not a realmusic package"):
        realmusic.split_of("openttd-opensfx")


def test_missing_program_names_it_and_what_to_do():
    with pytest.raises(DatasetError, match="no-such-apt-xyz not found.*Debian or Ubuntu"):
        Debian().require("no-such-apt-xyz", "needed to fetch asc-music")


# --- the build, with real tiny .deb files --------------------------------------------------------------
@needs_dpkg
def test_build_keeps_music_and_effects_records_licence_and_resumes(tmp_path):
    hedge = make_deb(tmp_path, "hedgewars-data", {
        "usr/share/games/hedgewars/Data/Music/Rock.ogg": 3.0,
        "usr/share/games/hedgewars/Data/Music/calm.flac": 2.0,
        "usr/share/games/hedgewars/Data/Sounds/boom.wav": 1.5,
        "usr/share/games/hedgewars/Data/Graphics/notsound.wav": 1.0,
    }, version="1.0.2-6")
    asc = make_deb(tmp_path, "asc-music", {"usr/share/games/asc/music/frontiers.wav": 2.5})
    fake = FakeDebian({"hedgewars-data": hedge, "asc-music": asc})
    out = tmp_path / "corpus"
    m = realmusic.build(out, packages=["hedgewars-data", "asc-music"], debian=fake, progress=False)

    rows = {r["path"]: r for r in m["tracks"]}
    base = "packages/hedgewars-data/usr/share/games/hedgewars/Data"
    assert set(rows) == {f"{base}/Music/Rock.ogg", f"{base}/Music/calm.flac", f"{base}/Sounds/boom.wav",
                         "packages/asc-music/usr/share/games/asc/music/frontiers.wav"}
    rock = rows[f"{base}/Music/Rock.ogg"]
    assert (rock["kind"], rock["split"], rock["format"], rock["styles"]) == ("music", "test", "ogg", ["rock"])
    assert rock["duration"] == pytest.approx(3.0, abs=0.01)
    assert rows[f"{base}/Sounds/boom.wav"]["kind"] == "effect"
    p = m["packages"]["hedgewars-data"]
    assert (p["version"], p["licences"], p["n_music"], p["n_effects"]) == ("1.0.2-6", ["GPL-2+"], 2, 1)
    assert p["music_hours"] == pytest.approx(5.0 / 3600, abs=1e-3)
    assert (out / "packages" / "hedgewars-data" / "copyright").read_text() == COPYRIGHT
    assert not (out / "packages" / "hedgewars-data" / "usr" / "share" / "readme.txt").exists()
    assert m["splits"]["test"]["packages"] == ["asc-music", "hedgewars-data"]
    assert json.loads((out / "manifest.json").read_text()) == m
    assert realmusic.tracks(out, split="test")[0]["path"].startswith(str(out))

    # resume: nothing is fetched again and the manifest is the same
    again = realmusic.build(out, packages=["hedgewars-data", "asc-music"], debian=fake, progress=False)
    assert fake.downloads == ["hedgewars-data", "asc-music"]
    assert again == m


@needs_dpkg
def test_damaged_or_partial_download_is_fetched_again(tmp_path):
    asc = make_deb(tmp_path, "asc-music", {"usr/share/games/asc/music/a.wav": 1.5})
    out = tmp_path / "corpus"
    (out / "debs" / ".partial").mkdir(parents=True)
    (out / "debs" / ".partial" / "asc-music_1.0-1_all.deb").write_bytes(b"half")  # an interrupted download
    (out / "debs" / "asc-music_1.0-1_all.deb").write_bytes(asc.read_bytes()[:200])  # a truncated file
    fake = FakeDebian({"asc-music": asc})
    m = realmusic.build(out, packages=["asc-music"], debian=fake, progress=False)
    assert fake.downloads == ["asc-music"]
    assert m["packages"]["asc-music"]["n_music"] == 1
    assert not (out / "debs" / ".partial").exists()


@needs_dpkg
def test_a_package_that_cannot_be_fetched_is_named(tmp_path):
    with pytest.raises(DatasetError, match="apt-get download drascula-music failed.*Unable to locate"):
        realmusic.build(tmp_path / "c", packages=["drascula-music"], debian=FakeDebian({}), progress=False)
    assert not (tmp_path / "c" / ".state" / "drascula-music.json").exists()


@needs_dpkg
def test_raw_pcm_is_converted_and_archives_are_opened(tmp_path):
    import zipfile

    root = tmp_path / "src"
    (root / "DEBIAN").mkdir(parents=True)
    (root / "DEBIAN" / "control").write_text("Package: ufoai-music\nVersion: 2.5-2\nArchitecture: all\n"
                                             "Maintainer: T <t@example.org>\nDescription: m\n")
    pk3 = root / "usr/share/games/ufoai/base/0music.pk3"
    pk3.parent.mkdir(parents=True)
    _tone(tmp_path / "m.wav", 2.0, 330.0)
    with zipfile.ZipFile(pk3, "w") as z:
        z.write(tmp_path / "m.wav", "music/theme.wav")
        z.writestr("maps/readme.txt", "x")
    deb = tmp_path / "ufoai-music_2.5-2_all.deb"
    subprocess.run(["dpkg-deb", "--root-owner-group", "-b", str(root), str(deb)], check=True, capture_output=True)
    m = realmusic.build(tmp_path / "c", packages=["ufoai-music"], debian=FakeDebian({"ufoai-music": deb}), progress=False)
    (row,) = m["tracks"]
    assert row["path"] == "packages/ufoai-music/0music.pk3/music/theme.wav"
    assert row["source"] == "usr/share/games/ufoai/base/0music.pk3:music/theme.wav"

    spec = realmusic.SPEC_BY_NAME["xblast-tnt-musics"]
    raw = tmp_path / "song.raw"
    (np.full(22050, 128, np.uint8) + (np.arange(22050) % 2).astype(np.uint8)).tofile(raw)
    kept = realmusic._convert(raw, tmp_path / "kept" / "song.raw", spec, Debian())
    y, sr = sf.read(kept)
    assert (kept.name, sr, len(y)) == ("song.raw.flac", 22050, 22050)
    assert np.abs(y).max() == pytest.approx(1 / 128, abs=1e-4)


class FakeRenderer(Debian):
    def __init__(self):
        self.rendered = []

    def can_render_modules(self):
        return True

    def render_module(self, src, dest):  # one second of tone, then two of digital silence
        self.rendered.append(dest.name)
        sf.write(dest, np.r_[0.3 * np.sin(np.arange(22050) * 0.1), np.zeros(44100)].astype(np.float32), 22050)


def test_tracker_modules_are_rendered_to_flac_trimmed_or_skipped_with_a_reason(tmp_path):
    spec = realmusic.SPEC_BY_NAME["pingus-data"]
    src = tmp_path / "song.it"
    src.write_bytes(b"IMPM")
    fake = FakeRenderer()
    kept = realmusic._convert(src, tmp_path / "out" / "song.it", spec, fake)
    assert kept.name == "song.it.flac" and fake.rendered == [".song.it.partial.flac"]
    assert sf.info(kept).duration == pytest.approx(1.5, abs=1e-3)  # the silent tail is cut to half a second
    assert not list((tmp_path / "out").glob(".*"))

    class NoRenderer(Debian):
        def can_render_modules(self):
            return False

    with pytest.raises(DatasetError, match="needs openmpt123"):
        realmusic._convert(src, tmp_path / "out2" / "song.it", spec, NoRenderer())


@needs_dpkg
def test_cli_lists_the_real_datasets_and_summarises_a_built_one(tmp_path, capsys, monkeypatch):
    from mir.cli.main import main

    assert main(["dataset", "list"]) == 0
    listed = [line.split("\t")[0] for line in capsys.readouterr().out.splitlines()]
    assert {"mirdemo", "realmusic", "nonmusic"} <= set(listed)
    assert main(["dataset", "build", "mirdemo", "--out", str(tmp_path / "d")]) == 1
    assert "needs --size" in capsys.readouterr().err

    asc = make_deb(tmp_path, "asc-music", {"usr/share/games/asc/music/a.wav": 1.5})
    monkeypatch.setattr(realmusic, "Debian", lambda: FakeDebian({"asc-music": asc}))
    out = tmp_path / "real"
    assert main(["dataset", "build", "realmusic", "--out", str(out), "--packages", "asc-music", "--quiet"]) == 0
    assert "asc-music" in capsys.readouterr().out
    assert main(["dataset", "info", str(out)]) == 0
    assert "test: 1 packages, 1 music tracks" in capsys.readouterr().out


# --- non-music ----------------------------------------------------------------------------------------------
def test_noise_colours_and_hum_have_the_right_spectra(rng):
    n = 2**16
    slopes = {}
    for colour in ("white", "pink", "brown"):
        y = nonmusic.coloured_noise(n, colour, np.random.default_rng(1))
        assert np.sqrt(np.mean(y.astype(np.float64) ** 2)) == pytest.approx(1.0, rel=1e-4)
        p = np.abs(np.fft.rfft(y)) ** 2
        f = np.arange(p.size)
        band = (f > 10) & (f < n // 4)
        slopes[colour] = np.polyfit(np.log(f[band]), np.log(p[band] + 1e-20), 1)[0]
    assert slopes["white"] == pytest.approx(0.0, abs=0.1)
    assert slopes["pink"] == pytest.approx(-1.0, abs=0.1)
    assert slopes["brown"] == pytest.approx(-2.0, abs=0.1)
    hum = nonmusic.mains_hum(22050, 22050, 50.0, rng)
    spec = np.abs(np.fft.rfft(hum))
    assert set(np.argsort(spec)[-3:]) <= set(range(50, 50 * 7, 50))  # energy only at 50 Hz harmonics


def test_synthetic_clips_are_deterministic_and_at_their_level():
    a, pa = nonmusic.synthetic_clip("noise", 4, seed=3)
    b, pb = nonmusic.synthetic_clip("noise", 4, seed=3)
    c, _ = nonmusic.synthetic_clip("noise", 4, seed=4)
    assert pa == pb and np.array_equal(a, b) and not np.array_equal(a, c)
    assert pa["colour"] == ("white", "pink", "brown")[4 % 3]
    rms_db = 20 * np.log10(np.sqrt(np.mean(a.astype(np.float64) ** 2)))
    assert rms_db == pytest.approx(pa["level_db"], abs=0.2)
    s, ps = nonmusic.synthetic_clip("silence", 0, seed=0)
    assert -80 <= ps["level_db"] <= -55 and np.abs(s).max() > 1e-4  # above mir's digital-silence floor
    assert [nonmusic.index_split(i, 20) for i in (0, 13, 14, 16, 17, 19)] == ["train", "train", "valid", "valid", "test", "test"]


class FakeSpeech(FakeDebian):
    def speak(self, text, dest, *, voice, speed, pitch):
        _tone(dest, 1.0 + len(text) % 3, 100.0 + pitch, fmt="WAV")  # dest is a temp name


@needs_dpkg
def test_nonmusic_build_has_held_out_voices_effects_by_package_and_resumes(tmp_path):
    hedge = make_deb(tmp_path, "hedgewars-data", {"usr/share/games/hedgewars/Data/Sounds/long.wav": 1.5,
                                                  "usr/share/games/hedgewars/Data/Sounds/blip.wav": 0.3})
    rdir = tmp_path / "real"
    fake = FakeSpeech({"hedgewars-data": hedge})
    realmusic.build(rdir, packages=["hedgewars-data"], debian=fake, progress=False)

    voices = (("en-us+m1", "train"), ("fi+m2", "test"))
    out = tmp_path / "non"
    kw = dict(realmusic_dir=rdir, seed=1, debian=fake, progress=False, clips_per_voice=2,
              synth_clips={"silence": 2, "hum": 4, "noise": 3}, voices=voices)
    m = nonmusic.build(out, **kw)
    assert m["counts"]["speech"] == {"train": 2, "valid": 0, "test": 2}
    assert m["counts"]["effect"] == {"train": 0, "valid": 0, "test": 1}  # the 0.3 s blip is left out
    assert m["counts"]["hum"] == {"train": 3, "valid": 0, "test": 1}
    test_speech = nonmusic.clips(out, split="test", kinds=("speech",))
    assert {r["voice"] for r in test_speech} == {"fi+m2"}
    assert Path(test_speech[0]["path"]).is_file()
    mtimes = {p: p.stat().st_mtime_ns for p in out.rglob("*.flac")}
    assert nonmusic.build(out, **kw) == m
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.flac")} == mtimes  # resumed: nothing rewritten


# --- retrieval measures (hand-computed cases) -----------------------------------------------------------
def test_same_recording_precision_at_3_by_hand():
    # two recordings of 4 excerpts on the unit circle; recording b has one stray excerpt near a
    ang = np.deg2rad([0, 10, 20, 30, 90, 100, 110, 35])
    emb = np.c_[np.cos(ang), np.sin(ang)]
    groups = list("aaaabbbb")
    # a0: nearest 10, 20, 30 -> 3/3; a1: 0/20 (10 apart), 30 -> 3/3; a2: 10, 30, 35 -> 2/3;
    # a3: 35, 20, 10 -> 2/3; b4: 100, 110, 35(55 deg away) -> 3/3; b5: 90, 110, 35 -> 3/3;
    # b6: 100, 90, 35 -> 3/3; b7(35): 30, 20, 10 -> 0/3
    expected = (3 + 3 + 2 + 2 + 3 + 3 + 3 + 0) / (8 * 3)
    assert same_recording_precision(emb, groups, k=3) == pytest.approx(expected)
    with pytest.raises(ParameterError, match="k must be"):
        same_recording_precision(emb, groups, k=8)


def test_copy_rank1_by_hand():
    originals = np.eye(3)
    copies = np.array([[0.9, 0.1, 0], [0.6, 0.5, 0], [0, 0.2, 1], [0, 0.4, 0.3]])
    source = [0, 1, 2, 1]  # copy 1 lands nearer original 0: wrong; the others are right
    assert copy_rank1(copies, originals, source) == pytest.approx(3 / 4)
    with pytest.raises(ParameterError, match="source"):
        copy_rank1(copies, originals, [0, 1, 2, 3])


def test_knn_balanced_accuracy_by_hand_excludes_the_same_recording():
    # labels x (3 excerpts) and y (2 excerpts); recordings: 0 = x0,x1 (identical), 1 = x2, 2 = y0, 3 = y1
    emb = np.array([[1, 0], [1, 0], [0.8, 0.6], [0.6, 0.8], [0, 1]])
    labels = ["x", "x", "x", "y", "y"]
    groups = [0, 0, 1, 2, 3]
    # cosines: x0.x2 0.8, x0.y0 0.6, x2.y0 0.96, x2.y1 0.6, y0.y1 0.8 (x0.x1 excluded: same recording)
    # k=1: x0 -> x2 x; x1 -> x2 x; x2 -> y0 (0.96) wrong; y0 -> x2 (0.96) wrong; y1 -> y0 y
    #      => recalls x 2/3, y 1/2 -> 7/12
    assert knn_predict(emb, labels, groups, k=1).tolist() == [0, 0, 1, 0, 1]
    assert knn_balanced_accuracy(emb, labels, groups, k=1) == pytest.approx(7 / 12)
    # k=3: y0's neighbours x2 (0.96), y1 (0.8), x0 (0.6, tie with x1: lower index) -> x wins 2:1
    assert knn_predict(emb, labels, groups, k=3)[3] == 0
    with pytest.raises(ParameterError, match="at least k=5"):
        knn_balanced_accuracy(emb, labels, groups, k=5)


def _bench():
    spec = importlib.util.spec_from_file_location("real_audio_bench", ROOT / "benchmarks" / "real_audio.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_benchmark_excerpts_and_degradations():
    bench = _bench()
    assert bench.excerpt_offsets(80.0) == [5.0, 25.0, 45.0, 65.0]  # centres of the quarters, 10 s each
    assert bench.pick_evenly(list(range(10)), 4) == [0, 3, 6, 9]
    assert bench.pick_evenly([1, 2], 4) == [1, 2]
    y = np.sin(2 * np.pi * 440 * np.arange(22050) / 22050).astype(np.float32) * 0.5
    g = np.random.default_rng(0)
    assert np.allclose(bench.degrade(y, "gain", g), y * 10 ** (-12 / 20))
    noisy = bench.degrade(y, "noise", g)
    snr = 10 * np.log10(np.mean(y.astype(np.float64) ** 2) / np.mean((noisy - y).astype(np.float64) ** 2))
    assert snr == pytest.approx(20.0, abs=0.3)
    hi = np.sin(2 * np.pi * 6000 * np.arange(22050) / 22050).astype(np.float32)
    low = bench.degrade(hi, "8k", g)
    assert low.shape == hi.shape
    assert np.abs(low[2000:-2000]).max() < 0.01  # 6 kHz is above the 4 kHz band of 8 kHz audio


def test_benchmark_measure_gives_plain_json_numbers(rng):
    bench = _bench()
    n_tracks, d = 6, 8
    centres = rng.standard_normal((n_tracks, d)) * 3
    orig = np.repeat(centres, 4, axis=0) + rng.standard_normal((n_tracks * 4, d)) * 0.1
    emb = {"orig": orig, **{k: orig + rng.standard_normal(orig.shape) * 0.05 for k in bench.KINDS},
           "music_train": rng.standard_normal((10, d)) + 2, "nonmusic_train": rng.standard_normal((10, d)) - 2,
           "nonmusic_test": rng.standard_normal((5, d)) - 2, "shared": np.r_[np.full((1, d), 2.0), np.full((1, d), -2.0)]}
    data = {"groups": np.repeat(np.arange(n_tracks), 4).tolist(), "packages": ["p", "q"] * (n_tracks * 2),
            "styles": [""] * (n_tracks * 4), "nonmusic_test": [{"kind": "speech"}] * 5,
            "shared": ["x/brahms.ogg", "x/speech1.ogg"]}
    res = bench.measure("toy", emb, data)
    json.dumps(res)  # no numpy scalars left
    assert res["same_recording_p_at_3"] == 1.0 and res["copy_rank1_overall"] == 1.0
    assert res["music_auc"] == 1.0
    assert (res["shared_non_music_flagged"], res["shared_music_kept"]) == (1, 1)
