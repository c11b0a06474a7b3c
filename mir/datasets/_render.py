"""Perform a parsed work: draw an arrangement, synthesise it with a GM soundfont, add a room.

``render_clip(score, style, rng, seconds=...)`` returns ``(y, draws)``: ``y`` is float32 audio of
shape ``(n, 2)`` at :data:`SAMPLE_RATE`, exactly ``seconds`` long, and ``draws`` records every
random choice (instrumentation, tempo, transposition, humanisation, excerpt, reverb, gain,
noise) so the clip can be described and reproduced. Every draw comes from ``rng``.

Synthesis uses a General MIDI soundfont drawn per clip (``_soundfonts``: TimGM6mb from the
``pretty_midi`` wheel, FluidR3 and MuseScore General when Debian has them), played by
``tinysoundfont`` (only its synthesiser core; nothing that needs pyaudio). The synthesiser is reset
before every clip, so output does not depend on the order clips are rendered in. ``_effects``
produces the mix with ``pedalboard``. Rendering is bounded by
construction (a fixed number of frames, a cap on note events) and by a wall-clock limit.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import DatasetError
from . import _effects, _procedural, _soundfonts
from ._spec import (
    CHANNELS, ROLE_FAMILIES, SAMPLE_RATE, SUSTAINED, StyleClass, programs_for, tempo_bucket,
)

MAX_EVENTS = 40_000  # note on/off events per clip
RENDER_TIME_LIMIT = 60.0  # seconds of wall clock per clip
DRUM_CHANNEL = 9
SILENCE_DBFS = -50.0  # a window quieter than this counts as silent
CLIP_PEAK = 0.999


def soundfont_path() -> Path:
    """The TimGM6mb file in the ``pretty_midi`` wheel (the font every machine has)."""
    return _soundfonts.path_of(_soundfonts.DEFAULT)


# --- draws ----------------------------------------------------------------------------------------------
def _choice(rng: np.random.Generator, items, weights=None):
    items = list(items)
    if weights is None:
        return items[int(rng.integers(len(items)))]
    w = np.asarray(weights, dtype=float)
    return items[int(rng.choice(len(items), p=w / w.sum()))]


def _draw_families(rng, style: StyleClass, roles: list[str]) -> list[str]:
    """One family per role, all different; the style's typical families weigh 4x."""
    chosen: list[str] = []
    for role in roles:
        options = [f for f in ROLE_FAMILIES[role] if f not in chosen]
        weights = [(4.0 if f in style.typical else 1.0) * (3.0 if (f == "bass" and role == "bass") else 1.0) for f in options]
        chosen.append(_choice(rng, options, weights))
    return chosen


def _roles(rng, style: StyleClass, n_parts: int) -> tuple[list[str], list[list[int]]]:
    """Arrangement roles and, for polyphonic scores, which score parts each role plays."""
    n_prog = 1 + int(rng.choice(3, p=np.asarray(style.n_programs) / sum(style.n_programs)))
    if n_parts == 1:
        roles = ["melody"] + (["bass", "chords"] if n_prog == 3 else [_choice(rng, ["bass", "chords"])] if n_prog == 2 else [])
        return roles, [[0]] + [[] for _ in roles[1:]]
    n_prog = min(n_prog, n_parts)
    if n_prog == 1:
        return ["all"], [list(range(n_parts))]
    if n_prog == 2:
        split = (n_parts + 1) // 2
        return ["top", "bottom"], [list(range(split)), list(range(split, n_parts))]
    return ["top", "middle", "bottom"], [[0], list(range(1, n_parts - 1)), [n_parts - 1]]


# --- harmony for monophonic tunes -----------------------------------------------------------------------
_MAJOR_CHORDS = ((0, "maj"), (5, "maj"), (7, "maj"), (9, "min"), (2, "min"))
_MINOR_CHORDS = ((0, "min"), (5, "min"), (7, "maj"), (3, "maj"), (10, "maj"), (8, "maj"))


