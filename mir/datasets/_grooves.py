"""What the procedural genres are made of: progressions, drum grooves, bass and comping figures, players.

Pure data, read by ``_procedural``. Chords are ``(semitones above the tonic, quality)``; a
progression is one chord per bar (``_procedural`` may hold each for two bars). Drum grooves are
one bar of ``(position in quarter notes, GM drum key, velocity)``; figures are one bar of
``(position, length)`` in quarter notes. Programs are General MIDI (0-based), each listed under
the tag family it counts as.
"""
from __future__ import annotations

from dataclasses import dataclass

# --- harmony ----------------------------------------------------------------------------------------------
QUALITIES: dict[str, tuple[int, ...]] = {
    "maj": (0, 4, 7), "min": (0, 3, 7), "5": (0, 7, 12), "sus2": (0, 2, 7),
    "7": (0, 4, 7, 10), "maj7": (0, 4, 7, 11), "m7": (0, 3, 7, 10), "m7b5": (0, 3, 6, 10),
    "9": (0, 4, 7, 10, 14), "maj9": (0, 4, 7, 11, 14), "m9": (0, 3, 7, 10, 14), "6": (0, 4, 7, 9),
}
SCALES = {
    "major": (0, 2, 4, 5, 7, 9, 11), "minor": (0, 2, 3, 5, 7, 8, 10),
    "blues": (0, 3, 5, 6, 7, 10), "major_pentatonic": (0, 2, 4, 7, 9), "minor_pentatonic": (0, 3, 5, 7, 10),
    "phrygian": (0, 1, 3, 5, 7, 8, 10),
}
_DEGREES = ("I", "bII", "II", "bIII", "III", "IV", "bV", "V", "bVI", "VI", "bVII", "VII")


def roman(step: int, quality: str) -> str:
    """``(2, "m7")`` -> ``"ii7"``: the Roman numeral of a chord relative to the tonic."""
    name = _DEGREES[step % 12]
    minor = quality in ("min", "m7", "m9", "m7b5")
    if minor:
        name = name[:-len(name.lstrip("b"))] + name.lstrip("b").lower()
    suffix = {"maj": "", "min": "", "5": "5", "sus2": "sus2", "7": "7", "maj7": "maj7", "m7": "7", "m7b5": "7b5",
              "9": "9", "maj9": "maj9", "m9": "9", "6": "6"}[quality]
    return name + suffix


