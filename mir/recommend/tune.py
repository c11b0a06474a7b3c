"""Choosing hyper-parameters on a temporal validation split of the *training* events.

The split holds out each user's last events of the data a model is fitted on (never an
evaluation's test split, which the caller has already removed). :class:`ValidationSplit` is
shared by the hybrid's blend tuning and the collaborative model's search over factors,
regularisation and confidence (:func:`successive_halving`): every configuration of a small grid
is fitted on the events of a seeded sample of users, the best third goes on to a sample three
times larger, until the whole split (or one configuration) is reached. Deterministic given
``random_state``; the work is bounded by the grid and the data, not by wall time.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from .split import temporal_split


@dataclass
class ValidationSplit:
    """``train``: events before each user's held-out tail; ``relevant[u]``: new tracks of the tail;
    ``users``: the users scored (train plays and relevant tracks; at most ``max_users``, seeded sample)."""

    train: object
    relevant: dict
    users: np.ndarray
    random_state: int = 0


def validation_split(X, fraction: float = 0.2, *, max_users: int = 5000, random_state: int = 0) -> ValidationSplit:
    train, relevant = temporal_split(X, fraction)
    plays = np.bincount(train.user_idx, minlength=train.n_users)
    users = np.array(sorted(u for u in relevant if plays[u] > 0), dtype=np.int64)
    if len(users) > max_users:
        users = np.sort(np.random.default_rng(random_state).choice(users, max_users, replace=False))
    return ValidationSplit(train, relevant, users, random_state)


def relevance_credit(cand: np.ndarray, users: np.ndarray, relevant: dict, n_items: int) -> np.ndarray:
    """[b, c] float: ``1 / |relevant[users[r]]|`` where ``cand[r, c]`` is relevant, else 0
    (so summing a row's picked entries gives that user's recall)."""
    n_rel = np.array([len(relevant[int(x)]) for x in users])
    rows = np.repeat(np.arange(len(users)), n_rel)
    rel = np.zeros(cand.shape, bool)
    m = n_items + 1  # key = row * m + item, unique per row (padding gets negative keys)
    pad = -1 - np.arange(cand.size).reshape(cand.shape)
    key = np.where(cand >= 0, cand + np.arange(len(users))[:, None] * m, pad)
    rel_items = np.concatenate([relevant[int(x)] for x in users]) if len(users) else np.zeros(0, np.int64)
    hit = pd.Index(key.ravel()).get_indexer(rel_items + rows * m)
    rel.ravel()[hit[hit >= 0]] = True
    return rel / np.maximum(n_rel, 1)[:, None]


def recall(model, users: np.ndarray, relevant: dict, k: int, batch: int = 512) -> float:
    """Mean recall@k of a fitted model's lists (played tracks excluded) over ``users``."""
    if len(users) == 0:
        return float("nan")
    hits = 0.0
    for start in range(0, len(users), batch):
        u = users[start:start + batch]
        items, _ = model._candidates(u, k, None, True)
        hits += float(relevance_credit(items, u, relevant, model.seen_.shape[1]).sum())
    return hits / len(users)


def successive_halving(configs: Sequence[dict], fit: Callable, split: ValidationSplit, k: int, *,
                       min_users: int = 500, eta: int = 3) -> tuple[dict, list[tuple[dict, float, float]]]:
    """Best of ``configs`` by validation recall@k: ``(best, rows)``, rows = ``(config, user share, recall)``.

    ``fit(config, train)`` returns a fitted model. Round r fits the survivors on the events of the
    first ``n_r`` users of a seeded permutation (``n_r`` grows by ``eta`` up to all users; the first
    round has at least ``min_users`` users, or all) and keeps the best ``1 / eta``, until one is left.
    Ties keep the earlier configuration of ``configs``. With G configurations and R rounds the
    fits cost about ``G / eta ** R`` each round, in units of one fit on the whole split.
    """
    X = split.train
    n = X.n_users
    rounds = 0
    while rounds < 8 and n / eta ** (rounds + 1) >= min_users and len(configs) > eta ** rounds:
        rounds += 1
    order = np.random.default_rng(split.random_state).permutation(n)
    alive = list(range(len(configs)))
    rows: list[tuple[dict, float, float]] = []
    for r in range(rounds, -1, -1):
        if len(alive) == 1:
            break
        n_users = n if r == 0 else int(np.ceil(n / eta ** r))
        chosen = np.zeros(n, bool)
        chosen[order[:n_users]] = True
        train = X if n_users == n else X.subset(chosen[X.user_idx])
        users = split.users[chosen[split.users]]
        scores = []
        for c in alive:
            score = recall(fit(configs[c], train), users, split.relevant, k)
            rows.append((configs[c], n_users / n, score))
            scores.append(-np.inf if np.isnan(score) else score)
        keep = max(1, int(np.ceil(len(alive) / eta))) if r > 0 else 1
        best = np.argsort(-np.asarray(scores), kind="stable")[:keep]
        alive = [alive[i] for i in sorted(best)]
    return configs[alive[0]], rows

