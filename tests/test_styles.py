"""The procedural genres of ``mirdemo`` (their musical signatures), the soundfont draw, the pedalboard
production and the two-level genre names. Arrangements are pure note events, so most of this needs no audio."""
from __future__ import annotations

import numpy as np
import pytest

from mir.catalog.labels import align_genres, genre_leaf, genre_top
from mir.datasets import _effects, _grooves, _procedural, _render, _soundfonts
from mir.datasets._spec import FAMILIES, GENRES, PROCEDURAL_GENRES, SAMPLE_RATE, STYLE_BY_NAME, TOP_GENRES
from mir.errors import DatasetError

SECONDS = 20.0
SEEDS = range(8)


def clip(genre: str, seed: int):
    return _procedural.arrange(STYLE_BY_NAME[genre], np.random.default_rng(seed), seconds=SECONDS)


def notes(events, *, channel=None, keys=None):
    return [e for e in events if (channel is None or e[2] == channel) and (keys is None or e[3] in keys)]


def channel_of(draws, role: str) -> int:
    return next(c["channels"][0] for c in draws["arrangement"] if c["role"] == role)


def beat_s(draws) -> float:
    return 60.0 / draws["tempo_bpm"]


# --- every procedural genre ---------------------------------------------------------------------------
@pytest.mark.parametrize("genre", PROCEDURAL_GENRES)
def test_arrangement_is_in_range_tagged_and_varies_per_clip(genre):
    style = STYLE_BY_NAME[genre]
    seen = set()
    for seed in SEEDS:
        events, d = clip(genre, seed)
        assert style.tempo[0] <= d["tempo_bpm"] <= style.tempo[1]
        assert set(d["families"]) <= set(FAMILIES) | {"drums"} and d["drums"] == ("drums" in d["families"])
        assert d["piece"]["mode"] in ("major", "minor") and 0 <= d["piece"]["tonic"] < 12
        assert events and all(0 <= a < b <= SECONDS and 0 <= k <= 127 and 1 <= v <= 127 for a, b, _, k, v in events)
        assert d["n_notes"] == len(events)
        seen.add((d["piece"]["tonic"], d["piece"]["mode"], d["progression"], d["groove"], tuple(d["programs"])))
    assert len(seen) >= 6, seen  # clips of one genre differ
    again, d_again = clip(genre, 3)
    assert again == clip(genre, 3)[0] and d_again == clip(genre, 3)[1]  # seeded


def test_metal_is_minor_with_distorted_low_riffs_and_double_time_drums():
    for seed in SEEDS:
        events, d = clip("metal/heavy_metal", seed)
        assert d["piece"]["mode"] == "minor" and d["tempo_bpm"] >= 130
        riff = next(c for c in d["arrangement"] if c["role"] == "riff")
        assert riff["program"] in (29, 30) and riff["bus"] == "drive"  # overdriven or distortion guitar, produced by _effects
        keys = [e[3] for e in notes(events, channel=riff["channels"][0])]
        assert np.median(keys) < 56  # low strings, palm-muted
        if d["groove"] == "double_kick":
            kicks = notes(events, channel=_procedural.DRUM_CHANNEL, keys={_grooves.KICK})
            assert len(kicks) >= 3.5 * SECONDS / beat_s(d)  # sixteenths


def test_blues_is_twelve_bars_of_one_four_and_five_and_the_bass_plays_them():
    for seed in SEEDS:
        events, d = clip("blues/twelve_bar", seed)
        chords = d["progression"].split()
        assert len(chords) == 12 and {c.rstrip("7") for c in chords} <= {"I", "IV", "V", "i", "iv"}
        assert chords[0].upper() == "I7" and chords[8] == "V7" and chords[4].upper() == "IV7"  # the form
        root = {"I": 0, "IV": 5, "V": 7}
        bar = 4 * beat_s(d)
        bass = notes(events, channel=channel_of(d, "bass"))
        for b in range(int(SECONDS / bar)):
            first = min(bass, key=lambda e: abs(e[0] - b * bar))
            expect = (d["piece"]["tonic"] + root[chords[b % 12].rstrip("7").upper()]) % 12
            assert first[3] % 12 == expect, (seed, b)


def test_dance_has_a_kick_on_every_beat():
    for seed in SEEDS:
        events, d = clip("electronic/dance", seed)
        kicks = np.array([e[0] for e in notes(events, channel=_procedural.DRUM_CHANNEL, keys={_grooves.KICK})])
        beats = np.arange(0, SECONDS, beat_s(d))
        assert all(np.min(np.abs(kicks - t)) < 0.04 for t in beats)  # four on the floor
        assert 120 <= d["tempo_bpm"] <= 132 and any(c["bus"] == "pump" for c in d["arrangement"])