def _triad(root: int, quality: str) -> tuple[int, int, int]:
    return (root % 12, (root + (4 if quality == "maj" else 3)) % 12, (root + 7) % 12)


def harmonise(onset, dur, pitch, *, tonic: int, mode: str, window_q: float, length_q: float) -> list[tuple[float, int, str]]:
    """A chord per window: ``[(start_q, root_pc, quality)]`` covering the melody's pitch classes."""
    cands = _MAJOR_CHORDS if mode == "major" else _MINOR_CHORDS
    out = []
    n_win = max(1, int(np.ceil(length_q / window_q - 1e-9)))
    onset = np.asarray(onset)
    end = onset + np.asarray(dur)
    pcs = np.asarray(pitch) % 12
    for w in range(n_win):
        a, b = w * window_q, (w + 1) * window_q
        overlap = np.clip(np.minimum(end, b) - np.maximum(onset, a), 0, None)
        best, best_score = cands[0], -1.0
        for rank, (deg, quality) in enumerate(cands):
            triad = _triad(tonic + deg, quality)
            score = float(sum(o for o, pc in zip(overlap, pcs) if pc in triad)) - 0.01 * rank
            if score > best_score:
                best, best_score = (deg, quality), score
        out.append((a, (tonic + best[0]) % 12, best[1]))
    return out


# --- arrangement to note events -------------------------------------------------------------------------
def _fit_register(pitches: np.ndarray, lo: int, hi: int) -> int:
    """Octave shift that moves the median pitch into [lo, hi]."""
    if len(pitches) == 0:
        return 0
    med = float(np.median(pitches))
    shift = 0
    while med + shift < lo:
        shift += 12
    while med + shift > hi:
        shift -= 12
    return shift


def _window(part: dict, start_q: float, span_q: float, period_q: float):
    """Notes of ``part`` sounding in [start_q, start_q + span_q), looping with ``period_q``."""
    on = np.asarray(part["onset"], dtype=float)
    du = np.asarray(part["dur"], dtype=float)
    pi = np.asarray(part["pitch"], dtype=int)
    outs_on, outs_du, outs_pi = [], [], []
    loop = 0
    while True:
        base = loop * period_q - start_q
        if base >= span_q:
            break
        sel = (on + base >= 0) & (on + base < span_q) & (on < period_q)
        outs_on.append(on[sel] + base)
        outs_du.append(du[sel])
        outs_pi.append(pi[sel])
        loop += 1
        if loop > 10_000:
            raise DatasetError("excerpt loop did not terminate")
    if not outs_on:
        return np.zeros(0), np.zeros(0), np.zeros(0, dtype=int)
    return np.concatenate(outs_on), np.concatenate(outs_du), np.concatenate(outs_pi)


def arrange(score: dict, style: StyleClass, rng: np.random.Generator, *, seconds: float) -> tuple[list, dict]:
    """Draw a performance of ``score``; return note events ``(t_on, t_off, channel, key, vel)`` and draws."""
    timing = _draw_timing(score, style, rng, seconds)
    parts = score["parts"]
    roles, role_parts = _roles(rng, style, len(parts))
    families = _draw_families(rng, style, roles)
    programs = [int(_choice(rng, programs_for(f, r))) for f, r in zip(families, roles)]
    drums = bool(rng.random() < style.drums)
    player = _Player.draw(rng, timing, seconds)
    channels, melody_notes = _play_parts(player, parts, zip(roles, families, programs, role_parts))
    if len(parts) == 1 and len(roles) > 1:
        _accompany(player, score, channels)
    if drums:
        t = timing
        drum_events, pattern = _drum_part(rng, score["meter_class"], t.bar_q, t.beat_q, t.span_q, t.sec_per_q, seconds,
                                          player.vel_sigma)
        player.events.extend(drum_events)
        channels.append({"role": "drums", "family": "drums", "program": 0, "pattern": pattern,
                         "volume": int(rng.integers(70, 110)), "pan": 64, "channels": [DRUM_CHANNEL]})
    if len(player.events) * 2 > MAX_EVENTS:
        raise DatasetError(f"{len(player.events)} notes in a {seconds:g} s excerpt is more than the renderer allows")
    if melody_notes == 0:
        raise DatasetError("the excerpt holds no melody notes")
    return player.events, _describe(timing, player, drums, channels)


