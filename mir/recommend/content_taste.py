"""Content-based recommendations from per-user taste logits over the tracks' predicted genre and tag
probabilities (:mod:`mir.recommend.affinity` without item bias; no popularity: other users enter only
through the shared prior of tastes).

Scores every catalogue track for a block of users (dense ``[users, n_items]``), which is exact and
cheap for catalogues up to ~10^5 tracks.
"""
from __future__ import annotations

import numpy as np

from ..topk import top_k
from . import affinity, taste_cells
from ._base import Recommender
from .arrays import NEG, gather_rows, mask_unwanted


def fit_settings(model) -> dict:
    """A taste model's choice of fit (exact or cells) and where its blocks run (:func:`~mir.recommend.taste_cells.fit_taste`)."""
    return {"fit": model.taste_fit, "cells": model.cells, "threads": model.threads, "scheduler": model.scheduler}


def dense_topk(model, u, n, allowed, exclude_seen):
    """Top ``n`` of ``model._dense(u)`` [b, n_items] (played / not allowed items masked): ``(items, scores)``."""
    with affinity.one_blas_thread():
        S = model._dense(u)
    mask_unwanted(S, model.seen_, u, allowed, exclude_seen)
    scores, items = top_k(S, n)
    return items, scores


class ContentTaste(Recommender):
    """Content-based: ``theta_u · phi_t`` with ``theta_u`` a MAP per-user multinomial logit over the
    track features (:func:`mir.recommend.affinity.fit_tastes` without item bias; prior learned by EM).
    ``iterations`` (at most), ``ridge``, ``tol``: see :func:`~mir.recommend.affinity.fit_taste_model`; ``taste_fit``,
    ``cells``, ``threads``, ``scheduler``: exact or over cells of tracks (:func:`~mir.recommend.taste_cells.fit_taste`)."""

    name = "content-taste"
    needs_tracks = True

    def __init__(self, iterations: int = 20, ridge: float = 1e-2, tol: float = 1e-4, taste_fit: str = "auto",
                 cells: int | str = "auto", threads: int = 1, scheduler: str | None = None):
        self.iterations = iterations
        self.ridge = ridge
        self.tol = tol
        self.taste_fit = taste_fit
        self.cells = cells
        self.threads = threads
        self.scheduler = scheduler

    def _fit(self, X, tracks) -> None:
        self.features_ = affinity.track_features(tracks).astype(np.float32)
        fit = taste_cells.fit_taste(self.seen_, self.features_, item_bias=False, iterations=self.iterations,
                                    ridge=self.ridge, tol=self.tol, **fit_settings(self))
        self.theta_, self.prior_mean_, self.rounds_ = fit.theta, fit.mu, fit.rounds

    def _dense(self, u):
        return affinity.scores(self.theta_[u], self.features_)

    def _candidates(self, u, n, allowed, exclude_seen):
        return dense_topk(self, u, n, allowed, exclude_seen)

    def _score(self, u, items):
        out = np.einsum("bf,bcf->bc", self.theta_[u].astype(np.float32), gather_rows(self.features_, items))
        return np.where(items >= 0, out, NEG).astype(np.float32)
