"""The basic recommenders: popularity, content-based (embeddings), collaborative (implicit ALS).

All follow the scikit-learn contract (``__init__`` stores hyper-parameters, ``fit`` returns
``self``, learned state ends in ``_``) and the two-step scoring of :mod:`mir.recommend._base`.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..errors import ParameterError
from . import taste
from ._base import Recommender, clone
from .arrays import NEG, dedupe_rows, gather_rows, max_seen, pick, seen_mask
from .exact_topk import NormOrder, mips_topk, mixture_topk
from .tune import successive_halving, validation_split


class Popularity(Recommender):
    """Most played tracks first (counted in distinct users); the same list for everyone."""

    name = "popularity"

    def __init__(self):
        pass

    def _fit(self, interactions, tracks) -> None:
        pass

    def _candidates(self, u, n, allowed, exclude_seen):
        extra = max_seen(self.seen_, u) if exclude_seen else 0
        top, _ = self._popular(1, n + extra, allowed)
        cand = np.broadcast_to(top, (len(u), top.shape[1])).copy()
        scores = self._score(u, cand)
        if exclude_seen:
            scores[seen_mask(self.seen_, u, cand)] = NEG
        return pick(cand, scores, n)

    def _score(self, u, items):
        pop = np.log1p(self.item_users_.astype(np.float32))
        return np.where(items >= 0, pop[np.maximum(items, 0)], NEG).astype(np.float32)


class ContentBased(Recommender):
    """Tracks close in embedding space to what the user played.

    A user's history becomes up to ``n_tastes`` taste vectors (see :mod:`mir.recommend.taste`:
    plays and recency weighting, ``half_life_days``; one cluster per ``min_tracks`` distinct
    tracks). Items are ranked under the user's taste mixture (``temperature``), so several tastes
    share the list by their weight. ``index`` None: exact blocked scan of the catalogue
    (:func:`~mir.recommend.exact_topk.mixture_topk`); a :func:`mir.index.make_index` type ("flat",
    "hnsw", "auto", a FAISS factory string): each taste searches that index for candidates,
    scored exactly (equal to the scan with "flat"; HNSW may miss a few), or :meth:`use_index`.
    """

    name = "content"
    needs_tracks = True

    def __init__(self, n_tastes: int = 3, min_tracks: int = 5, half_life_days: float | None = 180.0,
                 temperature: float = 0.1, index: str | None = None):
        self.n_tastes = n_tastes
        self.min_tracks = min_tracks
        self.half_life_days = half_life_days
        self.temperature = temperature
        self.index = index

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
        self._index = None  # a refit starts from a fresh vector index

    def _candidates(self, u, n, allowed, exclude_seen):
        seen = self.seen_ if exclude_seen else None
        if self.index is None:
            return mixture_topk(self.tastes_[u], self.shares_[u], self.embeddings_, n, self.temperature,
                                seen=seen, users=u, allowed=allowed)
        return self._index_candidates(u, n, allowed, seen)

    # --- candidates from a vector index (mir.index) ---------------------------------------------------
    def vector_index(self):
        """The :mod:`mir.index` index over the catalogue used when ``index`` is set (built on first use)."""
        idx = getattr(self, "_index", None)
        if idx is None:
            from ..index import make_index

            idx = make_index(None if self.index == "auto" else self.index)
            idx.build(list(self.items_), self.embeddings_)
            self.use_index(idx)
        return self._index

    def use_index(self, index) -> "ContentBased":
        """Search ``index`` (a :class:`mir.index.VectorIndex` holding every catalogue track, e.g. a
        library's ``open_library_index(lib).index``) for candidates instead of building one."""
        missing = int((~np.isin(self.items_, np.asarray(index.ids, dtype=str))).sum())
        if missing:
            raise ParameterError(f"the vector index lacks {missing} of the {len(self.items_)} catalogue tracks; "
                                 "update it (`mir index update LIB`)")
        self._index, self._index_pos = index, pd.Index(self.items_)
        return self

    def _index_candidates(self, u, n, allowed, seen):
        """Per-taste index search of ``K`` neighbours, merged and scored exactly under the mixture; ``K``
        doubles for users whose mixture bound on unseen items (from each taste's K-th similarity) still
        reaches their n-th best, so with an exact index (flat) the lists equal the exact scan's."""
        index, N = self.vector_index(), len(self.items_)
        n = min(n, N)
        allowed_ids = None if allowed is None else self.items_[allowed]
        items = np.full((len(u), n), -1, np.int64)
        scores = np.full((len(u), n), NEG, np.float32)
        todo = np.arange(len(u))
        K = min(N, n + (max_seen(self.seen_, u) if seen is not None else 0))
        while len(todo):
            uu = u[todo]
            active = self.shares_[uu] > 0
            sims, ids = index.search(self.tastes_[uu][active], K, allowed=allowed_ids)
            pos = self._index_pos.get_indexer(ids.ravel()).reshape(ids.shape)
            cand = np.full((len(uu), self.n_tastes, K), -1, np.int64)
            cand[active] = pos
            kth = np.full((len(uu), self.n_tastes, 1), NEG, np.float32)
            kth[active] = np.where(pos[:, -1:] >= 0, sims[:, -1:], NEG)
            cand = dedupe_rows(cand.reshape(len(uu), -1))
            sc = self._score(uu, cand)
            if seen is not None:
                sc[seen_mask(self.seen_, uu, cand)] = NEG
            it, vs = pick(cand, sc, n)
            items[todo], scores[todo] = it, vs
            bound = taste.mixture_scores(kth, self.shares_[uu], self.temperature)[:, 0]
            more = (bound > np.where(np.isfinite(vs[:, -1]), vs[:, -1], NEG)) & np.isfinite(bound)
            if K >= N:
                break
            todo, K = todo[more], min(N, 2 * K)
        return items, scores

    def __getstate__(self):  # Dask ships the model: a built vector index is rebuilt on the worker
        state = dict(vars(self))
        state.pop("_index", None)
        state.pop("_index_pos", None)
        return state

    def _score(self, u, items):
        E = gather_rows(self.embeddings_, items)  # [b, c, d]
        sims = np.einsum("btd,bcd->btc", self.tastes_[u], E)
        out = taste.mixture_scores(sims, self.shares_[u], self.temperature)
        return np.where(items >= 0, out, NEG).astype(np.float32)


AUTO = "auto"
ALS_GRID = {"factors": (16, 32, 64), "regularization": (0.05, 5.0, 50.0), "alpha": (1.0, 8.0)}
FALLBACK = {"factors": 32, "regularization": 5.0, "alpha": 1.0}  # no validation users to choose by
SETTINGS = ("factors", "regularization", "alpha")


class Collaborative(Recommender):
    """Implicit-feedback matrix factorisation: alternating least squares of the ``implicit`` library.

    Confidence of a (user, track) pair is ``1 + alpha * log(1 + plays)``. ``implicit`` learns the
    factors; candidates are the exact top-k by inner product over the whole catalogue
    (:func:`~mir.recommend.exact_topk.mips_topk`, played and filtered items excluded).

    ``factors``, ``regularization`` and ``alpha`` set to ``"auto"`` (the default) are chosen for
    ALS on a temporal validation split of the training events (``validation``, recall@``tune_k``
    over at most ``max_tune_users`` users): successive halving over ``ALS_GRID``
    (:func:`mir.recommend.tune.successive_halving`); explicit values are kept. The chosen values
    are ``factors_``, ``regularization_``, ``alpha_``; ``tuning_`` rows are
    ``[factors, regularization, alpha, user share, recall]``.
    """

    name = "als"

    def __init__(self, factors: int | str = AUTO, regularization: float | str = AUTO, alpha: float | str = AUTO,
                 iterations: int = 15, random_state: int = 0, num_threads: int = 0,
                 validation: float = 0.2, tune_k: int = 50, max_tune_users: int = 5000):
        self.factors = factors
        self.regularization = regularization
        self.alpha = alpha
        self.iterations = iterations
        self.random_state = random_state
        self.num_threads = num_threads
        self.validation = validation
        self.tune_k = tune_k
        self.max_tune_users = max_tune_users

    # --- hyper-parameters: explicit or chosen on validation ---------------------------------------------
    def _auto(self) -> list[str]:
        """The settings left to the validation search, after checking the explicit ones."""
        auto = []
        for name in SETTINGS:
            v = getattr(self, name)
            if isinstance(v, str) and v == AUTO:
                auto.append(name)
                continue
            ok = (isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 1) if name == "factors" \
                else (isinstance(v, (int, float, np.number)) and not isinstance(v, bool) and v >= 0)
            if not ok:
                what = "a positive int" if name == "factors" else "a number >= 0"
                raise ParameterError(f"{name} must be {what} or 'auto', got {v!r}")
        return auto

    def setting(self, name: str):
        """The value of ``factors``, ``regularization`` or ``alpha`` in use (chosen by fit when "auto")."""
        v = getattr(self, name + "_", None)
        if v is None:
            v = getattr(self, name)
        if isinstance(v, str):
            raise ParameterError(f"{name} is {v!r}: fit the model first so that it is chosen")
        return v

    def search(self, split, tracks=None) -> tuple[dict, np.ndarray]:
        """Settings for the "auto" ones on a :class:`~mir.recommend.tune.ValidationSplit`: ``(all three
        settings, tuning rows)``; the explicit settings are passed through unchanged."""
        auto = self._auto()
        fixed = {n: getattr(self, n) for n in SETTINGS if n not in auto}
        if not auto or len(split.users) == 0:
            return {**fixed, **{n: FALLBACK[n] for n in auto}}, np.zeros((0, 5))
        grid = [dict(zip(auto, vals)) for vals in np.array(np.meshgrid(*[ALS_GRID[n] for n in auto],
                                                                       indexing="ij")).reshape(len(auto), -1).T]
        grid = [{n: (int(v) if n == "factors" else float(v)) for n, v in g.items()} for g in grid]

        def fit(config, train):
            m = clone(self)
            for n, v in {**fixed, **config}.items():
                setattr(m, n, v)
            if len(train) < 200_000:  # thread start-up costs more than it saves on small data
                m.num_threads = 1
            return m.fit(train)

        best, rows = successive_halving(grid, fit, split, self.tune_k)
        table = np.array([[{**fixed, **c}[n] for n in SETTINGS] + [share, score] for c, share, score in rows], float)
        return {**fixed, **best}, table.reshape(-1, 5)

    def _new(self):
        from threadpoolctl import threadpool_limits

        import warnings

        with threadpool_limits(1, "blas"), warnings.catch_warnings():
            # implicit warns about BLAS threads when a model is made; fit runs under a 1-thread limit
            warnings.filterwarnings("ignore", message=".*BLAS is configured", category=RuntimeWarning)
            return self._make()

    def _make(self):
        """The unfitted ``implicit`` model (a subclass may return another factorisation with the same interface)."""
        from implicit.cpu.als import AlternatingLeastSquares

        return AlternatingLeastSquares(factors=self.setting("factors"), regularization=self.setting("regularization"),
                                       iterations=self.iterations, random_state=self.random_state,
                                       num_threads=self.num_threads, calculate_training_loss=False)

    def confidence(self, X):
        C = X.copy()
        C.data = (1.0 + self.setting("alpha") * np.log1p(C.data)).astype(np.float32)
        return C

    def _fit(self, X, tracks) -> None:
        from threadpoolctl import threadpool_limits

        for name in SETTINGS:  # a refit chooses again
            setattr(self, name + "_", None)
        chosen, self.tuning_ = {n: getattr(self, n) for n in SETTINGS}, np.zeros((0, 5))
        if self._auto():
            split = validation_split(X, self.validation, max_users=self.max_tune_users, random_state=self.random_state)
            chosen, self.tuning_ = self.search(split, tracks)
        self.factors_, self.regularization_, self.alpha_ = (chosen[n] for n in SETTINGS)
        model = self._new()
        with threadpool_limits(1, "blas"):  # implicit parallelises itself; nested BLAS threads slow it down
            model.fit(self.confidence(self.seen_), show_progress=False)
        self.user_factors_ = np.ascontiguousarray(model.user_factors, dtype=np.float32)
        self.item_factors_ = np.ascontiguousarray(model.item_factors, dtype=np.float32)
        self._model, self._order = model, None

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
        state.pop("_order", None)
        return state

    def norm_order(self) -> NormOrder:
        """Item factors by decreasing norm, for the exact pruned top-k (built once per fitted model)."""
        order = getattr(self, "_order", None)
        if order is None:
            order = self._order = NormOrder(self.item_factors_)
        return order

    def _candidates(self, u, n, allowed, exclude_seen):
        # exact top-n over the whole catalogue (mir.recommend.exact_topk.mips_topk), not implicit's recommend:
        # same lists, faster (norm-ordered pruning, in-place masking of played items, no per-user loop)
        return mips_topk(self.user_factors_[u], self.norm_order(), n, seen=self.seen_ if exclude_seen else None,
                         users=u, allowed=allowed)

    def _score(self, u, items):
        out = np.einsum("bf,bcf->bc", self.user_factors_[u], gather_rows(self.item_factors_, items))
        return np.where(items >= 0, out, NEG).astype(np.float32)