@dataclass(frozen=True)
class _Timing:
    """How fast the excerpt is played and where it sits in the score (positions in quarter notes)."""

    bpm: float
    beat_q: float
    sec_per_q: float
    span_q: float  # excerpt length
    bar_q: float
    period_q: float  # the score rounded up to whole bars: the loop period
    start_q: float
    transpose: int  # semitones


def _draw_timing(score: dict, style: StyleClass, rng: np.random.Generator, seconds: float) -> _Timing:
    """Tempo, transposition and excerpt start."""
    num = int(score["meter"].split("/")[0])
    beat_q = style.beat_q(score["bar_q"], score["meter_class"], num)
    bpm = float(rng.uniform(*style.tempo))
    sec_per_q = 60.0 / (bpm * beat_q)
    span_q = seconds / sec_per_q
    transpose = int(rng.integers(-5, 7))
    length_q = float(score["length_q"])
    bar_q = float(score["bar_q"])
    period_q = max(bar_q, np.ceil(length_q / bar_q - 1e-6) * bar_q)
    # excerpt start: a measure from which the excerpt fits without looping when the piece allows
    measures = [m for m in score["measures"] if m <= max(0.0, length_q - span_q)] or [0.0]
    start_q = float(measures[int(rng.integers(len(measures)))]) if len(measures) > 1 else 0.0
    firsts = [p["onset"][int(np.searchsorted(p["onset"], start_q))] for p in score["parts"]
              if np.searchsorted(p["onset"], start_q) < len(p["onset"])]
    if firsts and min(firsts) > start_q:  # skip leading rests
        start_q = float(min(firsts))
    return _Timing(bpm=bpm, beat_q=beat_q, sec_per_q=sec_per_q, span_q=span_q, bar_q=bar_q, period_q=period_q,
                   start_q=start_q, transpose=transpose)


@dataclass
class _Player:
    """A humanised player: turns notes in quarter notes into note events, hands out MIDI channels."""

    rng: np.random.Generator
    timing: _Timing
    seconds: float
    vel_sigma: float
    accent: float
    timing_sigma: float
    legato: float
    events: list[tuple[float, float, int, int, int]] = field(default_factory=list)
    next_channel: int = 0

    @classmethod
    def draw(cls, rng: np.random.Generator, timing: _Timing, seconds: float) -> "_Player":
        return cls(rng, timing, seconds, vel_sigma=float(rng.uniform(2.0, 12.0)), accent=float(rng.uniform(0.0, 12.0)),
                   timing_sigma=float(rng.uniform(0.0, 0.012)), legato=float(rng.uniform(0.82, 0.98)))

    def add_notes(self, on_q, du_q, pi, ch: int, base_vel: float, sustained: bool) -> None:
        rng, t = self.rng, self.timing
        t_on = on_q * t.sec_per_q + rng.normal(0.0, self.timing_sigma, len(on_q))
        t_on = np.clip(t_on, 0.0, None)
        leg = 0.97 if sustained else self.legato
        t_off = t_on + np.maximum(du_q * t.sec_per_q * leg, 0.03)
        on_beat = np.isclose(np.mod(on_q + t.start_q, t.bar_q), 0.0, atol=1e-3)
        vel = base_vel + rng.normal(0.0, self.vel_sigma, len(on_q)) + self.accent * on_beat
        vel = np.clip(np.round(vel), 20, 127).astype(int)
        for a, b, k, v in zip(t_on, t_off, pi, vel):
            if 0 <= k <= 127 and a < self.seconds:
                self.events.append((float(a), float(min(b, self.seconds)), ch, int(k), int(v)))

    def take_channel(self) -> int:
        ch = self.next_channel
        self.next_channel += 1
        if self.next_channel == DRUM_CHANNEL:
            self.next_channel += 1
        if ch > 15:
            raise DatasetError("more than 15 melodic channels")
        return ch


