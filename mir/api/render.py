"""PNG pictures for the page: a track's cached log-mel spectrogram."""
from __future__ import annotations

import io

import numpy as np


def spectrogram_png(S: np.ndarray, *, sr: int, hop_length: int, title: str = "") -> bytes:
    """Draw a log-mel ``S`` [shape=(n_mels, frames)] in dB (time in seconds, mel bands up) as PNG bytes.

    Uses matplotlib's object API with the Agg canvas (no pyplot state), so threads may draw at once.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    S = np.asarray(S, dtype=np.float32)
    fig = Figure(figsize=(8, 2.6), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0.07, 0.18, 0.82, 0.72))
    seconds = S.shape[1] * hop_length / sr
    top = float(S.max()) if S.size else 0.0
    img = ax.imshow(S, origin="lower", aspect="auto", cmap="magma", vmin=top - 80, vmax=top,
                    extent=(0, seconds, 0, S.shape[0]), interpolation="nearest")
    ax.set_xlabel("time (s)")
    ax.set_ylabel("mel band")
    if title:
        ax.set_title(title, fontsize=9)
    fig.colorbar(img, cax=fig.add_axes((0.91, 0.18, 0.015, 0.72)), label="dB")
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()
