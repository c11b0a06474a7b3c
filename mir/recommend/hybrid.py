"""The default recommender ``hybrid``: "popularity × personal affinity", blended with ALS.

``b_t + theta_u · phi_t`` (an item bias learned from every user's plays plus the user's taste over
the track features, :mod:`mir.recommend.affinity`), standardised per user and added to ``w ·`` the
standardised ALS score; the ALS weight and the never-played-track offset are tuned on a validation
split of the training events. Cold-start users get :class:`~mir.recommend.content_taste.ContentTaste`
lists (or the taste part alone).

Lists: up to 2,000 tracks every catalogue track is scored for a block of users (dense ``[users,
n_items]``); above, the same blend is ranked as inner products (:mod:`mir.recommend.blend_topk`: the
standardisation in closed form, exact top-k by norm pruning), for the validation and for the lists.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from ..errors import ParameterError
from ..topk import top_k
from . import affinity, taste_cells
from ._base import Recommender, clone
from .arrays import NEG, mask_unwanted, zscore_rows
from .blend_topk import BlendIndex, merge
from .content_taste import ContentTaste, dense_topk, fit_settings
from .methods import Collaborative
from .tune import relevance_credit, validation_split

ALS_WEIGHTS = (0.0, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5)
OFFSETS = (0.0, 0.25, -0.25, 0.5, -0.5, -0.75, -1.0, 1.0, -1.5, -2.0, -3.0)  # mildest first


def first_plays(X):
    """[n_users, n_items] CSR, the pattern of ``X.matrix()``: each (user, track)'s first play as its rank in
    the user's events by time (ties: input order), for :func:`~mir.recommend.affinity.fit_taste_model`'s
    ``first_play``."""
    order = np.lexsort((np.arange(len(X)), X.timestamp, X.user_idx))
    rank = np.empty(len(X), np.float64)
    rank[order] = np.arange(1, len(X) + 1)
    key = X.user_idx.astype(np.int64) * X.n_items + X.item_idx
    uniq, inv = np.unique(key, return_inverse=True)
    best = np.full(len(uniq), np.inf)
    np.minimum.at(best, inv, rank)
    out = sp.csr_matrix((best, (uniq // X.n_items, uniq % X.n_items)), shape=(X.n_users, X.n_items))
    out.sort_indices()
    return out


class Hybrid(Recommender):
    """``z(b_t + theta_u · phi_t) + w · z(ALS)`` per user (z: standardised over the catalogue).

    The taste part is :func:`mir.recommend.affinity.fit_tastes` with item biases (learned from
    every user's plays: the popularity prior of a track). Never-played tracks (cold-start tracks)
    have no learned bias nor ALS factors: their bias is the median bias of played tracks, their
    ALS term is replaced by the taste term, and ``cold_offset`` is added (``"match"``: the offset
    of ``OFFSETS`` whose validation lists hold never-played tracks at the rate they make up of the
    relevant held-out items; a number: as given). ``weight``: the ALS weight ``w`` ("auto": the
    best validation recall@``tune_k`` over ``grid``). Users with 1 to ``cold_user_plays`` plays
    (cold-start users) get ``cold_users="content"`` (default): a purely content list
    (:class:`ContentTaste`), or ``"prior"``: the taste part alone (their few plays move the
    population's taste, the item bias acts as a popularity prior: more recall on the demo, but not
    content-based). ``collaborative``: the ALS part (default
    ``Collaborative()``, its settings chosen on the same validation split). ``iterations``,
    ``ridge``, ``tol``: the taste fits' (:func:`~mir.recommend.affinity.fit_taste_model`; ``iterations``
    "auto": 20 rounds at most for the exact fit, 10 over cells); the final
    taste fit on all events starts from the validation fit's tastes, biases and prior and runs at
    most ``refit_iterations`` rounds (None or "auto": ``iterations``; fewer is faster: 5 cost 0.004 recall
    on the demo). ``picks``: ``"sequential"`` (default) fits the taste part with each user's tracks as draws
    without replacement in first-play order (:func:`first_plays`), ``"independent"`` as independent
    draws; ``bias_l2``: the item biases' L2. On the demo's validation split (inside the training events)
    sequential with ``bias_l2=0.1`` gained +0.016 and +0.011 recall@50 over independent with 1.0 (holdouts
    0.2 / 0.3, paired SE 0.008); on the demo's test split 0.437 against 0.425. ``taste_fit``, ``cells``, ``threads``,
    ``scheduler``: both taste fits exact or over cells of tracks (:func:`~mir.recommend.taste_cells.fit_taste`;
    ``"auto"``: exact up to 2,000 tracks; the cells are made once for all fits), their blocks of users on
    threads or a Dask cluster. ``content_users``: the cold users' content model is fitted on them and a
    seeded sample of this many other users (the prior's estimate; the others get the prior mean, unused
    by their lists); None: on every user. ``scoring``: ``"dense"`` (every track for a block of users),
    ``"blend"`` (:class:`~mir.recommend.blend_topk.BlendIndex`: inner products, norm-pruned exact top-k, no
    ``[users, tracks]`` matrix; equal up to float32 rounding) or ``"auto"``: dense up to 2,000 tracks.
    """

    name = "hybrid"
    needs_tracks = True

    def __init__(self, collaborative: Recommender | None = None, weight: float | str = "auto",
                 cold_offset: float | str = "match", cold_users: str = "content", cold_user_plays: int = 3,
                 iterations: int | str = "auto", ridge: float = 1e-2, validation: float = 0.2, tune_k: int = 50,
                 grid: tuple = ALS_WEIGHTS, cold_grid: tuple = OFFSETS, max_tune_users: int = 5000,
                 random_state: int = 0, tol: float = 1e-4, refit_iterations: int | str | None = "auto",
                 picks: str = "sequential", bias_l2: float = 0.1, taste_fit: str = "auto", cells: int | str = "auto",
                 threads: int = 1, scheduler: str | None = None, content_users: int | None = 5000,
                 scoring: str = "auto"):
        self.collaborative = collaborative
        self.weight = weight
        self.cold_offset = cold_offset
        self.cold_users = cold_users
        self.cold_user_plays = cold_user_plays
        self.iterations = iterations
        self.ridge = ridge
        self.validation = validation
        self.tune_k = tune_k
        self.grid = grid
        self.cold_grid = cold_grid
        self.max_tune_users = max_tune_users
        self.random_state = random_state
        self.tol = tol
        self.refit_iterations = refit_iterations
        self.picks = picks
        self.bias_l2 = bias_l2
        self.taste_fit = taste_fit
        self.cells = cells
        self.threads = threads
        self.scheduler = scheduler
        self.content_users = content_users
        self.scoring = scoring

    # --- fitting ---------------------------------------------------------------------------------------
    def _check(self) -> None:
        if self.picks not in ("independent", "sequential"):
            raise ParameterError(f"picks must be 'independent' or 'sequential', got {self.picks!r}")
        if self.cold_users not in ("prior", "content"):
            raise ParameterError(f"cold_users must be 'prior' or 'content', got {self.cold_users!r}")
        for name in ("iterations", "refit_iterations"):
            v = getattr(self, name)
            if not (v == "auto" or (v is None and name == "refit_iterations")
                    or (not isinstance(v, (str, bool)) and int(v) >= 1)):
                raise ParameterError(f"{name} must be >= 1 or 'auto', got {v!r}")
        if not (self.weight == "auto" or (not isinstance(self.weight, str) and float(self.weight) >= 0)):
            raise ParameterError(f"weight must be a number >= 0 or 'auto', got {self.weight!r}")
        if isinstance(self.cold_offset, str) and self.cold_offset != "match":
            raise ParameterError(f"cold_offset must be a number or 'match', got {self.cold_offset!r}")
        if self.scoring not in ("auto", "dense", "blend"):
            raise ParameterError(f"scoring must be 'auto', 'dense' or 'blend', got {self.scoring!r}")
        if self.content_users is not None and int(self.content_users) < 1:
            raise ParameterError(f"content_users must be >= 1 or None, got {self.content_users!r}")

    def _fit_parts(self, X, tracks, cf, *, content: bool = True, init=None) -> tuple[dict, affinity.Tastes]:
        """Fitted state of every part on ``X`` (a dict of the learned attributes) and the taste fit.
        ``content``: fit the cold users' :class:`ContentTaste` too; ``init``: a taste fit to start from."""
        Phi = affinity.track_features(tracks).astype(np.float32)
        seen = X.matrix()
        first, refit = self._rounds(len(Phi))
        rounds = first if init is None else refit
        fit = taste_cells.fit_taste(seen, Phi, item_bias=True, iterations=rounds, ridge=self.ridge,
                                    bias_l2=self.bias_l2, tol=self.tol, init=init,
                                    first_play=first_plays(X) if self.picks == "sequential" else None,
                                    **self._fit_settings(Phi))
        theta, b = fit.theta, fit.b.copy()
        never = np.asarray(seen.sum(axis=0)).ravel() == 0
        if never.any() and (~never).any():
            b[never] = np.median(b[~never])
        state = {"features_": Phi, "theta_": theta.astype(np.float32), "bias_": b.astype(np.float32),
                 "never_played_": never, "rounds_": fit.rounds}
        if self.weight == "auto" or float(self.weight) > 0:
            state["collaborative_"] = cf.fit(X, tracks) if cf is not None else Collaborative().fit(X, tracks)
        if content and self.cold_users == "content":
            state["content_"] = self._fit_content(X, tracks, seen)
        return state, fit

    def _rounds(self, n_items: int) -> tuple[int, int]:
        """At most how many rounds the first taste fit and the final one (from the first's result) run."""
        exact = taste_cells.is_exact(n_items, self.taste_fit, self.cells)
        first = (20 if exact else 10) if self.iterations == "auto" else int(self.iterations)
        return first, first if self.refit_iterations in (None, "auto") else int(self.refit_iterations)

    def _fit_settings(self, Phi) -> dict:
        """The taste fits' settings, with the cells made once per fit of the hybrid."""
        out = fit_settings(self)
        if getattr(self, "_cells", None) is None:
            self._cells = taste_cells.cells_for(Phi, self.taste_fit, self.cells)
        out["cells"] = self._cells
        return out

    def _fit_content(self, X, tracks, seen) -> ContentTaste:
        """The cold users' :class:`ContentTaste`, fitted on them and ``content_users`` others (every user when
        that is all of them); users left out get the prior mean."""
        model = ContentTaste(self._rounds(len(tracks))[0], self.ridge, self.tol, self.taste_fit, self._cells, self.threads,
                             self.scheduler)
        plays = np.asarray(seen.sum(axis=1)).ravel()
        cold = np.flatnonzero((plays > 0) & (plays <= self.cold_user_plays))
        others = np.setdiff1d(np.flatnonzero(plays > 0), cold)
        if self.content_users is None or len(others) <= int(self.content_users):
            model.fit(X, tracks)
            model.cells = self.cells
            return model
        g = np.random.default_rng(self.random_state)
        keep = np.union1d(cold, g.choice(others, int(self.content_users), replace=False))
        pos = np.full(X.n_users, -1, np.int64)
        pos[keep] = np.arange(len(keep))
        ev = pos[X.user_idx] >= 0
        sub = type(X)(X.users[keep], X.items, pos[X.user_idx[ev]].astype(np.int32), X.item_idx[ev], X.timestamp[ev],
                      X.plays[ev])
        model.fit(sub, tracks)
        model.cells = self.cells  # a parameter again (JSON), not the cells made for this fit
        theta = np.repeat(model.prior_mean_[None, :], X.n_users, axis=0)
        theta[keep] = model.theta_
        model.theta_ = theta
        model.users_, model.seen_, model.user_plays_ = np.asarray(X.users, str), seen, plays.astype(np.float64)
        return model

    def _fit(self, X, tracks) -> None:
        self._check()
        self._cells, self._blend = None, {}
        cf = clone(self.collaborative) if self.collaborative is not None else Collaborative()
        split = validation_split(X, self.validation, max_users=self.max_tune_users, random_state=self.random_state)
        cf_tuning = None
        if isinstance(cf, Collaborative) and cf._auto():  # choose the ALS settings once, on this split
            settings, cf_tuning = cf.search(split, tracks)
            for name, value in settings.items():
                setattr(cf, name, value)
        self.weight_ = 0.0 if self.weight == "auto" else float(self.weight)
        self.cold_offset_ = 0.0 if isinstance(self.cold_offset, str) else float(self.cold_offset)
        self.cold_share_target_ = float("nan")
        self.tuning_ = np.zeros((0, 4))
        warm = None
        if len(split.users) and (self.weight == "auto" or self.cold_offset == "match"):
            warm = self._tune(split, tracks, clone(cf))
        for k, v in self._fit_parts(X, tracks, cf, init=warm)[0].items():
            setattr(self, k, v)
        self._blend = {}
        if cf_tuning is not None and hasattr(self, "collaborative_"):  # the ALS search's rows, for reports
            self.collaborative_.tuning_ = cf_tuning

    def _tune(self, split, tracks, cf) -> affinity.Tastes:
        """Choose ``weight_`` then ``cold_offset_`` on ``split``; ``tuning_`` rows: ``[weight, offset,
        recall@tune_k, never-played share of the lists]`` (warm validation users). Returns the taste
        fit on ``split.train`` (the final fit starts from it). The cold users' content model is not
        fitted here: only warm users are validated."""
        saved = dict(vars(self))
        state, fit = self._fit_parts(split.train, tracks, cf, content=False)
        for k, v in state.items():
            setattr(self, k, v)
        self.seen_ = split.train.matrix()
        self.user_plays_ = np.asarray(self.seen_.sum(axis=1)).ravel()
        users = split.users[self.user_plays_[split.users] > self.cold_user_plays]
        weights = [float(w) for w in self.grid] if self.weight == "auto" else [self.weight_]
        offsets = [float(c) for c in self.cold_grid] if self.cold_offset == "match" else [self.cold_offset_]
        rows = [(w, offsets[0], *r) for w, r in zip(weights, self._validate(users, split.relevant,
                                                                             [(w, offsets[0]) for w in weights]))]
        best_w = rows[int(np.argmax([r[2] for r in rows]))][0] if rows else self.weight_
        rel = np.concatenate([split.relevant[int(x)] for x in split.users])
        target = float(np.mean(self.never_played_[rel])) if len(rel) else 0.0
        best_c = offsets[0]
        if len(offsets) > 1:
            at = [(c, *r) for c, r in zip(offsets, self._validate(users, split.relevant, [(best_w, c) for c in offsets]))]
            rows += [(best_w, *r) for r in at[1:]]
            best_c = at[int(np.argmin([abs(r[2] - target) for r in at]))][0]
        cells = self._cells
        vars(self).clear()
        vars(self).update(saved)
        self._cells, self._blend = cells, {}
        self.weight_, self.cold_offset_, self.cold_share_target_ = best_w, best_c, target
        self.tuning_ = np.array(rows, np.float64).reshape(-1, 4)
        return fit

    def _validate(self, users, relevant, settings) -> list[tuple[float, float]]:
        """(mean recall@tune_k, never-played share of the lists) of warm ``users`` at each ``(weight,
        offset)`` of ``settings`` (the score parts are computed once per block of users)."""
        with_cf = any(w > 0 for w, _ in settings)
        hits, never, total = np.zeros(len(settings)), np.zeros(len(settings)), np.zeros(len(settings))
        for lo in range(0, len(users), 512):
            u = users[lo:lo + 512]
            for i, items in enumerate(self._settings_lists(u, settings, with_cf)):
                hits[i] += float(relevance_credit(items, u, relevant, len(self.never_played_)).sum())
                ok = items >= 0
                never[i] += int(self.never_played_[items[ok]].sum())
                total[i] += int(ok.sum())
        return [(h / max(len(users), 1), nv / max(t, 1)) for h, nv, t in zip(hits, never, total)]

    def _settings_lists(self, u, settings, with_cf: bool):
        """Warm users ``u``'s top ``tune_k`` (played tracks excluded) at each ``(weight, offset)``, in order."""
        if not self._blended():
            with affinity.one_blas_thread():
                z, zc = self._warm_parts(u, with_cf)
            for w, c in settings:
                S = self._combine(z, zc, w, c).astype(np.float32)
                mask_unwanted(S, self.seen_, u, None, True)
                yield top_k(S, self.tune_k)[1]
            return
        index, k = self._blend_index(with_cf), self.tune_k
        with self._blas():
            # never-played tracks rank by the taste term alone whatever (w, c): (1 + w) z + c
            ni, nz = index.topk_never(self._queries(index, u, 0.0, 0.0, with_cf), k)
            played = {}
            for w, c in settings:
                if w not in played:
                    played[w] = index.topk_played(self._queries(index, u, w, 0.0, with_cf), k, u)
                yield merge(*played[w], ni, ((1.0 + w) * nz + c).astype(np.float32), k)[0]

    # --- scoring as inner products (catalogues above 2,000 tracks) ------------------------------------
    def _blended(self) -> bool:
        return self.scoring == "blend" or (self.scoring == "auto" and len(self.never_played_) > 2000)

    def _blas(self):
        from threadpoolctl import threadpool_limits

        return threadpool_limits(max(1, int(self.threads)), "blas")

    def _blend_index(self, with_cf: bool) -> BlendIndex:
        """The fitted parts as a :class:`BlendIndex` (with the ALS factors when ``with_cf``), made once."""
        cache = vars(self).setdefault("_blend", {})
        if with_cf not in cache:
            V = np.hstack([self.bias_[:, None], self.features_]).astype(np.float64)
            Y = self.collaborative_.item_factors_ if with_cf else None
            cache[with_cf] = BlendIndex(V, Y, self.never_played_, self.seen_)
        return cache[with_cf]

    def _queries(self, index: BlendIndex, u, w: float, c: float, with_cf: bool):
        """Users ``u``'s queries at weight ``w`` and offset ``c``; cold-start users get their own lists."""
        u = np.asarray(u, np.int64)
        q = np.hstack([np.ones((len(u), 1)), self.theta_[u].astype(np.float64)])
        w_u, c_u = np.full(len(u), float(w)), np.full(len(u), float(c))
        cold = self.user_plays_[u] <= self.cold_user_plays
        if cold.any():  # the taste part alone, or the content model (no bias)
            w_u[cold], c_u[cold] = 0.0, 0.0
            if self.cold_users == "content":
                q[cold, 0] = 0.0
                q[cold, 1:] = self.content_.theta_[u[cold]]
        x = self.collaborative_.user_factors_[u].astype(np.float64) if with_cf and w > 0 else None
        return index.queries(q, x, w_u, c_u)

    def __getstate__(self):  # Dask ships the model: the made cells and blend index are rebuilt where needed
        state = dict(vars(self))
        state.pop("_blend", None)
        state.pop("_cells", None)
        return state

    # --- scoring ---------------------------------------------------------------------------------------
    def _warm_parts(self, u, with_cf: bool):
        """Users ``u``'s standardised taste scores and ALS scores (the taste scores on never-played tracks)."""
        z = zscore_rows(affinity.scores(self.theta_[u], self.features_, self.bias_))
        if not with_cf:
            return z, None
        cf, played = self.collaborative_, ~self.never_played_
        z_cf = zscore_rows(cf.user_factors_[u] @ cf.item_factors_.T, played)
        return z, np.where(played, z_cf, z)

    def _combine(self, z, zc, w, c):
        """``z + w zc`` plus the offset ``c`` on never-played tracks."""
        if w > 0:
            z = z + w * zc
        return z + np.where(self.never_played_, c, 0.0)

    def _dense(self, u):
        u = np.asarray(u, np.int64)
        z = self._combine(*self._warm_parts(u, self.weight_ > 0), self.weight_, self.cold_offset_)
        cold = self.user_plays_[u] <= self.cold_user_plays
        if cold.any():
            if self.cold_users == "content":
                z[cold] = zscore_rows(self.content_._dense(u[cold]))
            else:
                z[cold] = zscore_rows(affinity.scores(self.theta_[u[cold]], self.features_, self.bias_))
        return z.astype(np.float32)

    def _candidates(self, u, n, allowed, exclude_seen):
        if not self._blended():
            return dense_topk(self, u, n, allowed, exclude_seen)
        with_cf = self.weight_ > 0
        index = self._blend_index(with_cf)
        with self._blas():
            Q = self._queries(index, u, self.weight_, self.cold_offset_, with_cf)
            return index.topk(Q, n, np.asarray(u, np.int64), exclude_seen=exclude_seen, allowed=allowed)

    def _score(self, u, items):
        if self._blended():
            with_cf = self.weight_ > 0
            index = self._blend_index(with_cf)
            return index.score(self._queries(index, u, self.weight_, self.cold_offset_, with_cf), items)
        S = self._dense(u)
        out = np.take_along_axis(S, np.maximum(items, 0), axis=1)
        return np.where(items >= 0, out, NEG).astype(np.float32)
