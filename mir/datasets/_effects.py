"""Production with ``pedalboard``: insert effects per bus before the mix, then a mix-bus chain.

Buses: ``drive`` (rock and metal guitars, a blues lead: overdrive or distortion through a cabinet-like
low-pass, so the drums and bass stay clean), ``pump`` (dance pads and arpeggios, ducked on every beat
like a side-chained compressor), ``drums`` and ``main``. The mix bus gets EQ, compression and, by
genre, chorus, delay or a large reverb. Every parameter is drawn from the clip's ``rng``; the chain is
returned as a list of plain dicts, one per effect, for the clip table.
"""
from __future__ import annotations

import numpy as np

from ._spec import SAMPLE_RATE, StyleClass

#: per top-level genre: P(chorus), P(delay), P(large reverb), compressor ratio range
_MIX = {
    "ambient": (0.6, 0.5, 1.0, (1.5, 2.5)), "electronic": (0.4, 0.4, 0.2, (3.0, 6.0)), "pop": (0.4, 0.3, 0.1, (2.5, 5.0)),
    "rock": (0.15, 0.15, 0.0, (3.0, 6.0)), "metal": (0.1, 0.05, 0.0, (4.0, 8.0)), "hip_hop": (0.1, 0.1, 0.0, (3.0, 6.0)),
    "jazz": (0.05, 0.0, 0.1, (1.5, 3.0)), "blues": (0.15, 0.1, 0.0, (2.0, 4.0)), "reggae": (0.2, 0.5, 0.1, (2.0, 4.0)),
    "orchestral": (0.0, 0.0, 0.5, (1.2, 2.0)),
}
_SCORE_MIX = (0.2, 0.05, 0.15, (1.5, 4.0))  # folk and classical


def _r(x: float, n: int = 3) -> float:
    return round(float(x), n)


def drive_chain(rng: np.random.Generator, *, heavy: bool):
    """An overdrive (mid boost into a milder drive) or distortion insert: high-pass, drive, cabinet-like
    low-pass; ``(board, record)``."""
    import pedalboard as pb

    drive = float(rng.uniform(32.0, 46.0) if heavy else rng.uniform(20.0, 32.0))
    cab = float(rng.uniform(5000.0, 8000.0))
    hp = float(rng.uniform(70.0, 140.0))
    plugins = [pb.HighpassFilter(hp)]
    record = [{"bus": "drive", "effect": "HighpassFilter", "cutoff_hz": _r(hp, 1)}]
    if not heavy:
        plugins.append(pb.PeakFilter(720.0, 6.0, 0.7))
        record.append({"bus": "drive", "effect": "PeakFilter", "cutoff_hz": 720.0, "gain_db": 6.0})
    plugins += [pb.Distortion(drive_db=drive), pb.LowpassFilter(cab)]
    record += [{"bus": "drive", "effect": "Distortion" if heavy else "Overdrive", "drive_db": _r(drive, 2)},
               {"bus": "drive", "effect": "LowpassFilter", "cutoff_hz": _r(cab, 1)}]
    return pb.Pedalboard(plugins), record


def drive(y: np.ndarray, rng: np.random.Generator, *, heavy: bool) -> tuple[np.ndarray, list[dict]]:
    """``y`` ``(n, channels)`` brought to -20 dBFS RMS (fonts differ in level; the drive should not) and
    through :func:`drive_chain`; returns the driven audio and the chain's record."""
    board, record = drive_chain(rng, heavy=heavy)
    y = _to_rms(y.astype(np.float32), -20.0)
    return np.ascontiguousarray(board(y.T.copy(), SAMPLE_RATE).T), record


def pump(y: np.ndarray, *, sec_per_beat: float, depth: float, release_s: float) -> np.ndarray:
    """Duck ``y`` ``(n, channels)`` at every beat and let it come back with time constant ``release_s``."""
    t = np.arange(len(y)) / SAMPLE_RATE
    since = np.mod(t, sec_per_beat)
    gain = 1.0 - depth * np.exp(-since / release_s)
    return y * gain[:, None].astype(y.dtype)


