"""What every vector index of mir shares: track-id strings, input checks, result padding.

Conventions
-----------
- ``ids``: track-id strings (any non-empty ``str``), unique within an index.
- ``vectors``: ``np.ndarray [shape=(n, d)]``, finite, not all-zero; stored and queried
  L2-normalised in float32, so the score is the inner product = cosine similarity in [-1, 1].
- Inside, each id gets a dense ``int64`` label (its position in :attr:`VectorIndex.labels_`,
  never reused; removed labels keep an empty string), which FAISS stores (see :mod:`mir.index.faiss_index`).
- ``search`` returns ``(scores [n, k] float32, ids [n, k] str)`` best first; rows with fewer than
  ``k`` results are padded with score ``-inf`` and id ``""``.
- ``allowed``: an optional collection of track ids a search may return (a filter applied during
  the search, see :mod:`mir.similar.filters` for filters that also keep ``k`` results).
"""
from __future__ import annotations

import math
from itertools import repeat
from typing import Iterable, Sequence

import numpy as np

from ..errors import ParameterError

PAD_ID = ""
PAD_SCORE = -np.inf


def as_ids(ids: Iterable[str], name: str = "ids") -> np.ndarray:
    """Track ids as a 1-d str array; rejects empty or non-str ids."""
    if isinstance(ids, str):
        raise ParameterError(f"{name} must be a sequence of track-id strings, got the single string {ids!r}")
    arr = np.asarray(list(ids), dtype=object)
    for v in arr:
        if not isinstance(v, (str, np.str_)) or not v:
            raise ParameterError(f"{name} must hold non-empty strings, got {v!r}")
    return arr.astype(str) if arr.size else np.zeros(0, dtype="<U1")


def normalized(vectors, *, dim: int | None = None, name: str = "vectors") -> np.ndarray:
    """``vectors`` [shape=(n, d)] (or one vector [d]) as C-contiguous float32 rows of unit L2 norm."""
    x = np.array(vectors, dtype=np.float32, copy=True, order="C", ndmin=2)
    if x.ndim != 2:
        raise ParameterError(f"{name} must have shape (n, d), got shape {x.shape}")
    if dim is not None and x.shape[1] != dim:
        raise ParameterError(f"{name} have dimension {x.shape[1]}, the index has {dim} "
                             "(were they made by another model?)")
    sq = np.einsum("ij,ij->i", x, x, dtype=np.float64)  # squared norms; NaN/inf anywhere in a row -> non-finite
    if len(sq) == 1:  # one query: scalar checks (a few µs less per call than array ones)
        s = float(sq[0])
        if not 0.0 < s < math.inf:  # NaN fails both
            _bad_norms(sq, name)
        x /= np.float64(math.sqrt(s))  # the same float64 division as below
        return x
    if not np.logical_and(sq > 0, sq < np.inf).all():
        _bad_norms(sq, name)
    x /= np.sqrt(sq)[:, None]
    return x


def _bad_norms(sq: np.ndarray, name: str):
    """Raise for the first row whose squared norm ``sq`` is not finite, or is zero."""
    if not np.isfinite(sq).all():
        raise ParameterError(f"{name} contain NaN or infinity (row {int(np.flatnonzero(~np.isfinite(sq))[0])})")
    raise ParameterError(f"{name} row {int(np.flatnonzero(sq == 0)[0])} is all zeros; "
                         "it has no direction to compare")


def _same_ids(a, b) -> bool:
    """Whether two id collections (arrays or sequences) hold the same ids in the same order."""
    if isinstance(a, np.ndarray) and isinstance(b, np.ndarray):
        return a.shape == b.shape and a.dtype == b.dtype and bool((a == b).all())
    try:
        return list(a) == list(b)
    except TypeError:
        return False


def check_k(k) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ParameterError(f"k must be a positive int, got {k!r}")
    return int(k)


