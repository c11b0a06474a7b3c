"""Two-stage hybrid: candidates from several recommenders, re-scored by a learned model.

Stage 1 (candidates): per user the union of the collaborative (ALS) top ``N``, the content top ``N``
and the popularity top ``N`` (played tracks excluded). Cold-start users (1 to ``cold_user_plays``
plays) get the content top ``N`` only (their taste from those few plays), as the issue asks.

Stage 2 (scorer): per (user, candidate) features (:data:`FEATURES`): collaborative score (z-score
over the user's candidates) and log rank, content taste score and log rank, log popularity, a
never-played-track flag, user activity (log plays, cold-user flag) and their products with the
scores. A logistic regression (scikit-learn, L2, standardised features) is trained on a temporal
validation split of the training events (label: the candidate is one of the user's held-out new
tracks); the base recommenders are then refitted on all events and the learned logit ranks the
candidates. For cold-start users the collaborative features are 0, so their content candidates are
re-ranked by content score, popularity and their interactions with activity. The scorer is stored
as plain arrays (coefficients, intercept, feature means and scales), no pickle.
"""
from __future__ import annotations

import numpy as np

from ..errors import ParameterError
from ._base import Recommender
from .arrays import NEG, dedupe_rows, max_seen, pick, seen_mask, zscore_rows
from .methods import Collaborative, hybrid_parts
from .tune import relevance_credit, validation_split

BASE = ("cf_z", "cf_logrank", "cb_z", "cb_logrank", "log_pop", "cold_track")
MIXED = ("cf_z", "cf_logrank", "cb_z", "cb_logrank", "log_pop")
FEATURES = BASE + tuple(f"log_plays*{f}" for f in MIXED) + tuple(f"cold_user*{f}" for f in ("cb_z", "cb_logrank", "log_pop"))


def _zscore(s: np.ndarray) -> np.ndarray:
    """Per-row z-scores of the finite entries, 0 elsewhere."""
    return np.where(np.isfinite(s), zscore_rows(s), 0.0)


def _log_rank(s: np.ndarray) -> np.ndarray:
    """log(1 + rank) of each entry by decreasing score within its row (-inf entries last)."""
    order = np.argsort(-s, axis=1, kind="stable")
    ranks = np.empty_like(order)
    np.put_along_axis(ranks, order, np.broadcast_to(np.arange(s.shape[1]), s.shape), axis=1)
    return np.log1p(ranks.astype(np.float64))


def _popular(model, u, n, allowed, exclude_seen) -> np.ndarray:
    """[b, n] most played items (distinct users) per user, played ones excluded when asked, in
    popularity order (unlike a second top-k, which may reorder items tied in popularity)."""
    extra = max_seen(model.seen_, u) if exclude_seen else 0
    top, _ = model._popular(1, n + extra, allowed)
    cand = np.broadcast_to(top, (len(u), top.shape[1])).copy()
    if exclude_seen:
        cand[seen_mask(model.seen_, u, cand)] = -1
    keep = np.argsort(cand < 0, axis=1, kind="stable")[:, :n]  # valid entries first, order kept
    return np.take_along_axis(cand, keep, axis=1)


def candidate_features(cf_scores: np.ndarray, cb_scores: np.ndarray, log_pop: np.ndarray, cold_track: np.ndarray,
                       log_plays: np.ndarray, cold_user: np.ndarray) -> np.ndarray:
    """Features [b, c, len(FEATURES)] of candidates: scores [b, c] (-inf: not a candidate), item
    columns ``log_pop`` / ``cold_track`` [b, c], user columns ``log_plays`` / ``cold_user`` [b].
    Collaborative features are 0 for cold users."""
    warm = ~np.asarray(cold_user, bool)[:, None]
    cf_z = np.where(warm, _zscore(cf_scores), 0.0)
    cf_lr = np.where(warm, _log_rank(cf_scores), 0.0)
    base = {"cf_z": cf_z, "cf_logrank": cf_lr, "cb_z": _zscore(cb_scores), "cb_logrank": _log_rank(cb_scores),
            "log_pop": log_pop, "cold_track": cold_track.astype(np.float64)}
    lp = np.asarray(log_plays, np.float64)[:, None]
    cu = np.asarray(cold_user, np.float64)[:, None]
    cols = [base[f] for f in BASE] + [lp * base[f] for f in MIXED] + [cu * base[f] for f in ("cb_z", "cb_logrank", "log_pop")]
    return np.stack(cols, axis=-1)