def produce(stems: dict[str, np.ndarray], style: StyleClass, rng: np.random.Generator, *,
            sec_per_beat: float) -> tuple[np.ndarray, list[dict]]:
    """Insert effects per bus, sum the buses, then the mix-bus chain; returns ``(y, chain)``."""
    import pedalboard as pb

    chain: list[dict] = []
    out = None
    for bus in sorted(stems):
        y = stems[bus].astype(np.float32)
        if bus == "drive":
            y, record = drive(y, rng, heavy=style.top == "metal" or rng.random() < 0.35)
            chain += record
        elif bus == "pump":
            depth, release = float(rng.uniform(0.4, 0.8)), float(rng.uniform(0.06, 0.16))
            y = pump(y, sec_per_beat=sec_per_beat, depth=depth, release_s=release)
            chain.append({"bus": "pump", "effect": "SidechainPump", "depth": _r(depth), "release_s": _r(release)})
        out = y if out is None else out + y
    out = _to_rms(out, -20.0)  # so that the compressor threshold means the same in every font
    p_chorus, p_delay, p_big, ratio_range = _MIX.get(style.top, _SCORE_MIX) if style.procedural else _SCORE_MIX
    plugins = []
    low, high = float(rng.uniform(-4.0, 4.0)), float(rng.uniform(-5.0, 3.0))
    mid_f, mid_g = float(np.exp(rng.uniform(np.log(300.0), np.log(3000.0)))), float(rng.uniform(-4.0, 4.0))
    plugins += [pb.LowShelfFilter(cutoff_frequency_hz=150.0, gain_db=low), pb.PeakFilter(mid_f, mid_g, 0.8),
                pb.HighShelfFilter(cutoff_frequency_hz=6000.0, gain_db=high)]
    chain.append({"bus": "mix", "effect": "EQ", "low_shelf_db": _r(low, 2), "peak_hz": _r(mid_f, 1), "peak_db": _r(mid_g, 2),
                  "high_shelf_db": _r(high, 2)})
    if rng.random() < p_chorus:
        rate, depth, mix = float(rng.uniform(0.3, 1.5)), float(rng.uniform(0.1, 0.35)), float(rng.uniform(0.2, 0.5))
        plugins.append(pb.Chorus(rate_hz=rate, depth=depth, mix=mix))
        chain.append({"bus": "mix", "effect": "Chorus", "rate_hz": _r(rate), "depth": _r(depth), "mix": _r(mix)})
    if rng.random() < p_delay:
        delay, fb, mix = sec_per_beat * float(_pick(rng, (0.5, 0.75, 1.0))), float(rng.uniform(0.2, 0.45)), float(rng.uniform(0.1, 0.3))
        plugins.append(pb.Delay(delay_seconds=delay, feedback=fb, mix=mix))
        chain.append({"bus": "mix", "effect": "Delay", "delay_s": _r(delay, 4), "feedback": _r(fb), "mix": _r(mix)})
    if rng.random() < 0.85:
        thr, ratio = float(rng.uniform(-26.0, -12.0)), float(rng.uniform(*ratio_range))
        attack, release = float(rng.uniform(2.0, 30.0)), float(rng.uniform(60.0, 300.0))
        plugins.append(pb.Compressor(threshold_db=thr, ratio=ratio, attack_ms=attack, release_ms=release))
        chain.append({"bus": "mix", "effect": "Compressor", "threshold_db": _r(thr, 2), "ratio": _r(ratio, 2),
                      "attack_ms": _r(attack, 2), "release_ms": _r(release, 1)})
    if rng.random() < p_big:
        room, wet = float(rng.uniform(0.7, 0.97)), float(rng.uniform(0.25, 0.5))
        plugins.append(pb.Reverb(room_size=room, wet_level=wet, dry_level=1.0 - wet / 2, damping=float(rng.uniform(0.2, 0.6))))
        chain.append({"bus": "mix", "effect": "Reverb", "room_size": _r(room), "wet": _r(wet)})
    y = pb.Pedalboard(plugins)(out.T.copy(), SAMPLE_RATE).T
    return np.ascontiguousarray(y, dtype=np.float32), chain


def _to_rms(y: np.ndarray, db: float) -> np.ndarray:
    rms = float(np.sqrt(np.mean(np.square(y, dtype=np.float64))))
    return y if rms < 1e-7 else (y * np.float32(10 ** (db / 20) / rms)).astype(np.float32)


def _pick(rng: np.random.Generator, items):
    items = list(items)
    return items[int(rng.integers(len(items)))]
