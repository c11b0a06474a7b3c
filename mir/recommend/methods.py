"""The recommenders: popularity, content-based, collaborative (implicit ALS/BPR) and hybrid.

All follow the scikit-learn contract (``__init__`` stores hyper-parameters, ``fit`` returns
``self``, learned state ends in ``_``) and the two-step scoring of :mod:`mir.recommend._base`.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from ..errors import ParameterError
from . import taste
from ._base import NEG, Recommender, dedupe_rows, gather_rows, search_embeddings, seen_mask, topk


def clone(model: Recommender) -> Recommender:
    """An unfitted copy with the same hyper-parameters."""
    return type(model)(**model.get_params())


def _max_seen(seen, u: np.ndarray) -> int:
    return int(np.max(seen.indptr[u + 1] - seen.indptr[u])) if len(u) else 0


def _pick(cand: np.ndarray, scores: np.ndarray, n: int):
    idx, vals = topk(scores, n)
    items = np.where(idx >= 0, np.take_along_axis(cand, np.maximum(idx, 0), axis=1), -1)
    return items, vals


class Popularity(Recommender):
    """Most played tracks first (counted in distinct users); the same list for everyone."""

    name = "popularity"

    def __init__(self):
        pass

    def _fit(self, interactions, tracks) -> None:
        pass

    def _candidates(self, u, n, allowed, exclude_seen):
        extra = _max_seen(self.seen_, u) if exclude_seen else 0
        top, _ = self._popular(1, n + extra, allowed)
        cand = np.broadcast_to(top, (len(u), top.shape[1])).copy()
        scores = self._score(u, cand)
        if exclude_seen:
            scores[seen_mask(self.seen_, u, cand)] = NEG
        return _pick(cand, scores, n)

    def _score(self, u, items):
        pop = np.log1p(self.item_users_.astype(np.float32))
        return np.where(items >= 0, pop[np.maximum(items, 0)], NEG).astype(np.float32)


class ContentBased(Recommender):
    """Tracks close in embedding space to what the user played.

    A user's history becomes up to ``n_tastes`` taste vectors (see :mod:`mir.recommend.taste`:
    plays and recency weighting, ``half_life_days``; one cluster per ``min_tracks`` distinct
    tracks). Each taste is searched for candidates, the union is scored under the user's taste
    mixture (``temperature``), so several tastes share the list by their weight.
    """

    name = "content"
    needs_tracks = True

    def __init__(self, n_tastes: int = 3, min_tracks: int = 5, half_life_days: float | None = 180.0,
                 temperature: float = 0.1):
        self.n_tastes = n_tastes
        self.min_tracks = min_tracks
        self.half_life_days = half_life_days
        self.temperature = temperature

    def _fit(self, X, tracks) -> None:
        if self.n_tastes < 1 or self.min_tracks < 1 or not self.temperature > 0:
            raise ParameterError(f"n_tastes and min_tracks must be >= 1 and temperature > 0; got {self!r}")
        self.embeddings_ = tracks.embeddings
        last = np.full(X.n_users, np.iinfo(np.int64).min, np.int64)
        np.maximum.at(last, X.user_idx, X.timestamp)
        w = taste.event_weights(X.plays, X.timestamp, last[X.user_idx], self.half_life_days)
        W = sp.csr_matrix((w, (X.user_idx, X.item_idx)), shape=(X.n_users, X.n_items))
        W.sum_duplicates()
        d = self.embeddings_.shape[1]
        T = np.zeros((X.n_users, self.n_tastes, d), np.float32)
        S = np.zeros((X.n_users, self.n_tastes), np.float32)
        for user in range(X.n_users):
            lo, hi = W.indptr[user], W.indptr[user + 1]
            if hi > lo:
                T[user], S[user] = taste.user_tastes(self.embeddings_[W.indices[lo:hi]], W.data[lo:hi],
                                                     n_tastes=self.n_tastes, min_tracks=self.min_tracks)
        self.tastes_, self.shares_ = T, S

    def _candidates(self, u, n, allowed, exclude_seen):
        b, t = len(u), self.n_tastes
        n_search = min(len(self.items_), n + (_max_seen(self.seen_, u) if exclude_seen else 0))
        active = self.shares_[u] > 0
        idx, _ = search_embeddings(self.embeddings_, self.tastes_[u][active], n_search, allowed=allowed)
        cand = np.full((b, t, idx.shape[1]), -1, np.int64)
        cand[active] = idx
        cand = dedupe_rows(cand.reshape(b, -1))
        scores = self._score(u, cand)
        if exclude_seen:
            scores[seen_mask(self.seen_, u, cand)] = NEG
        return _pick(cand, scores, n)

    def _score(self, u, items):
        E = gather_rows(self.embeddings_, items)  # [b, c, d]
        sims = np.einsum("btd,bcd->btc", self.tastes_[u], E)
        out = taste.mixture_scores(sims, self.shares_[u], self.temperature)
        return np.where(items >= 0, out, NEG).astype(np.float32)


class Collaborative(Recommender):
    """Implicit-feedback matrix factorisation with the ``implicit`` library (``algorithm`` "als" or "bpr").

    Confidence of a (user, track) pair is ``1 + alpha * log(1 + plays)``. Candidates come from
    ``implicit``'s own batch ``recommend`` (its top-k, already-played and item filters).
    """

    name = "als"

    def __init__(self, algorithm: str = "als", factors: int = 64, regularization: float = 0.05, alpha: float = 2.0,
                 iterations: int = 15, learning_rate: float = 0.01, random_state: int = 0, num_threads: int = 0):
        self.algorithm = algorithm
        self.factors = factors
        self.regularization = regularization
        self.alpha = alpha
        self.iterations = iterations
        self.learning_rate = learning_rate
        self.random_state = random_state
        self.num_threads = num_threads

    def _new(self):
        from threadpoolctl import threadpool_limits

        import warnings

        with threadpool_limits(1, "blas"), warnings.catch_warnings():
            # implicit warns about BLAS threads when a model is made; fit runs under a 1-thread limit
            warnings.filterwarnings("ignore", message=".*BLAS is configured", category=RuntimeWarning)
            return self._make()

    def _make(self):
        if self.algorithm == "als":
            from implicit.cpu.als import AlternatingLeastSquares

            return AlternatingLeastSquares(factors=self.factors, regularization=self.regularization,
                                           iterations=self.iterations, random_state=self.random_state,
                                           num_threads=self.num_threads, calculate_training_loss=False)
        if self.algorithm == "bpr":
            from implicit.cpu.bpr import BayesianPersonalizedRanking

            return BayesianPersonalizedRanking(factors=self.factors, learning_rate=self.learning_rate,
                                               regularization=self.regularization, iterations=self.iterations,
                                               random_state=self.random_state, num_threads=self.num_threads)
        raise ParameterError(f"algorithm must be 'als' or 'bpr', got {self.algorithm!r}")

    def confidence(self, X):
        C = X.copy()
        C.data = (1.0 + self.alpha * np.log1p(C.data)).astype(np.float32)
        return C

    def _fit(self, X, tracks) -> None:
        from threadpoolctl import threadpool_limits

        model = self._new()
        with threadpool_limits(1, "blas"):  # implicit parallelises itself; nested BLAS threads slow it down
            model.fit(self.confidence(self.seen_), show_progress=False)
        self.user_factors_ = np.ascontiguousarray(model.user_factors, dtype=np.float32)
        self.item_factors_ = np.ascontiguousarray(model.item_factors, dtype=np.float32)
        self._model = model

    def implicit_model(self):
        """The ``implicit`` model holding the learned factors (rebuilt after :func:`load_model`)."""
        model = getattr(self, "_model", None)
        if model is None:
            model = self._new()
            model.user_factors, model.item_factors = self.user_factors_, self.item_factors_
            self._model = model
        return model

    def __getstate__(self):  # Dask ships the model to workers: factors travel, the implicit object is rebuilt
        state = dict(vars(self))
        state.pop("_model", None)
        return state

    def _candidates(self, u, n, allowed, exclude_seen):
        n = min(n, len(self.items_))
        banned = np.flatnonzero(~allowed) if allowed is not None else None
        ids, scores = self.implicit_model().recommend(u, self.seen_[u], N=n, filter_already_liked_items=exclude_seen,
                                                      filter_items=banned, recalculate_user=False)
        ids, scores = np.asarray(ids, np.int64).reshape(len(u), -1), np.asarray(scores, np.float32).reshape(len(u), -1)
        bad = ~np.isfinite(scores) | (ids < 0) | (ids >= len(self.items_))
        ids = np.where(bad, -1, ids)
        # implicit pads a list with filtered items when fewer than N remain: filter those rows again
        if exclude_seen:
            short = n + (self.seen_.indptr[u + 1] - self.seen_.indptr[u]) + (len(banned) if banned is not None else 0) \
                > len(self.items_)
            if short.any():
                bad[short] |= seen_mask(self.seen_, u[short], ids[short])
        if allowed is not None:
            bad |= ~allowed[np.maximum(ids, 0)]
        return np.where(bad, -1, ids), np.where(bad, NEG, scores).astype(np.float32)

    def _score(self, u, items):
        out = np.einsum("bf,bcf->bc", self.user_factors_[u], gather_rows(self.item_factors_, items))
        return np.where(items >= 0, out, NEG).astype(np.float32)


# --- hybrid ---------------------------------------------------------------------------------------------------
def zscore_rows(s: np.ndarray) -> np.ndarray:
    """Standardise each row over its finite entries (others stay -inf); constant rows become 0."""
    ok = np.isfinite(s)
    cnt = np.maximum(ok.sum(axis=1, keepdims=True), 1)
    x = np.where(ok, s, 0.0).astype(np.float64)
    mean = x.sum(axis=1, keepdims=True) / cnt
    var = (np.where(ok, x - mean, 0.0) ** 2).sum(axis=1, keepdims=True) / cnt
    std = np.sqrt(var)
    z = np.where(std > 1e-12, (x - mean) / np.where(std > 1e-12, std, 1.0), 0.0)
    return np.where(ok, z, -np.inf)


def blend(z_cf: np.ndarray, z_cb: np.ndarray, cold_items: np.ndarray, weights: np.ndarray,
          cold_offset: float = 0.0) -> np.ndarray:
    """``w * z_cf + (1 - w) * z_cb`` with ``w = weights[row]``; never-played items (``cold_items``) use
    ``z_cb`` in place of ``z_cf`` and get ``cold_offset`` added. Entries invalid in either input: -inf."""
    valid = np.isfinite(z_cb) & np.isfinite(z_cf)
    z_cf = np.where(cold_items, z_cb, z_cf)
    w = np.asarray(weights, np.float64)[:, None]
    with np.errstate(invalid="ignore"):
        out = w * z_cf + (1.0 - w) * z_cb + np.where(cold_items, cold_offset, 0.0)
    return np.where(valid, out, -np.inf).astype(np.float32)


WEIGHT_GRID = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 1.0)
COLD_GRID = (0.0, -0.5, -1.0, -2.0, -4.0)


class Hybrid(Recommender):
    """Blend of collaborative and content scores, each standardised per user over the candidates.

    Candidates: ``pool * n`` from each part, merged. Tracks nobody played in training (cold-start
    tracks) have no collaborative signal: content alone ranks them, shifted by ``cold_offset``
    (how readily new tracks enter lists). ``weight`` is the collaborative share for users with
    history; users with 1 to ``cold_user_plays`` plays (cold-start users) get ``cold_user_weight``
    (0: a pure content list). Any of the three set to ``"auto"`` is tuned for recall@``tune_k`` on a
    temporal validation split of the training events (weights over ``grid``, offsets over
    ``cold_grid``; the cold-user weight on the split's cold users alone), then both parts are
    refitted on all events.
    """

    name = "hybrid"
    needs_tracks = True

    def __init__(self, collaborative: Recommender | None = None, content: Recommender | None = None,
                 weight: float | str = "auto", cold_offset: float | str = "auto", cold_user_plays: int = 3,
                 cold_user_weight: float | str = 0.0, pool: int = 4, validation: float = 0.2, tune_k: int = 50,
                 grid: tuple = WEIGHT_GRID, cold_grid: tuple = COLD_GRID, max_tune_users: int = 5000,
                 random_state: int = 0):
        self.collaborative = collaborative
        self.content = content
        self.weight = weight
        self.cold_offset = cold_offset
        self.cold_user_plays = cold_user_plays
        self.cold_user_weight = cold_user_weight
        self.pool = pool
        self.validation = validation
        self.tune_k = tune_k
        self.grid = grid
        self.cold_grid = cold_grid
        self.max_tune_users = max_tune_users
        self.random_state = random_state

    def _parts(self):
        return (clone(self.collaborative) if self.collaborative is not None else Collaborative(),
                clone(self.content) if self.content is not None else ContentBased())

    def _choices(self, value, grid, name, lo, hi) -> list[float]:
        if value == "auto":
            return [float(x) for x in grid]
        if not lo <= float(value) <= hi:
            raise ParameterError(f"{name} must be in [{lo}, {hi}] or 'auto', got {value!r}")
        return [float(value)]

    def _fit(self, X, tracks) -> None:
        weights = self._choices(self.weight, self.grid, "weight", 0.0, 1.0)
        offsets = self._choices(self.cold_offset, self.cold_grid, "cold_offset", -np.inf, 0.0)
        cold_weights = self._choices(self.cold_user_weight, self.grid, "cold_user_weight", 0.0, 1.0)
        self.tuning_ = np.zeros((0, 4))
        if max(len(weights) * len(offsets), len(cold_weights)) > 1:
            self.weight_, self.cold_offset_, self.cold_user_weight_ = self._tune(X, tracks, weights, offsets, cold_weights)
        else:
            self.weight_, self.cold_offset_, self.cold_user_weight_ = weights[0], offsets[0], cold_weights[0]
        cf, cb = self._parts()
        self.collaborative_ = cf.fit(X, tracks)
        self.content_ = cb.fit(X, tracks)

    def _tune(self, X, tracks, weights, offsets, cold_weights) -> tuple[float, float, float]:
        """Best settings on a validation split; ``tuning_`` rows: ``[weight, offset, cold_user_weight, recall]``."""
        from .split import temporal_split

        train, relevant = temporal_split(X, self.validation)
        cf, cb = self._parts()
        cf.fit(train, tracks)
        cb.fit(train, tracks)
        users = np.array(sorted(u for u in relevant if cf.user_plays_[u] > 0), dtype=np.int64)
        if len(users) > self.max_tune_users:
            users = np.sort(np.random.default_rng(self.random_state).choice(users, self.max_tune_users, replace=False))
        cold = cf.user_plays_[users] <= self.cold_user_plays
        # warm users: weight × offset; cold users: their weight (at the best offset, found first)
        warm_grid = [(w, c) for w in weights for c in offsets]
        warm_recall = self._grid_recall(cf, cb, users[~cold], relevant, warm_grid)
        best_w, best_c = warm_grid[int(np.argmax(warm_recall))] if len(warm_recall) else (weights[0], offsets[0])
        cold_grid = [(w, best_c) for w in cold_weights]
        cold_recall = self._grid_recall(cf, cb, users[cold], relevant, cold_grid)
        best_cw = cold_grid[int(np.argmax(cold_recall))][0] if len(cold_recall) else cold_weights[0]
        rows = [(w, c, np.nan, r) for (w, c), r in zip(warm_grid, warm_recall)]
        rows += [(np.nan, c, w, r) for (w, c), r in zip(cold_grid, cold_recall)]
        self.tuning_ = np.array(rows, dtype=np.float64).reshape(-1, 4)
        return best_w, best_c, best_cw

    def _grid_recall(self, cf, cb, users, relevant, grid) -> np.ndarray:
        """Mean recall@tune_k of each (weight, offset) in ``grid`` over ``users`` (empty when no users)."""
        if len(users) == 0 or len(grid) == 0:
            return np.zeros(0)
        k = self.tune_k
        hits = np.zeros(len(grid))
        for start in range(0, len(users), 512):
            u = users[start:start + 512]
            cand, z_cf, z_cb, cold_i = self._blend_inputs(cf, cb, u, k, None, True)
            for g, (w, c) in enumerate(grid):
                items, _ = _pick(cand, blend(z_cf, z_cb, cold_i, np.full(len(u), w), c), k)
                for r, user in enumerate(u):
                    rel = relevant[int(user)]
                    hits[g] += np.isin(rel, items[r]).sum() / len(rel)
        return hits / len(users)  # argmax takes the first best: the lower weight, the milder offset

    def _blend_inputs(self, cf, cb, u, n, allowed, exclude_seen):
        nc = max(n, self.pool * n)
        c1, _ = cf._candidates(u, nc, allowed, exclude_seen)
        c2, _ = cb._candidates(u, nc, allowed, exclude_seen)
        cand = dedupe_rows(np.concatenate([c1, c2], axis=1))
        z_cf = zscore_rows(cf._score(u, cand))
        z_cb = zscore_rows(cb._score(u, cand))
        cold_items = cf.item_users_[np.maximum(cand, 0)] == 0
        return cand, z_cf, z_cb, cold_items

    def _weights(self, u) -> np.ndarray:
        cold = self.collaborative_.user_plays_[u] <= self.cold_user_plays
        return np.where(cold, self.cold_user_weight_, self.weight_)

    def _candidates(self, u, n, allowed, exclude_seen):
        cand, z_cf, z_cb, cold_i = self._blend_inputs(self.collaborative_, self.content_, u, n, allowed, exclude_seen)
        return _pick(cand, blend(z_cf, z_cb, cold_i, self._weights(u), self.cold_offset_), n)

    def _score(self, u, items):
        z_cf = zscore_rows(self.collaborative_._score(u, items))
        z_cb = zscore_rows(self.content_._score(u, items))
        cold_i = self.collaborative_.item_users_[np.maximum(items, 0)] == 0
        out = blend(z_cf, z_cb, cold_i, self._weights(u), self.cold_offset_)
        return np.where(items >= 0, out, NEG).astype(np.float32)


METHODS = {"popularity": Popularity, "content": ContentBased, "als": Collaborative, "hybrid": Hybrid}


def make(method: str, **params) -> Recommender:
    """A recommender by name: popularity, content, als, bpr or hybrid."""
    if method == "bpr":
        return Collaborative(algorithm="bpr", **params)
    if method not in METHODS:
        raise ParameterError(f"unknown method {method!r}; choose one of {sorted([*METHODS, 'bpr'])}")
    return METHODS[method](**params)
