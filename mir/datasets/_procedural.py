"""Arrange a clip of a procedural genre (rock, metal, pop, dance, ambient, jazz, hip-hop, blues, reggae,
orchestral): no score, only the genre's idioms from ``_grooves``.

``arrange(style, rng, seconds=...)`` returns ``(events, draws)`` in the form ``_render.arrange`` gives
for a score: note events ``(t_on, t_off, channel, key, velocity)`` in seconds and the draws, which
add ``piece`` (metre, mode, tonic: what a score would have said), ``progression`` (Roman numerals,
one chord per bar), ``groove`` and ``swing``. Every random choice comes from ``rng``: key, mode,
tempo, progression, chord length, groove, band, programs, riff, melody, humanisation and the bar the
excerpt starts on.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import DatasetError
from . import _grooves as G
from ._spec import StyleClass, tempo_bucket

DRUM_CHANNEL = 9


# --- a timeline of one clip -------------------------------------------------------------------------------
@dataclass
class _Clip:
    rng: np.random.Generator
    seconds: float
    sec_per_q: float
    bar_q: float
    swing: float  # share of the beat the first eighth takes (0.5: straight)
    swing_unit: float  # 0.5: eighths swing; 0.25: sixteenths swing
    timing_sigma: float
    vel_sigma: float
    events: list = field(default_factory=list)

    def time(self, q: np.ndarray) -> np.ndarray:
        """Seconds of positions ``q`` (quarter notes), swung: the off-beat unit moves later."""
        q = np.asarray(q, dtype=float)
        pair = 2 * self.swing_unit
        pos = np.mod(q, pair)
        off = np.isclose(pos, self.swing_unit, atol=1e-6)
        return (q + off * (self.swing - 0.5) * pair) * self.sec_per_q

    def add(self, on_q, dur_q, keys, vels, ch: int, *, legato: float = 0.92) -> None:
        on_q, dur_q = np.asarray(on_q, float), np.asarray(dur_q, float)
        if not len(on_q):
            return
        t_on = np.clip(self.time(on_q) + self.rng.normal(0.0, self.timing_sigma, len(on_q)), 0.0, None)
        t_off = t_on + np.maximum(dur_q * self.sec_per_q * legato, 0.04)
        vel = np.clip(np.round(np.asarray(vels, float) + self.rng.normal(0.0, self.vel_sigma, len(on_q))), 15, 127)
        for a, b, k, v in zip(t_on, t_off, keys, vel.astype(int)):
            if 0 <= k <= 127 and a < self.seconds:
                self.events.append((float(a), float(min(b, self.seconds)), ch, int(k), int(v)))


def _pick(rng: np.random.Generator, items):
    items = list(items)
    return items[int(rng.integers(len(items)))]


def _voice(root_pc: int, quality: str, lo: int, *, drop: bool = False) -> list[int]:
    """The chord's notes stacked from the first root at or above ``lo`` (drop: widen the second voice)."""
    root = lo + (root_pc - lo) % 12
    notes = [root + i for i in G.QUALITIES[quality]]
    if drop and len(notes) >= 4:
        notes[1] += 12
    return notes


def _chord_tones(root_pc: int, quality: str) -> set[int]:
    return {(root_pc + i) % 12 for i in G.QUALITIES[quality]}