def _play_parts(player: _Player, parts: list[dict], voices) -> tuple[list[dict], int | None]:
    """Play the score parts of each ``(role, family, program, part indices)`` voice; return the
    channel infos and the melody's note count (None without a melody role)."""
    rng, t = player.rng, player.timing
    channels: list[dict] = []
    melody_notes = None
    for role, fam, prog, pidx in voices:
        lead = role in ("melody", "top", "all")
        base_vel = float(rng.uniform(76, 106) if lead else rng.uniform(56, 86))
        volume = int(rng.integers(108, 128) if lead else rng.integers(76, 106))
        pan = int(rng.integers(24, 105))
        info = {"role": role, "family": fam, "program": prog, "volume": volume, "pan": pan, "channels": []}
        for pi_ in pidx:
            on_q, du_q, pch = _window(parts[pi_], t.start_q, t.span_q, t.period_q)
            pch = pch + t.transpose
            if role == "melody":
                pch = pch + _fit_register(pch, 62 if fam == "flute" else 58, 84 if fam == "flute" else 76)
                melody_notes = len(on_q)
            elif fam == "bass":
                pch = pch + _fit_register(pch, 34, 50)
            ch = player.take_channel()
            info["channels"].append(ch)
            player.add_notes(on_q, du_q, pch, ch, base_vel, fam in SUSTAINED)
        channels.append(info)
    return channels, melody_notes


def _accompany(player: _Player, score: dict, channels: list[dict]) -> None:
    """Generated bass and chord parts (``channels[1:]``) for a monophonic tune, harmonised per window."""
    t = player.timing
    window_q = t.bar_q / 2 if (score["meter_class"] == "duple" and t.bar_q >= 4) else t.bar_q
    m_on, m_du, m_pi = _window(score["parts"][0], t.start_q, t.span_q, t.period_q)
    chords = harmonise(m_on, m_du, m_pi + t.transpose, tonic=(score["tonic"] + t.transpose) % 12,
                       mode=score["mode"], window_q=window_q, length_q=t.span_q)
    for info in channels[1:]:
        ch = player.take_channel()
        info["channels"].append(ch)
        base_vel = float(player.rng.uniform(52, 80))
        part = _bass_line if info["role"] == "bass" else _chord_part
        on_l, du_l, pi_l = part(player.rng, info, chords, window_q, t.beat_q)
        player.add_notes(np.asarray(on_l, float), np.asarray(du_l, float), np.asarray(pi_l, int), ch, base_vel,
                         info["family"] in SUSTAINED)


def _bass_line(rng, info: dict, chords, window_q: float, beat_q: float) -> tuple[list, list, list]:
    """Chord roots (and fifths, when a window spans two beats or more); records the pattern in ``info``."""
    pattern = _choice(rng, ["root", "root_fifth"])
    info["pattern"] = pattern
    on_l, du_l, pi_l = [], [], []
    for a, root, _q in chords:
        r = 36 + (root - 36) % 12
        on_l.append(a)
        pi_l.append(r)
        if pattern == "root_fifth" and window_q >= 2 * beat_q - 1e-6:
            du_l.append(window_q / 2)
            on_l.append(a + window_q / 2)
            pi_l.append(r + 7 if r + 7 <= 50 else r - 5)
            du_l.append(window_q / 2)
        else:
            du_l.append(window_q)
    return on_l, du_l, pi_l


