"""Ranking metrics for top-k recommendations: pure functions over plain Python/NumPy values.

Conventions: ``recommended`` is a ranked sequence of item ids (best first, no repeats); ``relevant``
is a set of item ids (binary relevance). Only the first ``k`` recommendations count.

- ``recall@k`` = hits / |relevant|
- ``precision@k`` = hits / k
- ``nDCG@k`` = DCG / ideal DCG, DCG = sum over hits at rank r (1-based) of 1 / log2(r + 1);
  the ideal list puts min(|relevant|, k) hits first
- ``AP@k`` = (sum over hits at rank r of precision@r) / min(|relevant|, k); MAP@k is its mean

A user without relevant items is undefined for these metrics: :func:`evaluate_lists` skips such
users (and says how many); the single-user functions raise.
- catalogue ``coverage`` = distinct recommended items / catalogue size
- ``novelty`` = mean self-information -log2 p(i) of recommended items, p(i) = (users who played i + 1)
  / (users + 1) (smoothed so never-played items have a finite, maximal value)
"""
from __future__ import annotations

from typing import Iterable, Mapping, Sequence

import numpy as np

from ..errors import ParameterError


def _check(recommended: Sequence, relevant, k: int) -> tuple[list, set]:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ParameterError(f"k must be a positive int, got {k!r}")
    rel = set(relevant)
    if not rel:
        raise ParameterError("relevant is empty: the metric is undefined for a user with nothing held out")
    top = list(recommended)[:k]
    if len(set(top)) != len(top):
        raise ParameterError("recommended lists an item twice; de-duplicate the ranking first")
    return top, rel


def recall_at_k(recommended: Sequence, relevant: Iterable, k: int) -> float:
    top, rel = _check(recommended, relevant, k)
    return sum(i in rel for i in top) / len(rel)


def precision_at_k(recommended: Sequence, relevant: Iterable, k: int) -> float:
    top, rel = _check(recommended, relevant, k)
    return sum(i in rel for i in top) / k


def ndcg_at_k(recommended: Sequence, relevant: Iterable, k: int) -> float:
    top, rel = _check(recommended, relevant, k)
    dcg = sum(1.0 / np.log2(r + 2) for r, i in enumerate(top) if i in rel)
    ideal = sum(1.0 / np.log2(r + 2) for r in range(min(len(rel), k)))
    return float(dcg / ideal)


def average_precision_at_k(recommended: Sequence, relevant: Iterable, k: int) -> float:
    top, rel = _check(recommended, relevant, k)
    hits, total = 0, 0.0
    for r, i in enumerate(top):
        if i in rel:
            hits += 1
            total += hits / (r + 1)
    return total / min(len(rel), k)


def coverage(lists: Iterable[Sequence], n_items: int) -> float:
    """Share of the catalogue's ``n_items`` that appear in at least one list."""
    if n_items < 1:
        raise ParameterError(f"n_items must be positive, got {n_items}")
    seen = set()
    for rec in lists:
        seen.update(rec)
    return len(seen) / n_items


def novelty(lists: Iterable[Sequence], item_users: Mapping, n_users: int) -> float:
    """Mean self-information (bits) of recommended items; ``item_users[i]`` = users who played ``i``."""
    if n_users < 1:
        raise ParameterError(f"n_users must be positive, got {n_users}")
    bits = [-np.log2((item_users.get(i, 0) + 1) / (n_users + 1)) for rec in lists for i in rec]
    return float(np.mean(bits)) if bits else 0.0


def evaluate_lists(recs: Mapping, relevant: Mapping, k: int) -> dict:
    """Mean recall, precision, nDCG and MAP @k over users with relevant items; ``n_users`` evaluated.

    ``recs[user]`` is a ranked list, ``relevant[user]`` a set; users with an empty relevant set
    are skipped (``skipped``); users without a list count as an empty list (all zeros).
    """
    rows = {"recall": [], "precision": [], "ndcg": [], "map": []}
    skipped = 0
    for user, rel in relevant.items():
        if not rel:
            skipped += 1
            continue
        rec = list(recs.get(user, ()))
        rows["recall"].append(recall_at_k(rec, rel, k))
        rows["precision"].append(precision_at_k(rec, rel, k))
        rows["ndcg"].append(ndcg_at_k(rec, rel, k))
        rows["map"].append(average_precision_at_k(rec, rel, k))
    out = {f"{name}@{k}": (float(np.mean(v)) if v else 0.0) for name, v in rows.items()}
    out["n_users"] = len(rows["recall"])
    out["skipped"] = skipped
    return out