# --- parts ------------------------------------------------------------------------------------------------
def _bass(rng, genre: str, bars, bar_q: float, lo: int) -> tuple[list, list, list, str]:
    """Bass line per genre; returns onsets, lengths, keys (quarter notes / MIDI) and the figure's name."""
    on, du, ke = [], [], []
    figure = {"rock": "root_eighths", "heavy_metal": "riff", "pop": "syncopated", "dance": "offbeat",
              "ambient": "drone", "swing": "walking", "boom_bap": "kick_follow", "twelve_bar": "boogie",
              "one_drop": "drop", "symphonic": "roots"}[genre]
    if genre == "dance" and rng.random() < 0.35:
        figure = "rolling"
    if genre == "twelve_bar" and rng.random() < 0.4:
        figure = "walking"
    for b, (root_pc, quality, nxt_pc) in enumerate(bars):
        t0 = b * bar_q
        r = lo + (root_pc - lo) % 12
        third = r + G.QUALITIES[quality][1]
        fifth = r + 7
        if figure in ("root_eighths", "riff"):
            hits = [(t0 + i * 0.5, 0.45, r + (12 if figure == "root_eighths" and i == 7 and rng.random() < 0.3 else 0))
                    for i in range(int(bar_q * 2))]
        elif figure == "syncopated":
            hits = [(t0, 1.4, r), (t0 + 1.5, 0.5, r), (t0 + 2.0, 1.0, fifth if rng.random() < 0.5 else r), (t0 + 3.0, 0.9, r)]
        elif figure == "offbeat":
            hits = [(t0 + i + 0.5, 0.4, r) for i in range(int(bar_q))]
        elif figure == "rolling":
            hits = [(t0 + i * 0.25, 0.2, r + (12 if i % 4 == 3 else 0)) for i in range(int(bar_q * 4)) if i % 4]
        elif figure == "drone":
            hits = [(t0, bar_q, r)] if b % 2 == 0 else []
        elif figure == "walking":
            nxt = lo + (nxt_pc - lo) % 12
            steps = [r, third if rng.random() < 0.6 else r + 2, fifth, nxt + (1 if rng.random() < 0.5 else -1)]
            hits = [(t0 + i, 0.95, k) for i, k in enumerate(steps[: int(bar_q)])]
        elif figure == "kick_follow":
            hits = [(t0, 1.5, r), (t0 + 1.75, 0.7, r), (t0 + 2.5, 1.2, r + (7 if rng.random() < 0.3 else 0))]
        elif figure == "boogie":
            steps = [0, G.QUALITIES[quality][1], 7, 9, 10, 9, 7, G.QUALITIES[quality][1]]
            hits = [(t0 + i * 0.5, 0.45, r + s) for i, s in enumerate(steps[: int(bar_q * 2)])]
        elif figure == "drop":  # reggae: rests on the one, melodic roots and fifths after it
            hits = [(t0 + 0.5, 0.4, r), (t0 + 1.0, 0.9, r), (t0 + 2.0, 0.5, fifth), (t0 + 2.5, 0.4, r + 12 if rng.random() < 0.3 else third),
                    (t0 + 3.0, 0.9, r)]
        else:  # roots: half notes
            hits = [(t0, bar_q / 2, r), (t0 + bar_q / 2, bar_q / 2, r if rng.random() < 0.6 else fifth)]
        for a, d, k in hits:
            if a < t0 + bar_q - 1e-9:
                on.append(a), du.append(d), ke.append(k)
    return on, du, ke, figure


def _riff(rng, genre: str, bars, bar_q: float, lo: int) -> tuple[list, list, list, str]:
    """Guitar riff: power chords (root, fifth, octave) in eighths, or palm-muted sixteenths and gallops on
    the low root with accented power-chord stabs (metal)."""
    on, du, ke = [], [], []
    metal = genre == "heavy_metal"
    figure = (_pick(rng, ["chug16", "gallop", "chug8"]) if metal else _pick(rng, ["power8", "power_sustain", "power_push"]))
    accents = rng.random(16) < 0.3  # a seeded accent pattern, the same in every bar
    for b, (root_pc, _q, _n) in enumerate(bars):
        t0 = b * bar_q
        r = lo + (root_pc - lo) % 12
        power = [r, r + 7, r + 12]
        if figure == "chug16":
            for i in range(int(bar_q * 4)):
                keys = power if (i % 4 == 0 and accents[i % 16]) or i == 0 else [r]
                for k in keys:
                    on.append(t0 + i * 0.25), du.append(0.5 if len(keys) > 1 else 0.15), ke.append(k)
        elif figure == "gallop":  # eighth + two sixteenths
            for beat in range(int(bar_q)):
                for off, d in ((0.0, 0.4), (0.5, 0.2), (0.75, 0.2)):
                    keys = power if off == 0.0 and accents[beat] else [r]
                    for k in keys:
                        on.append(t0 + beat + off), du.append(d), ke.append(k)
        elif figure in ("chug8", "power8"):
            for i in range(int(bar_q * 2)):
                keys = power if (figure == "power8" or accents[i]) else [r]
                for k in keys:
                    on.append(t0 + i * 0.5), du.append(0.42), ke.append(k)
        elif figure == "power_push":
            for a, d in ((0.0, 1.4), (1.5, 1.0), (2.5, 0.4), (3.0, 0.9)):
                if a < bar_q:
                    for k in power:
                        on.append(t0 + a), du.append(d), ke.append(k)
        else:
            for k in power:
                on.append(t0), du.append(bar_q), ke.append(k)
    return on, du, ke, figure


