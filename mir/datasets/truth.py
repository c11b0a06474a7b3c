"""The hidden truth of a built ``mirdemo`` collection: the taste model its listening histories were drawn
from (``tastes.json``) and the track labels (``labels.csv``), for scoring recommendations against it.

Evaluation (:mod:`mir.recommend.evaluate`) takes the resulting affinity matrix as plain numbers, so the
recommenders never depend on how the demo data are made.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import ParameterError
from ._histories import affinity
from ..catalog.labels import TAG_SEPARATOR


def read_demo_truth(dataset: str | os.PathLike) -> tuple[dict, pd.DataFrame]:
    """``(tastes, labels)``: a ``mirdemo`` folder's hidden taste model (tastes.json) and labels.csv (as str)."""
    folder = Path(dataset)
    try:
        tastes = json.loads((folder / "tastes.json").read_text())
        labels = pd.read_csv(folder / "labels.csv", dtype=str, keep_default_na=False)
    except (OSError, ValueError) as exc:
        raise ParameterError(f"{folder}: cannot read tastes.json and labels.csv of a mirdemo collection ({exc})") from exc
    return tastes, labels


def demo_affinity(dataset: str | os.PathLike, users: np.ndarray, resolve, items: np.ndarray) -> np.ndarray:
    """Hidden affinity [len(users), len(items)] from a ``mirdemo`` folder (tastes.json + labels.csv).

    ``resolve`` maps the collection's track names to catalogue track ids (as for the events);
    tracks or users the taste model does not know get nan.
    """
    tastes, labels = read_demo_truth(dataset)
    pos = {t: i for i, t in enumerate(items)}
    cols, genres, tags = [], [], []
    for row in labels.itertuples(index=False):
        tid = resolve(row.track)
        if tid in pos:
            cols.append(pos[tid])
            genres.append(row.genre)
            tags.append([t.strip() for t in row.tags.split(TAG_SEPARATOR) if t.strip()])
    A = np.full((len(users), len(items)), np.nan)
    for r, u in enumerate(users):
        user = tastes["users"].get(str(u))
        if user is not None:
            A[r, cols] = [affinity(user, g, tg, tastes["beta"]) for g, tg in zip(genres, tags)]
    return A
