"""`mir train-style`: give a model a style embedding (:mod:`mir.models.style`) fitted on a real corpus.

The style statistics come from one backbone block and the MFCCs; nothing is trained by gradient.
Fitting freezes their standardisation: the mean and standard deviation, over the ``train`` tracks of
a ``realmusic`` corpus (``mir dataset build realmusic``), of each track's mean chunk statistics (at
most ``max_seconds`` from the middle of each track, every non-overlapping chunk, as ``mir tag`` sends a
track), and, with ``whiten > 0``, the shrunk-covariance whitening of the same tracks' combined
vectors (:func:`mir.models.style.shrunk_whitening`). The new checkpoint has the same weights, heads
and music gate; its model id differs through the style block and the frozen statistics.

The report scores the ``valid`` tracks, whole, by 5-nearest-neighbour balanced accuracy of their
package (neighbours from other tracks; chance ``1 / packages``) for the style embedding and for the
backbone's mean chunk embedding: a check that the statistics carry what makes one package's tracks
sound alike.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from ..errors import ParameterError

WHITEN = 0.7  # the default whitening shrinkage: what benchmarks/style_choice.py chose for the shipped backbone


def _stats_and_embedding(per_chunk: dict, counts: np.ndarray) -> np.ndarray:
    from ..models.inference import aggregate

    track = aggregate(per_chunk, counts)
    return np.hstack([track["stats"], track["embedding"]])


def corpus_stats(model, music_dir, split: str, *, chunk_frames: int, max_seconds: float,
                 progress: bool = False) -> tuple[np.ndarray, np.ndarray, list[dict]]:
    """``(style statistics [k, dim], backbone embeddings [k, d], kept tracks)`` of a corpus split's music."""
    from tqdm import tqdm

    from ..datasets import realmusic
    from .gate import clip_features

    inner = getattr(model, "_orig_mod", model)
    rows = sorted(realmusic.tracks(music_dir, split=split), key=lambda r: r["path"])
    dim = inner.style.dim
    with tqdm(total=len(rows), disable=not progress, unit="track", desc=f"train-style {split}") as bar:
        feats, kept = clip_features(model, [r["path"] for r in rows], [r["duration"] for r in rows],
                                    chunk_frames=chunk_frames, max_seconds=max_seconds, on_clip=bar.update,
                                    features=_stats_and_embedding, width=dim + inner.embed_dim)
    return feats[:, :dim], feats[:, dim:], [rows[i] for i in kept]


def with_style(loaded, *, block: int, n_mfcc: int, weight: float, whiten: float = 0.0):
    """A copy of ``loaded``'s model with a style block (standardisation and whitening not yet fitted)
    and its config."""
    from ..models.builders import build_model

    config = dataclasses.replace(loaded.config, style_block=block, style_mfcc=n_mfcc, style_weight=weight,
                                 style_whiten=whiten)
    model = build_model(config)
    state = {k: v for k, v in loaded.model.state_dict().items() if not k.startswith("style.")}
    missing, unexpected = model.load_state_dict(state, strict=False)
    fitted = {"style.shift", "style.scale"} | ({"style.center", "style.whiten"} if whiten else set())
    if unexpected or set(missing) != fitted:
        raise ParameterError(f"cannot add a style block to model {loaded.model_id}: missing {missing}, unexpected {unexpected}")
    return model.eval(), config


def train_style(music_dir, model_path, out, *, block: int | None = None, n_mfcc: int = 20, weight: float = 0.7,
                whiten: float = WHITEN, max_seconds: float = 60.0, progress: bool = False) -> dict:
    """Fit the style standardisation of ``model_path`` with ``block`` (None: the last) on ``music_dir``'s
    train split; write ``out``. The defaults are what ``benchmarks/style_choice.py`` chose for the shipped
    backbone.

    Returns a report: model ids, track counts, and valid 5-NN package accuracy of both embeddings.
    """
    from ..models import load_checkpoint
    from ..models.checkpoint import save_checkpoint
    from ..models.inference import prepare_model
    from .retrieval_metrics import knn_balanced_accuracy

    loaded = load_checkpoint(model_path)
    if block is None:
        block = loaded.config.n_blocks - 1
    if not -1 < block < loaded.config.n_blocks:
        raise ParameterError(f"--block must name one of the model's blocks, 0 to {loaded.config.n_blocks - 1}; got {block}")
    if not (isinstance(whiten, (int, float)) and 0 <= whiten <= 1):
        raise ParameterError(f"--whiten must be a shrinkage in [0, 1] (0 = no whitening), got {whiten!r}")
    model, config = with_style(loaded, block=block, n_mfcc=n_mfcc, weight=weight, whiten=whiten)
    model = prepare_model(model)
    chunk = loaded.config.chunk_frames
    stats, _, train_rows = corpus_stats(model, music_dir, "train", chunk_frames=chunk, max_seconds=max_seconds,
                                        progress=progress)
    if len(train_rows) < 2:
        raise ParameterError(f"{music_dir}: the train split has {len(train_rows)} usable music track(s); "
                             "the style standardisation needs at least 2 (build the corpus with `mir dataset build realmusic`)")
    model.style.set_standardisation(stats)
    if whiten:
        model.style.set_whitening(stats)
    report = {"base_model_id": loaded.model_id, "block": block, "n_mfcc": n_mfcc, "mfcc_weight": weight, "whiten": whiten,
              "max_seconds": max_seconds, "train_tracks": len(train_rows)}
    v_stats, v_emb, v_rows = corpus_stats(model, music_dir, "valid", chunk_frames=chunk,
                                          max_seconds=max_seconds, progress=progress)
    packages = [r["package"] for r in v_rows]
    report["valid_tracks"] = len(v_rows)
    if len(set(packages)) >= 2:
        groups = list(range(len(v_rows)))
        report["valid_knn5_package"] = {
            "style": round(knn_balanced_accuracy(model.style.embed(v_stats), packages, groups, k=5), 4),
            "backbone": round(knn_balanced_accuracy(v_emb, packages, groups, k=5), 4),
            "chance": round(1 / len(set(packages)), 4)}
    report["model_id"] = save_checkpoint(out, model, config=config, tags=loaded.tags, genres=loaded.genres,
                                         thresholds=loaded.thresholds, metrics={**loaded.metrics, "style": report},
                                         analysis=loaded.analysis, extra=loaded.extra)
    return report