def _chord_part(rng, info: dict, chords, window_q: float, beat_q: float) -> tuple[list, list, list]:
    """Triads held over each window, or struck off the first beat (piano, guitar); records the pattern."""
    strum = info["family"] in ("piano", "guitar") and rng.random() < 0.7
    info["pattern"] = "offbeat" if strum else "sustain"
    on_l, du_l, pi_l = [], [], []
    for a, root, q in chords:
        notes = [55 + (pc - 55) % 12 for pc in _triad(root, q)]
        if strum:
            n_beats = max(1, int(round(window_q / beat_q)))
            for b in range(n_beats):
                if n_beats > 1 and b == 0:
                    continue
                for k in notes:
                    on_l.append(a + b * beat_q)
                    du_l.append(beat_q * 0.6)
                    pi_l.append(k)
        else:
            for k in notes:
                on_l.append(a)
                du_l.append(window_q)
                pi_l.append(k)
    return on_l, du_l, pi_l


def _describe(t: _Timing, player: _Player, drums: bool, channels: list[dict]) -> dict:
    """The draws of an arrangement, as :func:`render_clip` reports them."""
    return {
        "tempo_bpm": round(t.bpm, 3),
        "beat_q": t.beat_q,
        "tempo_bucket": tempo_bucket(t.bpm),
        "transpose": t.transpose,
        "start_q": t.start_q,
        "loops": int(np.ceil((t.start_q + t.span_q) / t.period_q)) - 1 if t.start_q + t.span_q > t.period_q else 0,
        "velocity_sigma": round(player.vel_sigma, 3),
        "accent": round(player.accent, 3),
        "timing_sigma_s": round(player.timing_sigma, 5),
        "legato": round(player.legato, 3),
        "drums": drums,
        "families": sorted({c["family"] for c in channels}),
        "programs": [c["program"] for c in channels if c["family"] != "drums"],
        "arrangement": channels,
        "n_notes": len(player.events),
    }


_KICK, _SNARE, _STICK, _HAT, _OPEN_HAT, _LOW_TOM, _TAMB = 36, 38, 37, 42, 46, 45, 54


def _drum_part(rng, meter_class, bar_q, beat_q, span_q, sec_per_q, seconds, vel_sigma):
    """A simple kit or bodhran-like pattern, humanised; returns events and the pattern name."""
    hits: list[tuple[float, int, float]] = []  # (offset within bar in q, key, base velocity)
    n_beats = max(1, int(round(bar_q / beat_q)))
    if meter_class == "compound":
        pattern = _choice(rng, ["kit", "bodhran"])
        sub = beat_q / 3
        for b in range(n_beats):
            for s in range(3):
                t = b * beat_q + s * sub
                if pattern == "kit":
                    hits.append((t, _HAT, 60))
                    if s == 0:
                        hits.append((t, _KICK if b % 2 == 0 else _SNARE, 95))
                else:
                    hits.append((t, _LOW_TOM, 90 if s == 0 else 55))
    else:
        pattern = _choice(rng, ["kit", "rim", "tambourine"])
        sub = beat_q / 2
        for b in range(n_beats):
            for s in range(2):
                t = b * beat_q + s * sub
                hits.append((t, _TAMB if pattern == "tambourine" else _HAT, 58 if s else 66))
                if s == 0:
                    if b % 2 == 0:
                        hits.append((t, _KICK, 96))
                    else:
                        hits.append((t, _STICK if pattern == "rim" else _SNARE, 88))
    events = []
    n_bars = int(np.ceil(span_q / bar_q)) + 1
    for bar in range(n_bars):
        for off, key, v in hits:
            t = (bar * bar_q + off) * sec_per_q + rng.normal(0.0, 0.004)
            if 0 <= t < seconds:
                vel = int(np.clip(round(v + rng.normal(0.0, vel_sigma)), 20, 127))
                events.append((max(0.0, float(t)), float(min(seconds, t + 0.1)), DRUM_CHANNEL, key, vel))
    return events, pattern