def test_swing_eighths_are_uneven():
    for seed in SEEDS:
        events, d = clip("jazz/swing", seed)
        assert 0.6 <= d["swing"] <= 0.7
        ride = np.array([e[0] for e in notes(events, channel=_procedural.DRUM_CHANNEL, keys={_grooves.RIDE})])
        pos = np.mod(ride / beat_s(d), 1.0)
        offbeats = pos[(pos > 0.3) & (pos < 0.9)]
        assert len(offbeats) >= SECONDS / beat_s(d) / 4
        assert np.median(offbeats) == pytest.approx(d["swing"], abs=0.03)  # the second eighth comes late
        assert not set(d["progression"].split()) <= {"I", "IV", "V", "vi", "ii", "iii"}  # sevenths and ninths


def test_reggae_drops_the_one_and_hip_hop_snares_on_two_and_four():
    for seed in SEEDS:
        events, d = clip("reggae/one_drop", seed)
        bar = 4 * beat_s(d)
        kicks = np.array([e[0] for e in notes(events, channel=_procedural.DRUM_CHANNEL, keys={_grooves.KICK})])
        pos = np.mod(kicks / bar, 1.0)
        assert np.all(np.abs(pos - 0.5) < 0.03)  # beat 3 only
        events, d = clip("hip_hop/boom_bap", seed)
        assert 85 <= d["tempo_bpm"] <= 95
        snares = np.array([e[0] for e in notes(events, channel=_procedural.DRUM_CHANNEL, keys={_grooves.SNARE})])
        beat = np.round(np.mod(snares / beat_s(d), 4.0)).astype(int) % 4
        assert set(beat) == {1, 3}


def test_pop_uses_its_progressions_and_ambient_holds_long_chords():
    allowed = {" ".join(_grooves.roman(s, q) for s, q in prog)
               for table in _grooves.PROGRESSIONS["pop"].values() for prog in table}
    for seed in SEEDS:
        _, d = clip("pop/pop", seed)
        chords = d["progression"].split()
        hold = 2 if len(chords) == 8 and chords[0] == chords[1] else 1
        assert " ".join(chords[::hold]) in allowed
        events, d = clip("ambient/ambient", seed)
        assert not d["drums"] and d["tempo_bpm"] < 90
        pad = notes(events, channel=channel_of(d, "pad"))
        assert np.median([b - a for a, b, *_ in pad]) > 2.0  # seconds-long pads


# --- soundfonts -------------------------------------------------------------------------------------------
def test_the_soundfont_is_drawn_per_clip_seeded_and_recorded(monkeypatch):
    used = []

    def fake(events, channels, *, seconds, soundfont, **kw):
        used.append(soundfont)
        n = int(round(seconds * SAMPLE_RATE))
        return (0.1 * np.sin(np.arange(n) / 10.0)[:, None] * np.ones((1, 2))).astype(np.float32)

    monkeypatch.setattr(_render, "synthesise", fake)
    fonts = ("TimGM6mb", "FluidR3_GM")
    drawn = []
    for seed in range(12):
        used.clear()
        _, d = _render.render_clip(None, STYLE_BY_NAME["pop/pop"], np.random.default_rng(seed), seconds=4.0, soundfonts=fonts)
        assert set(used) == {d["soundfont"]}  # every bus of the clip through the recorded font
        _, again = _render.render_clip(None, STYLE_BY_NAME["pop/pop"], np.random.default_rng(seed), seconds=4.0,
                                       soundfonts=fonts)
        assert again["soundfont"] == d["soundfont"]
        drawn.append(d["soundfont"])
    assert set(drawn) == set(fonts)


def test_missing_debian_soundfonts_warn_once_with_the_package_to_install(monkeypatch):
    real = _soundfonts.path_of
    monkeypatch.setattr(_soundfonts, "path_of", lambda name: real(name) if name == "TimGM6mb" else None)
    with pytest.warns(_soundfonts.MissingSoundfontWarning, match="fluid-soundfont-gm.*musescore-general-soundfont"):
        assert _soundfonts.resolve() == ("TimGM6mb",)
    with pytest.raises(DatasetError, match="FluidR3_GM is not installed; apt-get install fluid-soundfont-gm"):
        _soundfonts.resolve(["FluidR3_GM"])
    with pytest.raises(DatasetError, match="unknown soundfont"):
        _soundfonts.resolve(["Nope"])


@pytest.mark.skipif(_soundfonts.path_of("FluidR3_GM") is None,
                    reason="Debian's fluid-soundfont-gm is not installed (apt-get install -y fluid-soundfont-gm)")