def _comp(rng, genre: str, role: str, bars, bar_q: float, lo: int) -> tuple[list, list, list, str]:
    """Chord parts: sustained pads, block chords, off-beat skanks and stabs, jazz comping, arpeggios, ostinati."""
    on, du, ke = [], [], []
    jazz = genre in ("swing", "twelve_bar")
    figure = {"pad": "sustain", "drone": "drone", "chords": "block", "comp": "charleston" if jazz else "block",
              "skank": "skank", "bubble": "bubble", "stabs": "stabs", "arp": "arp16", "ostinato": "ostinato8"}[role]
    if role == "chords" and genre in ("pop", "rock", "boom_bap") and rng.random() < 0.4:
        figure = _pick(rng, ["eighths", "arp8", "sustain"])
    if genre == "twelve_bar" and role == "comp" and rng.random() < 0.5:
        figure = "shuffle_comp"
    for b, (root_pc, quality, _n) in enumerate(bars):
        t0 = b * bar_q
        notes = _voice(root_pc, quality, lo, drop=jazz)
        if figure == "drone":
            hits = [(t0, bar_q, [notes[0] - 12 if notes[0] - 12 >= 24 else notes[0], notes[0] + 7])] if b % 2 == 0 else []
        elif figure == "sustain":
            hits = [(t0, bar_q, notes)]
        elif figure == "block":
            hits = [(t0 + i, 0.9, notes) for i in range(int(bar_q))]
        elif figure == "eighths":
            hits = [(t0 + i * 0.5, 0.45, notes) for i in range(int(bar_q * 2))]
        elif figure == "charleston":  # shell voicings: 3rd and 7th (plus 9th/13th) on 1 and the and of 2
            shell = notes[1:] if len(notes) >= 4 else notes
            hits = [(t0, 1.2, shell), (t0 + 1.5, 0.4, shell)] + ([(t0 + 3.5, 0.4, shell)] if rng.random() < 0.4 else [])
        elif figure == "shuffle_comp":
            hits = [(t0 + i + 0.5, 0.3, notes) for i in range(int(bar_q))]
        elif figure in ("skank", "stabs"):
            hits = [(t0 + i + 0.5, 0.25, notes) for i in range(int(bar_q))]
        elif figure == "bubble":
            hits = [(t0 + i + 0.25 * j, 0.2, [notes[0] if j % 2 else notes[-1]]) for i in range(int(bar_q)) for j in (1, 3)]
        elif figure in ("arp16", "arp8", "ostinato8"):
            step = 0.25 if figure == "arp16" else 0.5
            seq = notes + [notes[0] + 12] if figure != "ostinato8" else [notes[0], notes[0] + 12]
            hits = [(t0 + i * step, step * 0.9, [seq[i % len(seq)]]) for i in range(int(bar_q / step))]
        else:  # pragma: no cover - every figure is handled above
            raise DatasetError(f"unknown chord figure {figure!r}")
        for a, d, keys in hits:
            if a < t0 + bar_q - 1e-9:
                for k in keys:
                    on.append(a), du.append(d), ke.append(k)
    return on, du, ke, figure


_CELLS = {  # one bar of (position, length) in quarter notes
    "straight": (((0, 1), (1, 1), (2, 1.5), (3.5, 0.5)), ((0, 0.5), (0.5, 0.5), (1, 1), (2, 2)),
                 ((0, 1.5), (1.5, 0.5), (2, 0.5), (2.5, 1.5))),
    "busy": (((0, 0.5), (0.5, 0.5), (1, 0.5), (1.5, 0.5), (2, 1), (3, 0.5), (3.5, 0.5)),
             ((0, 0.75), (0.75, 0.25), (1, 0.5), (1.5, 0.5), (2, 0.5), (2.5, 1.5))),
    "long": (((0, 2), (2, 2)), ((0, 3), (3, 1)), ((0, 4),)),
    "sparse": (((0, 3), (3.5, 0.5)), ((1, 2), (3, 1)), ((0.5, 3.5),)),
}
_CELL_KIND = {"pop": "straight", "rock": "straight", "heavy_metal": "busy", "dance": "straight", "ambient": "sparse",
              "swing": "busy", "boom_bap": "sparse", "twelve_bar": "straight", "one_drop": "straight",
              "symphonic": "long"}


