"""Adapting a model to one library: the contrastive objective on the library's own unlabelled tracks.

The base model (the library's current model, else the packaged default) keeps its track head; its
chunk tag and genre outputs on the same views are a distillation target, so the tags it learned are
not forgotten while the backbone learns what sets the library's own recordings apart. The result is
written under ``LIB/models/`` and recorded as the library's model: ``mir tag`` and ``mir index`` use
it from then on.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import numpy as np

from ..catalog.predictions import resolve_model, set_library_model
from ..errors import CatalogError
from .contrastive import SSLConfig, SSLResult, WaveBank, train_ssl

ADAPT = SSLConfig(steps=200, batch_size=32, supervised_weight=0.0, distill_weight=1.0)


def adapt(lib, *, base: str | os.PathLike | None = None, out: str | os.PathLike | None = None,
          config: SSLConfig = ADAPT, max_seconds: float = 60.0, progress: bool = False,
          log: Callable[[str], None] | None = None) -> SSLResult:
    """Fine-tune ``base`` on ``lib``'s tracks (at most ``max_seconds`` from the middle of each) and record it.

    Resumes a killed run (same base, tracks and settings) from ``<out stem>.last.pt``.
    """
    base_path = resolve_model(lib, base, tagged=False).checkpoint
    tracks = lib.tracks(include_missing=False)
    if len(tracks) < 2:
        raise CatalogError(f"library {str(lib.root)!r} has {len(tracks)} track(s); adapting needs at least 2 "
                           f"(run `mir scan {lib.root} FOLDER` first)")
    offsets = np.maximum((tracks["duration"].to_numpy(float) - max_seconds) / 2, 0.0)
    bank = WaveBank.load(list(tracks["path"]), offsets=offsets, max_seconds=max_seconds, progress=progress, log=log)
    out = Path(out) if out is not None else lib.root / "models" / "adapted.pt"
    result = train_ssl(base_path, bank, out, config=config, keep_head=True, progress=progress, log=log)
    if result.model_id:
        set_library_model(lib, out, model_id=result.model_id, base=str(base_path), tracks=len(bank))
    return result