def test_fluidr3_renders_and_resets_between_clips():
    events = [(0.0, 0.5, 0, 60, 100), (0.5, 1.0, 0, 64, 100)]
    channels = [{"family": "piano", "program": 0, "volume": 100, "pan": 64, "channels": [0]}]
    a = _render.synthesise(events, channels, seconds=1.0, soundfont="FluidR3_GM")
    _render.synthesise([(0.0, 1.0, 0, 40, 127)], [{**channels[0], "program": 48}], seconds=1.0, soundfont="FluidR3_GM")
    b = _render.synthesise(events, channels, seconds=1.0, soundfont="FluidR3_GM")
    assert np.abs(a).max() > 0.01 and np.array_equal(a, b)
    tim = _render.synthesise(events, channels, seconds=1.0, soundfont="TimGM6mb")
    assert not np.allclose(a, tim, atol=1e-3)  # another piano


# --- production ---------------------------------------------------------------------------------------------
def _high_share(y: np.ndarray, above_hz: float) -> float:
    spec = np.abs(np.fft.rfft(y.mean(axis=1))) ** 2
    freqs = np.fft.rfftfreq(len(y), 1 / SAMPLE_RATE)
    return float(spec[freqs >= above_hz].sum() / spec.sum())


def test_the_drive_insert_adds_high_harmonics_to_the_guitar_only():
    # E2 then A2 on a clean electric guitar: the share of energy above the 8th harmonic of E2 (660 Hz)
    events = [(0.0, 1.9, 0, 40, 100), (2.0, 3.9, 0, 45, 100)]
    guitar = [{"family": "guitar", "program": 27, "volume": 110, "pan": 64, "channels": [0]}]
    clean = _render.synthesise(events, guitar, seconds=4.0)
    for heavy, effect in ((True, "Distortion"), (False, "Overdrive")):
        for seed in range(4):  # measured over seeds 0-11: 1.42-1.60x (distortion), 1.60-1.70x (overdrive)
            driven, record = _effects.drive(clean, np.random.default_rng(seed), heavy=heavy)
            assert driven.shape == clean.shape and _high_share(driven, 660) > 1.3 * _high_share(clean, 660), effect
            assert [r["effect"] for r in record if r["effect"] in ("Distortion", "Overdrive")] == [effect]
    # in a rock clip, the drive bus holds the guitars and not the drums or the bass
    for seed in range(4):
        _, d = clip("rock/rock", seed)
        for c in d["arrangement"]:
            assert (c["bus"] == "drive") == (c["family"] == "guitar" and c["program"] in (27, 29, 30)), c


def test_rendered_rock_clip_records_its_chain_and_dance_pumps():
    y, d = _render.render_clip(None, STYLE_BY_NAME["rock/rock"], np.random.default_rng(1), seconds=4.0)
    effects = [e["effect"] for e in d["effects"]]
    assert {"Distortion", "Overdrive"} & set(effects) and "EQ" in effects and d["soundfont"] == "TimGM6mb"
    assert all(e["bus"] in ("drive", "mix") for e in d["effects"])
    assert _render.check_audio(y, seconds=4.0, max_gap=1.0) is None
    t = np.arange(SAMPLE_RATE) / SAMPLE_RATE
    ducked = _effects.pump(np.ones((SAMPLE_RATE, 2), np.float32), sec_per_beat=0.5, depth=0.6, release_s=0.1)[:, 0]
    assert ducked[0] == pytest.approx(0.4) and ducked[int(0.5 * SAMPLE_RATE)] == pytest.approx(0.4, abs=1e-3)
    assert ducked[int(0.45 * SAMPLE_RATE)] > 0.95 and np.all(ducked <= 1.0) and len(t) == len(ducked)


# --- two-level genres ---------------------------------------------------------------------------------------------
def test_genres_are_two_level_and_flat_names_align_by_leaf():
    assert all(g.count("/") == 1 for g in GENRES) and len({genre_leaf(g) for g in GENRES}) == len(GENRES)
    assert {genre_top(g) for g in GENRES} == set(TOP_GENRES) >= {"folk", "classical", "rock", "metal", "pop", "electronic",
                                                                 "ambient", "jazz", "hip_hop", "blues", "reggae", "orchestral"}
    assert genre_leaf("folk/jig") == "jig" and genre_leaf("jig") == "jig" and genre_top("folk/jig") == "folk"
    assert genre_top("jig", {"jig": "folk"}) == "folk" and genre_top("jazz") == "jazz"
    old = ("reel", "jig", "mass")  # a model trained on dataset version 1
    assert align_genres(["folk/jig", "classical/mass", "rock/rock", "jig", ""], old) == {"folk/jig": "jig",
                                                                                        "classical/mass": "mass"}
    assert align_genres(["jig", "reel"], ("folk/jig", "folk/reel", "rock/rock")) == {"jig": "folk/jig", "reel": "folk/reel"}
    assert align_genres(["x/jig"], ("a/jig", "b/jig")) == {}  # ambiguous leaf: left unknown