def _melody(rng, genre: str, bars, bar_q: float, tonic: int, scale: tuple[int, ...], register: tuple[int, int],
            kind: str | None = None) -> tuple[list, list, list, str]:
    """A two-bar motif, repeated AABA over the bars, its strong beats pulled onto chord tones."""
    kind = kind or _CELL_KIND[genre]
    cells = _CELLS[kind]
    lo, hi = register
    pool = [k for k in range(lo - 7, hi + 8) if (k - tonic) % 12 in scale]
    motifs = []
    for _ in range(2):
        rhythm = [cells[int(rng.integers(len(cells)))] for _ in range(2)]
        pos = int(rng.integers(len(pool) // 3, 2 * len(pool) // 3 + 1))
        notes = []
        for bar_i, cell in enumerate(rhythm):
            for a, d in cell:
                if a >= bar_q:
                    continue
                pos = int(np.clip(pos + rng.choice([-2, -1, -1, 0, 1, 1, 2]), 0, len(pool) - 1))
                notes.append((bar_i * bar_q + a, min(d, bar_q - a), pos))
        motifs.append(notes)
    on, du, ke = [], [], []
    form = "AABA"
    for b in range(0, len(bars), 2):
        motif = motifs[0 if form[(b // 2) % 4] == "A" else 1]
        for a, d, pos in motif:
            bar_i = b + int(a // bar_q)
            if bar_i >= len(bars):
                continue
            key = pool[pos]
            root_pc, quality, _ = bars[bar_i]
            if abs(a % bar_q - round(a % bar_q)) < 1e-6 and int(round(a % bar_q)) % 2 == 0:  # strong beat
                tones = _chord_tones(root_pc, quality)
                key = min((k for k in pool if k % 12 in tones), key=lambda k: (abs(k - key), k), default=key)
            on.append(b * bar_q + a), du.append(d), ke.append(key)
    return on, du, ke, f"motif_{kind}"


def _drums(rng, genre: str, n_bars: int, bar_q: float, waltz: bool) -> tuple[list, list, list, list, str]:
    """One groove repeated, a crash on each four-bar phrase, a fill before it; returns on, dur, key, vel, name."""
    name = "waltz" if waltz else _pick(rng, sorted(G.GROOVES[genre]))
    groove = G.WALTZ if waltz else G.GROOVES[genre][name]
    on, du, ke, ve = [], [], [], []
    for b in range(n_bars):
        t0 = b * bar_q
        hits = [h for h in groove if h[0] < bar_q]
        if b % 4 == 3 and genre not in ("swing", "dance") and rng.random() < 0.5:  # a fill on the last beat
            hits = [h for h in hits if h[0] < bar_q - 1] + [(bar_q - 1 + 0.25 * i, k, 90 + 4 * i)
                                                            for i, k in enumerate((G.HIGH_TOM, G.MID_TOM, G.LOW_TOM, G.FLOOR_TOM))]
        if b % 4 == 0 and genre not in ("swing", "one_drop"):
            hits = hits + [(0.0, G.CRASH, 96)]
        for a, k, v in hits:
            on.append(t0 + a), du.append(0.25), ke.append(k), ve.append(v)
    return on, du, ke, ve, name


# --- the arrangement --------------------------------------------------------------------------------------
def _progression(rng, genre: str, mode: str, n_bars: int):
    """``[(root pitch class offset, quality, next root offset)]`` per bar (from a random start bar)."""
    table = G.PROGRESSIONS[genre][mode]
    prog = table[int(rng.integers(len(table)))]
    hold = int(_pick(rng, G.CHORD_BARS.get(genre, (1,))))
    per_bar = [c for c in prog for _ in range(hold)]
    start = int(rng.integers(len(per_bar))) if genre != "twelve_bar" else 0  # a blues starts on bar 1 of its form
    seq = [per_bar[(start + i) % len(per_bar)] for i in range(n_bars + 1)]
    return [(s, q, seq[i + 1][0]) for i, (s, q) in enumerate(seq[:n_bars])], per_bar, start


def arrange(style: StyleClass, rng: np.random.Generator, *, seconds: float) -> tuple[list, dict]:
    """Note events and draws of one clip of procedural genre ``style`` (see the module docstring)."""
    if not style.procedural:
        raise DatasetError(f"{style.genre} is arranged from scores, not procedurally")
    genre = style.name
    mode = "major" if rng.random() < G.MAJOR_P[genre] else "minor"
    tonic = int(rng.integers(12))
    bpm = float(rng.uniform(*style.tempo))
    waltz = genre == "swing" and rng.random() < 0.2
    compound = genre == "twelve_bar" and bpm < 90 and rng.random() < 0.5  # a slow 12/8 blues
    if waltz:
        meter, meter_class, bar_q, beat_q = "3/4", "triple", 3.0, 1.0
    elif compound:
        meter, meter_class, bar_q, beat_q = "12/8", "compound", 4.0, 1.0  # four dotted-quarter beats as swung quarters
    else:
        meter, meter_class, bar_q, beat_q = "4/4", "duple", 4.0, 1.0
    swing = float(rng.uniform(*G.SWING[genre])) if genre in G.SWING else 0.5
    if compound:
        swing = 2 / 3  # twelve eighths to the bar: the triplet feel exactly
    clip = _Clip(rng, seconds, 60.0 / (bpm * beat_q), bar_q, swing, 0.25 if genre == "boom_bap" else 0.5,
                 timing_sigma=float(rng.uniform(0.002, 0.012)), vel_sigma=float(rng.uniform(3.0, 9.0)))
    n_bars = int(np.ceil(seconds / (bar_q * clip.sec_per_q))) + 1
    bars_rel, per_bar, start = _progression(rng, genre, mode, n_bars)
    bars = [((tonic + s) % 12, q, (tonic + n) % 12) for s, q, n in bars_rel]

    band = [p for p in G.BANDS[genre] if p.p >= 1.0 or rng.random() < p.p]
    leads = [p for p in band if p.role == "lead"]
    if len(leads) > 1:  # one lead instrument
        keep = leads[int(rng.integers(len(leads)))]
        band = [p for p in band if p.role != "lead" or p is keep]
    scale = G.SCALES["blues" if genre == "twelve_bar" else
                     "minor_pentatonic" if genre in ("rock", "boom_bap") and mode == "minor" else
                     "phrygian" if genre == "heavy_metal" and rng.random() < 0.5 else mode]
    channels, next_ch = [], 0
    for player in band:
        ch = next_ch
        next_ch += 1 + (next_ch + 1 == DRUM_CHANNEL)
        program = int(_pick(rng, player.programs))
        lo = player.register[0]
        if player.role == "bass":
            on, du, ke, fig = _bass(rng, genre, bars, bar_q, lo)
        elif player.role == "riff":
            on, du, ke, fig = _riff(rng, genre, bars, bar_q, lo)
        elif player.role in ("lead", "counter", "bells"):
            kind = "sparse" if player.role == "bells" else "long" if player.role == "counter" else None
            on, du, ke, fig = _melody(rng, genre, bars, bar_q, tonic, scale, player.register, kind)
        else:
            on, du, ke, fig = _comp(rng, genre, player.role, bars, bar_q, lo)
        lead = player.role in ("lead", "riff")
        base = float(rng.uniform(84, 110) if lead else rng.uniform(62, 92))
        clip.add(on, du, ke, [base] * len(on), ch, legato=0.98 if player.role in ("pad", "drone") else 0.9)
        channels.append({"role": player.role, "family": player.family, "program": program, "pattern": fig,
                         "volume": int(rng.integers(100, 124) if lead else rng.integers(76, 108)),
                         "pan": int(rng.integers(24, 105)), "channels": [ch], "bus": player.bus})
    drums = rng.random() < style.drums
    groove = ""
    if drums:
        on, du, ke, ve, groove = _drums(rng, genre, n_bars, bar_q, waltz)
        clip.add(on, du, ke, ve, DRUM_CHANNEL, legato=1.0)
        channels.append({"role": "drums", "family": "drums", "program": 0, "pattern": groove,
                         "volume": int(rng.integers(88, 118)), "pan": 64, "channels": [DRUM_CHANNEL], "bus": "drums"})
    clip.events.sort()
    draws = {
        "tempo_bpm": round(bpm, 3), "beat_q": beat_q, "tempo_bucket": tempo_bucket(bpm), "transpose": 0,
        "start_q": float(start * bar_q), "loops": 0, "velocity_sigma": round(clip.vel_sigma, 3), "accent": 0.0,
        "timing_sigma_s": round(clip.timing_sigma, 5), "legato": 0.9, "drums": drums,
        "families": sorted({c["family"] for c in channels}),
        "programs": [c["program"] for c in channels if c["family"] != "drums"],
        "arrangement": channels, "n_notes": len(clip.events),
        "piece": {"meter": meter, "meter_class": meter_class, "mode": mode, "tonic": tonic, "bar_q": bar_q},
        "progression": " ".join(G.roman(s, q) for s, q in per_bar),
        "groove": groove, "swing": round(swing, 4),
    }
    return clip.events, draws
