"""Offline evaluation of recommenders on a per-user temporal split (``mir recommend-eval``).

Each method is fitted on the earlier events of every user and asked for ``k`` tracks per user
(already played tracks excluded); a user's relevant set is what they played in their held-out
last events and had not played before (see :func:`~mir.recommend.split.temporal_split`).
Reported per method: recall, precision, nDCG, MAP @k (:mod:`~mir.recommend.metrics`), catalogue
coverage, novelty, the same recall for cold-start users alone, and cold-start tracks (nobody
played them in training): their share of the recommendations next to their share of the
relevant held-out items. With a hidden taste model (the demo collection's ``tastes.json``) also
``taste_precision@k`` (share of recommendations in the user's top 10 % of hidden affinity among
tracks they had not played) and ``affinity_pct`` (mean percentile of the recommendations'
hidden affinity among those tracks); the affinity of a built demo collection comes from
:func:`mir.datasets.truth.demo_affinity`.
"""
from __future__ import annotations

import time

import numpy as np
import pandas as pd

from ..errors import ParameterError
from . import metrics
from .split import temporal_split

TOP_SHARE = 0.10


def taste_scores(lists: dict[int, np.ndarray], affinity: np.ndarray, seen, k: int) -> dict:
    """Hidden-taste metrics of index-space ``lists`` (user -> items); ``affinity`` [n_users, n_items] (nan = unknown)."""
    prec, pct = [], []
    for u, items in lists.items():
        a = affinity[u]
        cand = np.isfinite(a)
        cand[seen.indices[seen.indptr[u]:seen.indptr[u + 1]]] = False
        if cand.sum() < 10 or not np.isfinite(a).any():
            continue
        vals = np.sort(a[cand])
        cut = vals[int(np.floor((1 - TOP_SHARE) * len(vals)))]
        items = items[(items >= 0)][:k]
        items = items[np.isfinite(a[items])]
        if len(items) == 0:
            continue
        prec.append(float(np.sum(a[items] >= cut)) / k)
        pct.append(float(np.mean(np.searchsorted(vals, a[items], side="right") / len(vals))))
    return {f"taste_precision@{k}": float(np.mean(prec)) if prec else float("nan"),
            "affinity_pct": float(np.mean(pct)) if pct else float("nan"), "taste_users": len(prec)}


def evaluate_method(model, train, relevant: dict[int, np.ndarray], tracks, *, k: int, cold_user_plays: int = 3,
                    affinity: np.ndarray | None = None, batch_size: int = 512) -> dict:
    """Fit ``model`` on ``train`` and score its top ``k`` for the users in ``relevant``; a row of the table."""
    t0 = time.perf_counter()
    model.fit(train, tracks)
    fit_s = time.perf_counter() - t0
    users = np.array(sorted(relevant), dtype=np.int64)
    lists: dict[int, np.ndarray] = {}
    t0 = time.perf_counter()
    for start in range(0, len(users), batch_size):
        u = users[start:start + batch_size]
        items, _ = model.recommend_index(u, k)
        for r, user in enumerate(u):
            lists[int(user)] = items[r][items[r] >= 0]
    rec_s = time.perf_counter() - t0
    rel_sets = {u: set(v.tolist()) for u, v in relevant.items()}
    row = metrics.evaluate_lists({u: v.tolist() for u, v in lists.items()}, rel_sets, k)
    row.pop("skipped")
    plays = model.user_plays_
    cold_u = {u: r for u, r in rel_sets.items() if 0 < plays[u] <= cold_user_plays}
    row[f"recall@{k}_cold_users"] = metrics.evaluate_lists(
        {u: lists[u].tolist() for u in cold_u}, cold_u, k)[f"recall@{k}"] if cold_u else float("nan")
    row["cold_users"] = len(cold_u)
    row["coverage"] = metrics.coverage((v.tolist() for v in lists.values()), train.n_items)
    item_users = dict(enumerate(model.item_users_.tolist()))
    row["novelty"] = metrics.novelty((v.tolist() for v in lists.values()), item_users, train.n_users)
    cold_items = model.item_users_ == 0
    rec_items = np.concatenate(list(lists.values())) if lists else np.zeros(0, np.int64)
    rel_items = np.concatenate(list(relevant.values())) if relevant else np.zeros(0, np.int64)
    row["cold_track_share_recs"] = float(cold_items[rec_items].mean()) if len(rec_items) else 0.0
    row["cold_track_share_relevant"] = float(cold_items[rel_items].mean()) if len(rel_items) else 0.0
    if affinity is not None:
        row.update(taste_scores(lists, affinity, model.seen_, k))
    row["fit_s"] = round(fit_s, 3)
    row["recommend_s"] = round(rec_s, 3)
    return row


def evaluate(models: dict, interactions, tracks, *, k: int = 50, holdout: float = 0.2,
             affinity: np.ndarray | None = None) -> pd.DataFrame:
    """One row per method (index = method name); see the module docstring for the columns."""
    if not models:
        raise ParameterError("no methods to evaluate")
    train, relevant = temporal_split(interactions, holdout)
    if not relevant:
        raise ParameterError("no user has held-out tracks they had not played before; need longer histories")
    rows = {name: evaluate_method(m, train, relevant, tracks, k=k, affinity=affinity) for name, m in models.items()}
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "method"
    table.attrs.update(k=k, holdout=holdout, users=len(interactions.users), items=interactions.n_items,
                       events=len(interactions), train_events=len(train), evaluated_users=len(relevant))
    return table