_M, _m = "maj", "min"
PROGRESSIONS: dict[str, dict[str, tuple[tuple[tuple[int, str], ...], ...]]] = {
    "rock": {
        "major": (((0, _M), (5, _M), (7, _M), (5, _M)), ((0, _M), (10, _M), (5, _M), (0, _M)),
                  ((9, _m), (5, _M), (0, _M), (7, _M)), ((0, _M), (7, _M), (5, _M), (5, _M))),
        "minor": (((0, _m), (8, _M), (10, _M), (0, _m)), ((0, _m), (3, _M), (5, _m), (3, _M)),
                  ((0, _m), (10, _M), (8, _M), (10, _M))),
    },
    "heavy_metal": {
        "minor": (((0, "5"), (1, "5"), (0, "5"), (3, "5")), ((0, "5"), (5, "5"), (6, "5"), (5, "5")),
                  ((0, "5"), (8, "5"), (7, "5"), (1, "5")), ((0, "5"), (0, "5"), (3, "5"), (1, "5"))),
    },
    "pop": {
        "major": (((0, _M), (7, _M), (9, _m), (5, _M)), ((9, _m), (5, _M), (0, _M), (7, _M)),
                  ((0, _M), (9, _m), (5, _M), (7, _M)), ((5, _M), (0, _M), (7, _M), (9, _m))),
        "minor": (((0, _m), (8, _M), (3, _M), (10, _M)), ((0, _m), (5, _m), (8, _M), (10, _M))),
    },
    "dance": {
        "major": (((0, _M), (7, _M), (9, _m), (5, _M)), ((5, "maj7"), (7, _M), (4, "m7"), (9, _m))),
        "minor": (((0, "m7"), (8, "maj7"), (3, _M), (10, _M)), ((0, _m), (0, _m), (5, _m), (5, _m)),
                  ((0, _m), (10, _M), (8, _M), (10, _M))),
    },
    "ambient": {
        "major": (((0, "sus2"), (5, "maj7")), ((0, "maj7"), (9, "m9")), ((0, "maj9"), (7, "sus2"), (5, "maj7"), (5, "maj7"))),
        "minor": (((0, "m9"), (8, "maj7")), ((0, "m7"), (5, "m9")), ((0, "sus2"), (3, "maj7"), (10, "sus2"), (8, "maj7"))),
    },
    "swing": {
        "major": (((2, "m7"), (7, "7"), (0, "maj7"), (0, "maj7")), ((0, "maj7"), (9, "m7"), (2, "m7"), (7, "7")),
                  ((4, "m7"), (9, "7"), (2, "m7"), (7, "7")), ((2, "m7"), (7, "9"), (0, "maj9"), (9, "7")),
                  ((0, "6"), (9, "7"), (2, "m9"), (7, "9"))),
        "minor": (((2, "m7b5"), (7, "7"), (0, "m7"), (0, "m7")), ((0, "m9"), (5, "m7"), (2, "m7b5"), (7, "7"))),
    },
    "boom_bap": {
        "major": (((0, "maj7"), (9, "m7"), (2, "m7"), (7, "7")), ((5, "maj7"), (4, "m7"), (2, "m7"), (0, "maj7"))),
        "minor": (((0, "m7"), (0, "m7"), (5, "m7"), (5, "m7")), ((0, "m9"), (8, "maj7"), (0, "m9"), (8, "maj7")),
                  ((0, "m7"), (3, "maj7"), (10, "7"), (5, "m7"))),
    },
    "twelve_bar": {  # quick change and slow change; every blues is twelve bars of I, IV and V
        "major": (((0, "7"), (5, "7"), (0, "7"), (0, "7"), (5, "7"), (5, "7"), (0, "7"), (0, "7"),
                   (7, "7"), (5, "7"), (0, "7"), (7, "7")),
                  ((0, "7"), (0, "7"), (0, "7"), (0, "7"), (5, "7"), (5, "7"), (0, "7"), (0, "7"),
                   (7, "7"), (5, "7"), (0, "7"), (0, "7"))),
        "minor": (((0, "m7"), (5, "m7"), (0, "m7"), (0, "m7"), (5, "m7"), (5, "m7"), (0, "m7"), (0, "m7"),
                   (7, "7"), (5, "m7"), (0, "m7"), (7, "7")),),
    },
    "one_drop": {
        "major": (((0, _M), (5, _M), (7, _M), (5, _M)), ((0, _M), (9, _m), (5, _M), (7, _M)), ((0, _M), (5, _M))),
        "minor": (((0, _m), (5, _m)), ((0, _m), (10, _M), (8, _M), (10, _M))),
    },
    "symphonic": {
        "major": (((0, _M), (9, _m), (5, _M), (7, _M)), ((0, _M), (4, _m), (5, _M), (7, _M))),
        "minor": (((0, _m), (8, _M), (3, _M), (10, _M)), ((0, _m), (5, _m), (7, _M), (0, _m))),
    },
}
#: probability of the major mode per genre (the rest is minor); metal is always minor
MAJOR_P = {"rock": 0.65, "heavy_metal": 0.0, "pop": 0.8, "dance": 0.4, "ambient": 0.5, "swing": 0.8,
           "boom_bap": 0.3, "twelve_bar": 0.8, "one_drop": 0.6, "symphonic": 0.45}
#: bars each chord is held: choices
CHORD_BARS = {"ambient": (2, 4), "symphonic": (1, 2), "rock": (1, 2), "pop": (1, 2), "dance": (1, 2)}