# --- synthesis --------------------------------------------------------------------------------------------
def synthesise(events: list, channels: list[dict], *, seconds: float, soundfont: str = _soundfonts.DEFAULT,
               time_limit: float = RENDER_TIME_LIMIT) -> np.ndarray:
    """Play the note events of ``channels`` (others are skipped) through a reset tinysoundfont synth with
    ``soundfont``; float32 ``(n, 2)``, ``n = seconds * sr``."""
    synth, sfid = _soundfonts.synth_for(soundfont)
    playing = {ch for info in channels for ch in info["channels"]}
    events = [e for e in events if e[2] in playing]
    for info in channels:
        for ch in info["channels"]:
            if info["family"] == "drums":
                synth.program_select(ch, sfid, 128, 0, is_drums=True)
            else:
                synth.program_select(ch, sfid, 0, info["program"])
            synth.control_change(ch, 7, info["volume"])
            synth.control_change(ch, 10, info["pan"])
    n = int(round(seconds * SAMPLE_RATE))
    # (frame, order, channel, key, velocity): note-offs (order 0) before note-ons at the same frame
    timeline = []
    for t_on, t_off, ch, key, vel in events:
        f_on = int(round(t_on * SAMPLE_RATE))
        f_off = max(f_on + 1, int(round(t_off * SAMPLE_RATE)))
        if f_on < n:
            timeline.append((f_on, 1, ch, key, vel))
            if f_off < n:
                timeline.append((f_off, 0, ch, key, 0))
    timeline.sort()
    out = np.zeros(n * CHANNELS, dtype=np.float32)
    view = memoryview(out).cast("B")
    pos = 0
    deadline = time.monotonic() + time_limit
    bytes_per_frame = 4 * CHANNELS
    i = 0
    while pos < n:
        nxt = timeline[i][0] if i < len(timeline) else n
        if nxt > pos:
            synth.generate_simple(nxt - pos, buffer=view[pos * bytes_per_frame: nxt * bytes_per_frame])
            pos = nxt
        while i < len(timeline) and timeline[i][0] <= pos:
            _, on, ch, key, vel = timeline[i]
            if on:
                synth.noteon(ch, key, vel)
            else:
                synth.noteoff(ch, key)
            i += 1
        if time.monotonic() > deadline:
            raise DatasetError(f"rendering took longer than {time_limit:g} s; stopped")
    return out.reshape(n, CHANNELS)


# --- room, loudness, noise ----------------------------------------------------------------------------------
def _rms_db(y: np.ndarray) -> float:
    return float(20 * np.log10(np.sqrt(np.mean(np.square(y, dtype=np.float64))) + 1e-12))


def post_process(y: np.ndarray, rng: np.random.Generator, *, fade_out: float) -> tuple[np.ndarray, dict]:
    """Reverb (or none), fades, loudness, a small noise floor and a peak guard."""
    from scipy.signal import fftconvolve

    y = y.astype(np.float64)
    n = len(y)
    draws: dict = {}
    if rng.random() < 0.7:
        rt60 = float(rng.uniform(0.3, 2.2))
        wet = float(rng.uniform(0.08, 0.4))
        predelay = float(rng.uniform(0.005, 0.03))
        m = int((predelay + rt60) * SAMPLE_RATE)
        t = np.arange(m) / SAMPLE_RATE
        env = np.where(t >= predelay, np.exp(-6.908 * (t - predelay) / rt60), 0.0)
        ir = rng.standard_normal((m, CHANNELS)) * env[:, None]
        ir /= np.sqrt(np.sum(ir**2, axis=0, keepdims=True)) + 1e-12
        rev = np.stack([fftconvolve(y[:, c], ir[:, c])[:n] for c in range(CHANNELS)], axis=1)
        scale = np.sqrt(np.mean(y**2) / (np.mean(rev**2) + 1e-20))
        y = y + wet * scale * rev
        draws["reverb"] = {"rt60_s": round(rt60, 3), "wet": round(wet, 3), "predelay_s": round(predelay, 4)}
    else:
        draws["reverb"] = None
    fi = int(0.01 * SAMPLE_RATE)
    fo = int(fade_out * SAMPLE_RATE)
    y[:fi] *= np.linspace(0.0, 1.0, fi)[:, None]
    y[n - fo:] *= np.linspace(1.0, 0.0, fo)[:, None]

    target = float(rng.uniform(-28.0, -14.0))
    gain_db = target - _rms_db(y)
    y *= 10 ** (gain_db / 20)
    noise_db = float(rng.uniform(-78.0, -60.0))
    y += rng.standard_normal(y.shape) * 10 ** (noise_db / 20)
    peak = float(np.max(np.abs(y)))
    limit_db = 0.0
    if peak > 0.95:
        limit_db = 20 * np.log10(0.95 / peak)
        y *= 0.95 / peak
    draws.update({
        "target_loudness_db": round(target, 2),
        "gain_db": round(gain_db + limit_db, 2),
        "peak_limit_db": round(limit_db, 2),
        "noise_db": round(noise_db, 2),
        "loudness_db": round(_rms_db(y), 2),
    })
    return y.astype(np.float32), draws


