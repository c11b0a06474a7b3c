"""What a generated piece is made of and how it measures: the cheap checks and a seam picture.

Both take the rendered samples ``y`` [shape=(samples,)] at ``sr`` and the piece's provenance dict
(decoding stays in :mod:`mir.audio`; the caller loads the file).
"""
from __future__ import annotations

from collections import Counter

import numpy as np


def piece_measures(y: np.ndarray, sr: int, prov: dict) -> dict:
    """The issue's cheap measures of one piece: novelty and spread (from the provenance), mir's
    tempo and key estimates of the output against the targets, peak level and loudness."""
    from ..features import key, loudness, tempo

    tonic, mode, _ = key(y, sr=sr)
    est_tempo = float(tempo(y, sr=sr))
    counts = Counter(b["track_id"] for b in prov["beats"])
    top, top_n = counts.most_common(1)[0]
    peak = float(np.abs(y).max())
    return {
        "longest_run": int(prov["checks"]["longest_run"]),
        "largest_share": top_n / len(prov["beats"]), "largest_share_track": top, "sources": len(counts),
        "tempo_target": float(prov["tempo"]), "tempo_estimate": est_tempo,
        "tempo_error": est_tempo / float(prov["tempo"]) - 1,
        "key_target": prov["key"], "key_estimate": f"{tonic} {mode}",
        "peak_dbfs": 20 * np.log10(max(peak, 1e-12)),
        "loudness": float(loudness(y, sr=sr)), "loudness_target": float(prov["target_loudness"]),
    }


def measure_lines(m: dict) -> list[str]:
    """``piece_measures`` as a few printable lines."""
    return [
        f"  longest run of source beats in source order: {m['longest_run']} (limit 4)",
        f"  largest share of one source track: {m['largest_share']:.0%} ({m['largest_share_track'][:12]}; "
        f"limit 25 %), {m['sources']} source tracks",
        f"  tempo: target {m['tempo_target']:.1f} BPM, estimated {m['tempo_estimate']:.1f} ({m['tempo_error']:+.1%})",
        f"  key: target {m['key_target']}, estimated {m['key_estimate']}"
        + (" (equal)" if m["key_target"] == m["key_estimate"] else " (differs)"),
        f"  peak {m['peak_dbfs']:.1f} dBFS; loudness {m['loudness']:.1f} LUFS (target {m['loudness_target']:.1f})",
    ]


def piece_figure(y: np.ndarray, sr: int, prov: dict, *, title: str | None = None):
    """A matplotlib Figure: the piece's log-mel spectrogram with the seams marked (dashed lines), over
    a timeline of its beats coloured by source track (one row per source)."""
    import matplotlib
    from matplotlib.figure import Figure  # no pyplot: no GUI backend, no global figure list

    from ..features import log_mel

    hop = 512
    S = log_mel(y, sr=sr, hop_length=hop)
    dur = len(y) / sr
    beats = prov["beats"]
    order = list(dict.fromkeys(b["track_id"] for b in beats))  # rows in order of first use
    colours = matplotlib.colormaps["tab20"](np.arange(len(order)) % 20)
    period = 60.0 / float(prov["tempo"])

    fig = Figure(figsize=(10, 5), layout="constrained")
    ax_s, ax_t = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 2]})
    ax_s.imshow(S, origin="lower", aspect="auto", cmap="magma", vmin=S.max() - 80, vmax=S.max(),
                extent=(0, S.shape[1] * hop / sr, 0, S.shape[0]))
    for t in prov["seams"]:
        ax_s.axvline(t, color="cyan", lw=0.8, ls="--", alpha=0.8)
    ax_s.set_ylabel("mel band")
    ax_s.set_title(title or f"{dur:.1f} s at {prov['tempo']:.1f} BPM in {prov['key']}: "
                   f"{len(prov['seams'])} seams (dashed), {len(order)} source tracks")
    for b in beats:
        row = order.index(b["track_id"])
        ax_t.broken_barh([(b["time"], period)], (row - 0.4, 0.8), color=colours[row])
    for t in prov["seams"]:
        ax_t.axvline(t, color="grey", lw=0.5, ls="--", alpha=0.6)
    ax_t.set_yticks(range(len(order)), [t[:8] for t in order], fontsize=7)
    ax_t.invert_yaxis()
    ax_t.set_ylabel("source track")
    ax_t.set_xlabel("time in the piece (s)")
    ax_t.set_xlim(0, dur)
    return fig
