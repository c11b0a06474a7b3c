"""What the ``mirdemo`` collection is made of: style classes, instruments, tags, sizes.

Everything here is data; the renderer (``_render``) and the builder (``_build``) read it.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..models.decisions import EXCLUSIVE_GROUPS, tempo_bucket  # noqa: F401 (tempo_bucket: read by _render)

# --- instruments ------------------------------------------------------------------------------------
#: General MIDI programs (0-based) per family and register, all present in TimGM6mb.sf2.
PROGRAMS: dict[str, dict[str, tuple[int, ...]]] = {
    "piano": {"any": (0, 1, 2, 4, 6)},
    "organ": {"any": (16, 19, 20, 21)},
    "guitar": {"any": (24, 25, 26, 27)},
    "bass": {"low": (32, 33, 34, 35)},
    "strings": {"high": (40, 110, 48, 49), "mid": (41, 48, 49, 45), "low": (42, 43, 48), "all": (48, 49)},
    "brass": {"high": (56, 60, 61), "mid": (60, 61, 57), "low": (57, 58, 61), "all": (61, 60)},
    "reed": {"high": (64, 65, 68, 71, 22), "mid": (65, 66, 71), "low": (70, 66), "all": (71, 68, 65)},
    "flute": {"high": (72, 73, 74, 75, 78, 79)},
    "synth_lead": {"any": (80, 81, 82)},
    "synth_pad": {"any": (88, 89, 90, 91, 94)},
}
FAMILIES = tuple(PROGRAMS)

#: families allowed in each arrangement role
ROLE_FAMILIES: dict[str, tuple[str, ...]] = {
    "melody": ("piano", "organ", "guitar", "strings", "brass", "reed", "flute", "synth_lead"),
    "chords": ("piano", "organ", "guitar", "strings", "brass", "reed", "synth_pad"),
    "bass": ("bass", "piano", "organ", "strings", "brass", "reed", "synth_pad"),
    "top": ("piano", "organ", "guitar", "strings", "brass", "reed", "flute", "synth_lead"),
    "middle": ("piano", "organ", "guitar", "strings", "brass", "reed", "synth_pad"),
    "bottom": ("bass", "piano", "organ", "strings", "brass", "reed", "synth_pad"),
    "all": ("piano", "organ", "guitar", "strings", "brass", "reed", "synth_pad"),
}
ROLE_REGISTER = {"melody": "high", "top": "high", "chords": "mid", "middle": "mid", "bass": "low", "bottom": "low", "all": "all"}

#: families that sustain a held note (longer legato, pads and organ hold chords)
SUSTAINED = {"organ", "strings", "brass", "reed", "flute", "synth_lead", "synth_pad"}


def programs_for(family: str, role: str) -> tuple[int, ...]:
    table = PROGRAMS[family]
    reg = ROLE_REGISTER[role]
    return table.get(reg) or table.get("any") or table.get("all") or next(iter(table.values()))


# --- tags -----------------------------------------------------------------------------------------------
# the tempo buckets (BPM) and the groups of which a clip has exactly one tag are the ones tagging decides by
TAG_GROUPS: dict[str, tuple[str, ...]] = {"instrument": FAMILIES + ("drums",), **EXCLUSIVE_GROUPS}
TAG_VOCABULARY: tuple[str, ...] = tuple(t for group in TAG_GROUPS.values() for t in group)


# --- style classes --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class StyleClass:
    """One genre of the collection (``top/leaf``) and how its tracks are performed."""

    name: str  # the leaf: the flat genre name of dataset version 1 for the 11 score classes
    description: str
    tempo: tuple[float, float]  # beats per minute, beat as given by ``beat_of``
    typical: tuple[str, ...]  # instrument families favoured for this class (weight 4 vs 1)
    drums: float = 0.0  # probability of a drum part
    dance: bool = False  # dance tunes are felt in two beats per duple bar
    n_programs: tuple[float, float, float] = (0.3, 0.35, 0.35)  # P(1, 2, 3 programs)
    top: str = "folk"  # the top level: what a real collection calls the style
    procedural: bool = False  # arranged by ``_procedural`` (no score) instead of from a corpus work

    @property
    def genre(self) -> str:
        """The two-level label, ``top/leaf``."""
        return f"{self.top}/{self.name}"

    def beat_q(self, bar_q: float, meter_class: str, numerator: int) -> float:
        """Length of one beat in quarter notes for a bar of ``bar_q`` quarters."""
        if meter_class == "compound":
            return bar_q / (numerator // 3)
        if self.dance and meter_class == "duple":
            return bar_q / 2
        return bar_q / numerator


_FOLK = ("strings", "flute", "organ", "guitar", "piano")
_SCORED: tuple[StyleClass, ...] = (
    StyleClass("reel", "Irish/Scottish reels (Ryan, O'Neill, Aird)", (96, 122), _FOLK, drums=0.5, dance=True),
    StyleClass("jig", "double jigs in 6/8", (100, 128), _FOLK, drums=0.5, dance=True),
    StyleClass("slip_jig", "slip jigs in 9/8", (96, 126), _FOLK, drums=0.4, dance=True),
    StyleClass("hornpipe", "hornpipes and clogs", (66, 96), _FOLK + ("brass",), drums=0.5, dance=True),
    StyleClass("strathspey", "Scottish strathspeys", (56, 82), ("strings", "flute", "reed", "piano"), drums=0.4, dance=True),
    StyleClass("chorale", "Bach four-part chorales", (56, 96), ("organ", "strings", "brass", "reed", "synth_pad"),
               n_programs=(0.4, 0.3, 0.3), top="classical"),
    StyleClass("mass", "Palestrina mass movements", (48, 82), ("organ", "strings", "reed", "synth_pad", "brass"),
               n_programs=(0.4, 0.3, 0.3), top="classical"),
    StyleClass("madrigal", "Monteverdi five-voice madrigals", (52, 96), ("strings", "reed", "flute", "guitar", "synth_pad"),
               n_programs=(0.35, 0.35, 0.3), top="classical"),
    StyleClass("string_quartet", "Haydn, Mozart and Beethoven string quartet movements", (56, 150),
               ("strings", "piano", "reed"), n_programs=(0.35, 0.3, 0.35), top="classical"),
    StyleClass("german_folk", "German folk songs (Essen collection)", (64, 128), ("piano", "guitar", "organ", "brass", "strings"),
               drums=0.2),
    StyleClass("chinese_folk", "Han Chinese folk songs (Essen collection)", (52, 108), ("flute", "strings", "guitar", "synth_lead"),
               drums=0.1),
)
# procedural classes: ``_procedural`` holds their progressions, grooves and instrumentation; here the
# tempo range (BPM of the counted beat) and the families they use
_ARRANGED: tuple[StyleClass, ...] = (
    StyleClass("rock", "drive-guitar power chords, backbeat drums, root-eighths bass", (100, 150),
               ("guitar", "bass", "organ", "piano"), drums=1.0, top="rock", procedural=True),
    StyleClass("heavy_metal", "palm-muted distorted riffs in minor, double-kick drums", (130, 200),
               ("guitar", "bass"), drums=1.0, top="metal", procedural=True),
    StyleClass("pop", "I-V-vi-IV and relatives, piano or synth chords, sung-like lead", (90, 128),
               ("piano", "synth_lead", "synth_pad", "guitar", "bass"), drums=1.0, top="pop", procedural=True),
    StyleClass("dance", "four-on-the-floor house/trance with offbeat bass and pumping pads", (120, 132),
               ("synth_lead", "synth_pad", "bass", "piano"), drums=1.0, top="electronic", procedural=True),
    StyleClass("ambient", "slow pads and drones, sparse bells, long reverb", (56, 84),
               ("synth_pad", "strings", "piano", "flute"), drums=0.0, top="ambient", procedural=True),
    StyleClass("swing", "ii-V-I changes in 7th/9th chords, walking bass, ride cymbal, swung eighths", (110, 200),
               ("piano", "bass", "reed", "brass", "guitar"), drums=1.0, top="jazz", procedural=True),
    StyleClass("boom_bap", "hip-hop boom-bap loops at 85-95 BPM: kick, snare on 2 and 4, swung hats", (85, 95),
               ("piano", "bass", "strings", "synth_pad"), drums=1.0, top="hip_hop", procedural=True),
    StyleClass("twelve_bar", "12-bar blues in dominant sevenths, shuffle feel, boogie bass", (68, 128),
               ("guitar", "piano", "organ", "reed", "bass"), drums=1.0, top="blues", procedural=True),
    StyleClass("one_drop", "reggae one-drop: kick and rim on beat 3, offbeat skank, melodic bass", (66, 90),
               ("guitar", "organ", "bass", "brass", "piano"), drums=1.0, top="reggae", procedural=True),
    StyleClass("symphonic", "orchestral: string ensemble, horns and brass themes, woodwinds, timpani-like toms",
               (60, 120), ("strings", "brass", "reed", "flute"), drums=0.7, top="orchestral", procedural=True),
)
STYLES: tuple[StyleClass, ...] = _SCORED + _ARRANGED
STYLE_BY_NAME = {s.genre: s for s in STYLES}
GENRES = tuple(s.genre for s in STYLES)
SCORE_GENRES = tuple(s.genre for s in _SCORED)
PROCEDURAL_GENRES = tuple(s.genre for s in _ARRANGED)
TOP_GENRES = tuple(dict.fromkeys(s.top for s in STYLES))
#: leaf (the flat genre name of dataset version 1 and of models trained on it) -> ``top/leaf``
GENRE_OF_LEAF = {s.name: s.genre for s in STYLES}


# --- sizes ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SizeSpec:
    name: str
    clips_per_genre: int
    clip_seconds: float
    n_users: int
    light_only: bool = False  # pick works that parse quickly (tiny)
    formats: tuple[str, ...] = field(default=("flac",) * 11 + ("ogg",) * 6 + ("wav",) * 2 + ("mp3",))


SIZES: dict[str, SizeSpec] = {
    "tiny": SizeSpec("tiny", 4, 6.0, 30, light_only=True),
    "demo": SizeSpec("demo", 34, 30.0, 400),
    "full": SizeSpec("full", 460, 30.0, 4000),
}
SAMPLE_RATE = 22050
CHANNELS = 2