# --- drums ---------------------------------------------------------------------------------------------------
KICK, SIDE_STICK, SNARE, CLAP, HAT, PEDAL_HAT, OPEN_HAT = 36, 37, 38, 39, 42, 44, 46
LOW_TOM, MID_TOM, HIGH_TOM, CRASH, RIDE, TAMB, BASS_DRUM, FLOOR_TOM = 45, 47, 50, 49, 51, 54, 35, 41


def _every(step: float, key: int, vel: int, start: float = 0.0, end: float = 4.0):
    out, t = [], start
    while t < end - 1e-9:
        out.append((round(t, 4), key, vel))
        t += step
    return tuple(out)


_BACKBEAT = ((1.0, SNARE, 100), (3.0, SNARE, 102))
GROOVES: dict[str, dict[str, tuple]] = {
    "rock": {
        "straight": ((0.0, KICK, 110), (2.0, KICK, 104), (2.5, KICK, 92)) + _BACKBEAT + _every(0.5, HAT, 72),
        "push": ((0.0, KICK, 110), (1.5, KICK, 96), (2.0, KICK, 104)) + _BACKBEAT + _every(0.5, HAT, 74),
        "ride": ((0.0, KICK, 110), (2.0, KICK, 104), (2.75, KICK, 90)) + _BACKBEAT + _every(0.5, RIDE, 76),
    },
    "heavy_metal": {
        "double_kick": _every(0.25, KICK, 104) + _BACKBEAT + _every(1.0, CRASH, 84),
        "thrash": _every(0.5, KICK, 108) + tuple((t + 0.5, SNARE, 100) for t in range(4)) + _every(0.5, HAT, 80),
        "half_time": ((0.0, KICK, 112), (0.75, KICK, 100), (1.5, KICK, 104), (2.0, SNARE, 112), (3.5, KICK, 100))
        + _every(1.0, CRASH, 86),
    },
    "pop": {
        "basic": ((0.0, KICK, 104), (2.0, KICK, 100), (2.5, KICK, 86)) + _BACKBEAT + _every(0.5, HAT, 66),
        "clap": ((0.0, KICK, 106), (1.5, KICK, 90), (2.0, KICK, 100)) + ((1.0, CLAP, 100), (3.0, CLAP, 100))
        + _every(0.25, HAT, 58),
        "tambourine": ((0.0, KICK, 104), (2.0, KICK, 100)) + _BACKBEAT + _every(0.5, TAMB, 64),
    },
    "dance": {  # four on the floor: a kick on every beat
        "house": _every(1.0, KICK, 118) + ((1.0, CLAP, 96), (3.0, CLAP, 96)) + _every(1.0, OPEN_HAT, 78, 0.5),
        "trance": _every(1.0, KICK, 120) + _every(1.0, OPEN_HAT, 84, 0.5) + _every(0.25, HAT, 52) + ((1.0, SNARE, 80), (3.0, SNARE, 80)),
        "techno": _every(1.0, KICK, 122) + _every(0.5, HAT, 64) + ((1.0, CLAP, 90), (3.0, CLAP, 90), (3.75, CLAP, 60)),
    },
    "swing": {  # ride: 1, 2, 2-and, 3, 4, 4-and (the ands are swung); hi-hat foot on 2 and 4
        "ride": ((0.0, RIDE, 84), (1.0, RIDE, 88), (1.5, RIDE, 64), (2.0, RIDE, 84), (3.0, RIDE, 88), (3.5, RIDE, 64),
                 (1.0, PEDAL_HAT, 70), (3.0, PEDAL_HAT, 70)) + _every(1.0, KICK, 36),
        "ride_comp": ((0.0, RIDE, 84), (1.0, RIDE, 88), (1.5, RIDE, 64), (2.0, RIDE, 84), (3.0, RIDE, 88), (3.5, RIDE, 64),
                      (1.0, PEDAL_HAT, 70), (3.0, PEDAL_HAT, 70), (2.5, SNARE, 52), (3.5, SNARE, 44)),
    },
    "boom_bap": {
        "classic": ((0.0, KICK, 112), (1.75, KICK, 96), (2.5, KICK, 104), (1.0, SNARE, 112), (3.0, SNARE, 112))
        + _every(0.5, HAT, 70),
        "bouncy": ((0.0, KICK, 112), (0.5, KICK, 90), (2.25, KICK, 100), (1.0, SNARE, 110), (3.0, SNARE, 112))
        + _every(0.25, HAT, 56),
        "sparse": ((0.0, KICK, 114), (2.5, KICK, 100), (2.75, KICK, 84), (1.0, SNARE, 112), (3.0, SNARE, 110))
        + _every(0.5, HAT, 64) + ((3.5, OPEN_HAT, 70),),
    },
    "twelve_bar": {  # shuffle: swung eighths on the hat or ride
        "shuffle": ((0.0, KICK, 100), (2.0, KICK, 96)) + _BACKBEAT + _every(0.5, HAT, 70),
        "ride_shuffle": ((0.0, KICK, 100), (2.0, KICK, 96)) + _BACKBEAT + _every(0.5, RIDE, 72),
    },
    "one_drop": {  # nothing on beat 1: kick and rim together on beat 3
        "one_drop": ((2.0, KICK, 108), (2.0, SIDE_STICK, 100)) + _every(0.5, HAT, 66),
        "one_drop_open": ((2.0, KICK, 108), (2.0, SIDE_STICK, 104), (3.5, OPEN_HAT, 72)) + _every(0.5, HAT, 60, 0.0, 3.5),
    },
    "symphonic": {
        "march": ((0.0, BASS_DRUM, 100), (2.0, BASS_DRUM, 92), (3.0, FLOOR_TOM, 80), (3.5, FLOOR_TOM, 84)),
        "epic": ((0.0, BASS_DRUM, 110), (0.0, CRASH, 80), (1.5, FLOOR_TOM, 90), (2.0, FLOOR_TOM, 96), (2.5, LOW_TOM, 86),
                 (3.0, BASS_DRUM, 104)),
        "timpani_roll": _every(0.25, FLOOR_TOM, 70, 2.0) + ((0.0, BASS_DRUM, 108),),
    },
}
#: a pedal-hat/hat pattern for 3/4 jazz waltzes
WALTZ = ((0.0, RIDE, 84), (1.0, RIDE, 80), (1.5, RIDE, 60), (2.0, RIDE, 80), (1.0, PEDAL_HAT, 66), (2.0, PEDAL_HAT, 66),
         (0.0, KICK, 40))