class VectorIndex:
    """Base class: the id table and the public methods; subclasses store and search vectors.

    Subclasses implement ``_reset(dim)``, ``_add(labels, x)``, ``_remove(labels) -> bool`` (False if
    the storage cannot delete: the labels then stay as tombstones, skipped by every search),
    ``_search(x, k, allowed_labels, **knobs) -> (scores, labels)``, ``_vectors(labels)``, and storage.
    """

    kind = "base"

    def __init__(self) -> None:
        self.dim_: int | None = None
        self.labels_: np.ndarray = np.zeros(0, dtype="<U1")  # label -> track id ("" once removed)
        self._label_of: dict[str, int] = {}
        self.tombstones_: np.ndarray = np.zeros(0, dtype=np.int64)  # removed labels still stored
        self._allowed_memo = None  # (allowed object, copy of it, its labels): see _allowed_labels

    # --- the id table ------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._label_of)

    @property
    def ids(self) -> np.ndarray:
        """Track ids in the index, in label order."""
        return self.labels_[self.labels_ != PAD_ID]

    def __contains__(self, track_id: str) -> bool:
        return track_id in self._label_of

    def labels_of(self, ids: Sequence[str], *, missing: str = "raise") -> np.ndarray:
        """int64 labels of ``ids``; ``missing="raise"`` or ``"drop"``."""
        seq = ids.tolist() if isinstance(ids, np.ndarray) else list(ids)  # str hashes faster than np.str_
        out = np.fromiter(map(self._label_of.get, seq, repeat(-1)), dtype=np.int64, count=len(seq))
        absent = out < 0
        if absent.any():
            if missing == "raise":
                raise ParameterError(f"track {seq[int(np.flatnonzero(absent)[0])]!r} is not in the index")
            out = out[~absent]
        return out

    def _allowed_labels(self, allowed) -> np.ndarray:
        """``labels_of(allowed, missing="drop")``, remembered for the last ``allowed`` object: callers
        (filtered_search rounds, single queries under one filter) pass the same set again and again,
        and turning 10,000 ids into labels costs ~1 ms. Reused only for the very same object with
        equal contents while the index is unchanged (any build / add / remove forgets it)."""
        memo = self._allowed_memo
        if memo is not None and memo[0] is allowed and _same_ids(memo[1], allowed):
            return memo[2]
        labels = self.labels_of(allowed, missing="drop")
        snapshot = allowed.copy() if isinstance(allowed, np.ndarray) else list(allowed)
        self._allowed_memo = (allowed, snapshot, labels)
        return labels

    def _ids_of_labels(self, labels: np.ndarray, missing: np.ndarray | None = None) -> np.ndarray:
        if not len(self.labels_):
            return np.full(labels.shape, PAD_ID, dtype="<U1")
        missing = labels < 0 if missing is None else missing
        if not missing.any():
            return self.labels_[labels]
        return np.where(missing, PAD_ID, self.labels_[np.where(missing, 0, labels)])

    def _set_table(self, labels: np.ndarray, tombstones: np.ndarray) -> None:
        self._allowed_memo = None
        self.labels_ = labels
        self._label_of = {t: i for i, t in enumerate(labels.tolist()) if t}
        self.tombstones_ = np.asarray(tombstones, dtype=np.int64)

    # --- public API --------------------------------------------------------------------------
    def build(self, ids: Sequence[str], vectors) -> "VectorIndex":
        """Replace the whole content by ``vectors`` [shape=(n, d)] under ``ids``; returns self."""
        ids = as_ids(ids)
        x = normalized(vectors)
        if len(ids) != len(x):
            raise ParameterError(f"got {len(ids)} ids for {len(x)} vectors")
        if len(x) == 0:
            raise ParameterError("cannot build an index from zero vectors (is anything tagged?)")
        self._check_unique(ids, fresh=True)
        self.dim_ = int(x.shape[1])
        self._set_table(np.zeros(0, dtype="<U1"), np.zeros(0, np.int64))
        self._reset(self.dim_, x)
        self._append(ids, x)
        return self

    def add(self, ids: Sequence[str], vectors) -> "VectorIndex":
        """Add new tracks (ids not already present); returns self."""
        if self.dim_ is None:
            return self.build(ids, vectors)
        ids = as_ids(ids)
        x = normalized(vectors, dim=self.dim_)
        if len(ids) != len(x):
            raise ParameterError(f"got {len(ids)} ids for {len(x)} vectors")
        if len(x):
            self._check_writable()
            self._check_unique(ids, fresh=False)
            self._append(ids, x)
        return self

    def remove(self, ids: Sequence[str]) -> int:
        """Remove tracks by id (ids not in the index are ignored); returns how many were removed."""
        labels = self.labels_of(as_ids(ids), missing="drop")
        if labels.size == 0:
            return 0
        self._check_writable()
        self._allowed_memo = None
        labels = np.unique(labels)
        for lab in labels.tolist():
            del self._label_of[self.labels_[lab]]
        self.labels_ = self.labels_.copy()
        self.labels_[labels] = PAD_ID
        if not self._remove(labels):
            self.tombstones_ = np.union1d(self.tombstones_, labels)
            self._tombstones_changed()
        return int(labels.size)

    def search(self, queries, k: int, *, allowed: Iterable[str] | None = None, **knobs) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` best tracks for each query [shape=(n, d)] -> (scores [n, k] float32, ids [n, k] str).

        ``allowed``: only these track ids may be returned (unknown ids are ignored). ``knobs``:
        search-time settings of the index type (``ef_search``, ``nprobe``, ``k_factor``).
        """
        k = check_k(k)
        if self.dim_ is None:
            raise ParameterError("the index is empty: build it first")
        x = normalized(queries, dim=self.dim_, name="queries")
        labels = None  # tombstones are the subclass's to skip
        if allowed is not None:
            labels = self._allowed_labels(allowed if not isinstance(allowed, str) else [allowed])
        scores, found = self._search(x, k, labels, **knobs)
        if found.size and found.min() < 0:  # padding: FAISS may leave any score there
            missing = found < 0
            return np.where(missing, PAD_SCORE, scores).astype(np.float32), self._ids_of_labels(found, missing)
        return scores.astype(np.float32, copy=False), self.labels_[found]  # every label is >= 0 here

    def vectors(self, ids: Sequence[str]) -> np.ndarray:
        """Stored (unit) vectors of ``ids`` [shape=(m, d)] float32 (approximate for compressed types)."""
        labels = self.labels_of(as_ids(ids))
        if labels.size == 0:
            return np.zeros((0, self.dim_ or 0), np.float32)
        return np.asarray(self._vectors(labels), dtype=np.float32)

    def _live_labels(self) -> np.ndarray:
        return np.flatnonzero(self.labels_ != PAD_ID).astype(np.int64)

    # --- helpers -----------------------------------------------------------------------------
    def _append(self, ids: np.ndarray, x: np.ndarray) -> None:
        start = len(self.labels_)
        labels = np.arange(start, start + len(ids), dtype=np.int64)
        width = max(self.labels_.dtype.itemsize // 4, max((len(t) for t in ids.tolist()), default=1))
        self.labels_ = np.concatenate([self.labels_.astype(f"<U{width}"), ids.astype(f"<U{width}")])
        self._label_of.update(zip(ids.tolist(), labels.tolist()))
        self._allowed_memo = None
        self._add(labels, x)

    def _check_unique(self, ids: np.ndarray, *, fresh: bool) -> None:
        uniq, counts = np.unique(ids, return_counts=True)
        if (counts > 1).any():
            raise ParameterError(f"track id {uniq[counts > 1][0]!r} appears {counts.max()} times; ids must be unique")
        if not fresh:
            dup = [t for t in ids.tolist() if t in self._label_of]
            if dup:
                raise ParameterError(f"track {dup[0]!r} is already in the index ({len(dup)} given ids are); "
                                     "remove it first to replace its vector")

    def params(self) -> dict:
        """Construction and search parameters (what a saved manifest records)."""
        return {}

    # --- to implement ------------------------------------------------------------------------
    def _reset(self, dim: int, train: np.ndarray) -> None:
        raise NotImplementedError

    def _add(self, labels: np.ndarray, x: np.ndarray) -> None:
        raise NotImplementedError

    def _remove(self, labels: np.ndarray) -> bool:
        raise NotImplementedError

    def _search(self, x: np.ndarray, k: int, allowed: np.ndarray | None, **knobs):
        raise NotImplementedError

    def _vectors(self, labels: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _check_writable(self) -> None:
        """Raise if the index cannot change (e.g. loaded memory-mapped)."""

    def _tombstones_changed(self) -> None:
        """Called after removals left tombstones (a subclass may compact)."""

    def is_exhaustive(self, *, n_allowed: int | None = None, **knobs) -> bool:
        """Whether a search with these knobs (and an ``allowed`` set of ``n_allowed`` live tracks, if
        given) considers every vector it may return (exact results)."""
        return True

    def widened(self, level: int) -> dict:
        """Search knobs ``2**level`` times wider than the defaults (used to keep k results under filters)."""
        return {}