def check_audio(y: np.ndarray, *, seconds: float, max_gap: float) -> str | None:
    """Why ``y`` is unusable (wrong length, clipped, silent, a long silent stretch), or None."""
    n = int(round(seconds * SAMPLE_RATE))
    if y.shape != (n, CHANNELS):
        return f"wrong length: {y.shape} instead of ({n}, {CHANNELS})"
    if not np.all(np.isfinite(y)):
        return "non-finite samples"
    peak = float(np.max(np.abs(y)))
    if peak >= CLIP_PEAK:
        return f"clipped (peak {peak:.4f})"
    if _rms_db(y) < SILENCE_DBFS:
        return f"silent (rms {_rms_db(y):.1f} dBFS)"
    win = int(0.25 * SAMPLE_RATE)
    mono = y.mean(axis=1)
    frames = mono[: len(mono) // win * win].reshape(-1, win)
    db = 10 * np.log10(np.mean(frames.astype(np.float64) ** 2, axis=1) + 1e-20)
    quiet = db < SILENCE_DBFS
    run = longest = 0
    for q in quiet[: len(quiet) - int(np.ceil(1.0 / 0.25))]:  # the final fade-out may be quiet
        run = run + 1 if q else 0
        longest = max(longest, run)
    if longest * 0.25 > max_gap:
        return f"silent stretch of {longest * 0.25:.2f} s"
    return None


def render_clip(score: dict | None, style: StyleClass, rng: np.random.Generator, *, seconds: float,
                soundfonts: tuple[str, ...] = (_soundfonts.DEFAULT,)) -> tuple[np.ndarray, dict]:
    """Arrange one excerpt of ``score`` (or a procedural piece of ``style``), synthesise it with a
    soundfont drawn from ``soundfonts``, produce it (``_effects``) and post-process it (see module docstring)."""
    if style.procedural:
        events, draws = _procedural.arrange(style, rng, seconds=seconds)
    else:
        events, draws = arrange(score, style, rng, seconds=seconds)
    font = soundfonts[int(rng.integers(len(soundfonts)))]
    buses: dict[str, list[dict]] = {}
    for info in draws["arrangement"]:
        buses.setdefault(info.get("bus", "main"), []).append(info)
    if not set(buses) - {"main", "drums"}:  # no insert effects: one pass
        buses = {"main": draws["arrangement"]}
    stems = {bus: synthesise(events, infos, seconds=seconds, soundfont=font) for bus, infos in buses.items()}
    y, chain = _effects.produce(stems, style, rng, sec_per_beat=60.0 / draws["tempo_bpm"])
    y, post = post_process(y, rng, fade_out=min(1.0, seconds / 10))
    draws.update(post)
    draws.update({"soundfont": font, "effects": chain})
    return y, draws