#: swing ratio ranges (share of the beat the first eighth takes; 0.5 is straight)
SWING = {"swing": (0.6, 0.7), "twelve_bar": (0.62, 0.7), "boom_bap": (0.53, 0.6), "one_drop": (0.5, 0.58)}


# --- players ----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Player:
    """One instrument of a genre's band: its role, the programs it may play and their tag family."""

    role: str  # bass, chords, riff, lead, pad, arp, bells, stabs, counter, ostinato
    family: str
    programs: tuple[int, ...]
    p: float = 1.0  # probability that the band has this player
    bus: str = "main"  # "drive": distorted before the mix; "pump": ducked on every beat (dance)
    register: tuple[int, int] = (55, 76)  # MIDI range of the part's median pitch


_DRIVE_GTR = (29, 30)
BANDS: dict[str, tuple[Player, ...]] = {
    "rock": (Player("riff", "guitar", _DRIVE_GTR + (27,), bus="drive", register=(40, 60)),
             Player("bass", "bass", (33, 34), register=(28, 45)),
             Player("chords", "organ", (16, 17, 18), p=0.35, register=(55, 72)),
             Player("chords", "piano", (0, 1), p=0.25, register=(55, 72)),
             Player("lead", "guitar", (29, 30, 27), p=0.5, bus="drive", register=(62, 80))),
    "heavy_metal": (Player("riff", "guitar", _DRIVE_GTR, bus="drive", register=(36, 55)),
                    Player("bass", "bass", (33, 34, 38), register=(24, 40)),
                    Player("lead", "guitar", _DRIVE_GTR, p=0.4, bus="drive", register=(64, 84)),
                    Player("pad", "synth_pad", (89, 91), p=0.2, register=(52, 70))),
    "pop": (Player("chords", "piano", (0, 1, 4, 5), register=(55, 72)),
            Player("bass", "bass", (33, 34, 38), register=(30, 46)),
            Player("lead", "synth_lead", (80, 81), p=0.5, register=(64, 80)),
            Player("lead", "reed", (65, 66), p=0.2, register=(60, 76)),
            Player("pad", "synth_pad", (88, 89, 90), p=0.5, register=(55, 72)),
            Player("chords", "guitar", (24, 25, 27), p=0.45, register=(52, 70))),
    "dance": (Player("pad", "synth_pad", (88, 89, 90, 94), bus="pump", register=(55, 72)),
              Player("bass", "bass", (38, 39), register=(30, 46)),
              Player("arp", "synth_lead", (80, 81), p=0.7, bus="pump", register=(62, 80)),
              Player("stabs", "piano", (0, 1), p=0.35, bus="pump", register=(57, 74)),
              Player("lead", "synth_lead", (81, 82), p=0.3, register=(66, 82))),
    "ambient": (Player("pad", "synth_pad", (88, 89, 91, 94)),
                Player("drone", "strings", (48, 49, 42), p=0.6, register=(36, 50)),
                Player("bells", "piano", (0, 4), p=0.6, register=(72, 90)),
                Player("lead", "flute", (73, 75, 78, 79), p=0.35, register=(64, 80))),
    "swing": (Player("bass", "bass", (32, 33), register=(33, 48)),
              Player("comp", "piano", (0, 1), register=(55, 70)),
              Player("comp", "guitar", (26,), p=0.35, register=(52, 68)),
              Player("lead", "reed", (64, 65, 66), p=0.6, register=(58, 76)),
              Player("lead", "brass", (56, 57), p=0.4, register=(60, 78))),
    "boom_bap": (Player("chords", "piano", (4, 5, 0), register=(52, 70)),
                 Player("bass", "bass", (33, 38, 32), register=(28, 42)),
                 Player("pad", "strings", (48, 49), p=0.4, register=(55, 72)),
                 Player("lead", "flute", (73,), p=0.2, register=(66, 82))),
    "twelve_bar": (Player("bass", "bass", (32, 33, 34), register=(33, 48)),
                   Player("comp", "piano", (0, 1), p=0.7, register=(55, 70)),
                   Player("chords", "organ", (16, 17), p=0.4, register=(55, 70)),
                   Player("lead", "guitar", (27, 29), p=0.6, bus="drive", register=(60, 78)),
                   Player("lead", "reed", (22, 65), p=0.4, register=(60, 78))),
    "one_drop": (Player("bass", "bass", (33, 34, 38), register=(28, 43)),
                 Player("skank", "guitar", (27, 28), register=(60, 72)),
                 Player("bubble", "organ", (16, 17), p=0.7, register=(55, 70)),
                 Player("lead", "brass", (56, 61), p=0.35, register=(60, 76)),
                 Player("lead", "piano", (0,), p=0.25, register=(64, 80))),
    "symphonic": (Player("pad", "strings", (48, 49), register=(52, 72)),
                  Player("bass", "strings", (43, 42, 48), register=(31, 45)),
                  Player("lead", "brass", (60, 61, 56), register=(55, 74)),
                  Player("counter", "reed", (68, 71, 70), p=0.5, register=(62, 80)),
                  Player("counter", "flute", (73, 72), p=0.35, register=(70, 86)),
                  Player("ostinato", "strings", (48, 45), p=0.5, register=(50, 64))),
}