class LearnedHybrid(Recommender):
    """Two-stage hybrid (see the module docstring): candidates from ALS, content and popularity,
    ranked by a logistic regression learned on a validation split of the training events.

    ``n_candidates``: ``N`` per source (at least the list length asked for); ``C``: inverse L2
    strength of the logistic regression; ``collaborative`` / ``content``: the parts (defaults:
    ``Collaborative()`` with settings chosen on the same validation split, ``ContentBased()``);
    ``cold_ridge``: never-played tracks get collaborative factors predicted from their embeddings.
    Learned: ``coef_``, ``intercept_``, ``feature_mean_``, ``feature_scale_`` (over :data:`FEATURES`),
    ``collaborative_``, ``content_``, ``validation_`` = [rows, positives, users, validation recall@tune_k].
    """

    name = "hybrid-learned"
    needs_tracks = True

    def __init__(self, collaborative: Recommender | None = None, content: Recommender | None = None,
                 n_candidates: int = 100, cold_user_plays: int = 3, C: float = 1.0, validation: float = 0.2,
                 tune_k: int = 50, max_tune_users: int = 5000, random_state: int = 0, cold_ridge: float | None = 1.0):
        self.collaborative = collaborative
        self.content = content
        self.n_candidates = n_candidates
        self.cold_user_plays = cold_user_plays
        self.C = C
        self.validation = validation
        self.tune_k = tune_k
        self.max_tune_users = max_tune_users
        self.random_state = random_state
        self.cold_ridge = cold_ridge

    def _parts(self, cf_settings: dict | None = None):
        return hybrid_parts(self.collaborative, self.content, cf_settings, self.cold_ridge)

    def _check(self) -> None:
        if isinstance(self.n_candidates, bool) or not isinstance(self.n_candidates, (int, np.integer)) \
                or self.n_candidates < 1:
            raise ParameterError(f"n_candidates must be a positive int, got {self.n_candidates!r}")
        if not (isinstance(self.C, (int, float)) and self.C > 0):
            raise ParameterError(f"C must be a number > 0, got {self.C!r}")

    def _fit(self, X, tracks) -> None:
        from sklearn.linear_model import LogisticRegression

        self._check()
        split = validation_split(X, self.validation, max_users=self.max_tune_users, random_state=self.random_state)
        cf0, _ = self._parts()
        tune_cf = isinstance(cf0, Collaborative) and bool(cf0._auto())
        cf_settings, cf_tuning = cf0.search(split, tracks) if tune_cf else ({}, None)
        cf, cb = self._parts(cf_settings)
        cf.fit(split.train, tracks)
        cb.fit(split.train, tracks)
        feats, labels = [], []
        for start in range(0, len(split.users), 512):
            u = split.users[start:start + 512]
            cand = self._pool(cf, cb, u, self.n_candidates, None, True)
            F, ok = self._features(cf, cb, u, cand)
            credit = relevance_credit(cand, u, split.relevant, cf.item_users_.size)
            feats.append(F[ok])
            labels.append(credit[ok] > 0)
        F = np.concatenate(feats) if feats else np.zeros((0, len(FEATURES)))
        y = np.concatenate(labels) if labels else np.zeros(0, bool)
        self.feature_mean_ = F.mean(axis=0) if len(F) else np.zeros(len(FEATURES))
        scale = F.std(axis=0) if len(F) else np.ones(len(FEATURES))
        self.feature_scale_ = np.where(scale > 1e-12, scale, 1.0)
        if len(np.unique(y)) < 2:  # nothing to learn from: fall back to collaborative + content z-scores
            coef = np.zeros(len(FEATURES))
            coef[[FEATURES.index("cf_z"), FEATURES.index("cb_z")]] = 1.0
            self.coef_, self.intercept_ = coef * self.feature_scale_, 0.0
        else:
            lr = LogisticRegression(C=float(self.C), max_iter=2000, random_state=self.random_state)
            lr.fit((F - self.feature_mean_) / self.feature_scale_, y)
            self.coef_, self.intercept_ = lr.coef_.ravel().astype(np.float64), float(lr.intercept_[0])
        self.validation_ = np.array([len(y), float(y.sum()), len(split.users),
                                     self._split_recall(cf, cb, split)], dtype=np.float64)
        cf, cb = self._parts(cf_settings)
        self.collaborative_ = cf.fit(X, tracks)
        if cf_tuning is not None:
            self.collaborative_.tuning_ = cf_tuning
        self.content_ = cb.fit(X, tracks)

    def _split_recall(self, cf, cb, split) -> float:
        """Recall@tune_k of the learned scorer on the validation users (in-sample: a sanity figure)."""
        if len(split.users) == 0:
            return float("nan")
        hits = 0.0
        for start in range(0, len(split.users), 512):
            u = split.users[start:start + 512]
            items, _ = self._ranked(cf, cb, u, self.tune_k, None, True)
            hits += float(relevance_credit(items, u, split.relevant, cf.item_users_.size).sum())
        return hits / len(split.users)

    # --- scoring ------------------------------------------------------------------------------------------
    def _cold_users(self, cf, u) -> np.ndarray:
        return cf.user_plays_[u] <= self.cold_user_plays

    def _pool(self, cf, cb, u, n, allowed, exclude_seen) -> np.ndarray:
        """Candidate items [b, c] (-1 padded): ALS + content + popularity top n; content only for cold users."""
        cold = self._cold_users(cf, u)
        c_cb, _ = cb._candidates(u, n, allowed, exclude_seen)
        c_cf = np.full((len(u), n), -1, np.int64)
        c_pop = np.full((len(u), n), -1, np.int64)
        if (~cold).any():
            items, _ = cf._candidates(u[~cold], n, allowed, exclude_seen)
            c_cf[~cold, :items.shape[1]] = items
            items = _popular(cf, u[~cold], n, allowed, exclude_seen)
            c_pop[~cold, :items.shape[1]] = items
        return dedupe_rows(np.concatenate([c_cf, c_cb, c_pop], axis=1))

    def _features(self, cf, cb, u, cand) -> tuple[np.ndarray, np.ndarray]:
        ok = cand >= 0
        item_users = cf.item_users_[np.maximum(cand, 0)]
        log_pop = np.log((item_users + 1.0) / (cf.item_users_.size + 1.0))
        cf_s = np.where(ok, cf._score(u, cand), -np.inf)
        cb_s = np.where(ok, cb._score(u, cand), -np.inf)
        F = candidate_features(cf_s, cb_s, log_pop, item_users == 0, np.log1p(cf.user_plays_[u]),
                               self._cold_users(cf, u))
        return F, ok

    def _logit(self, cf, cb, u, cand) -> np.ndarray:
        F, ok = self._features(cf, cb, u, cand)
        z = ((F - self.feature_mean_) / self.feature_scale_) @ self.coef_ + self.intercept_
        return np.where(ok, z, NEG).astype(np.float32)

    def _ranked(self, cf, cb, u, n, allowed, exclude_seen):
        cand = self._pool(cf, cb, u, max(int(self.n_candidates), n), allowed, exclude_seen)
        return pick(cand, self._logit(cf, cb, u, cand), n)

    def _candidates(self, u, n, allowed, exclude_seen):
        return self._ranked(self.collaborative_, self.content_, u, n, allowed, exclude_seen)

    def _score(self, u, items):
        return self._logit(self.collaborative_, self.content_, u, items)
