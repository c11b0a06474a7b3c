"""A FAISS index behind the :class:`~mir.index.base.VectorIndex` interface.

Any FAISS factory string is accepted (``"Flat"``, ``"HNSW32,Flat"``, ``"IVF1024,PQ64x8,RFlat"``,
…); the index is built with the inner-product metric; its int64 ids are the labels of the id
table: IVF types store them natively (with a hash-table direct map, so they can delete and
reconstruct); every other type stores by position and a NumPy array maps positions to labels
(what ``IndexIDMap2`` does, without its per-call OpenMP region, which costs milliseconds per
single query on a busy machine; see benchmarks/similarity.py). :func:`choose_factory` picks a
type by collection size.

Removal: types that can delete (Flat, IVF) delete; the others (HNSW, refine) keep the removed
labels as tombstones that every search skips through an ``IDSelector``, and :meth:`FaissIndex.compact`
(called automatically once tombstones pass :data:`COMPACT_FRACTION`) rebuilds them from their
stored vectors.

Filters: an ``allowed`` set of at most :meth:`FaissIndex.subset_exact_max` tracks is searched by
brute force over its stored vectors (exact for flat storage and the RFlat re-rank; decoded codes for
other compressed types), larger sets through the index with an ``IDSelector``.

Search-time knobs (keyword arguments of ``search`` or the constructor):
``ef_search`` (HNSW candidate list), ``nprobe`` (IVF lists visited), ``k_factor`` (refine: the
base index returns ``k_factor * k`` candidates that exact vectors re-rank).
"""
from __future__ import annotations

import math

import numpy as np

from ..errors import ParameterError
from .base import VectorIndex

EXACT_MAX = 50_000  # up to here a flat (exact) index: < ~10 ms per query at d=256
COMPACT_FRACTION = 0.25
DEFAULT_EF_SEARCH = 128
DEFAULT_NPROBE = 32
DEFAULT_K_FACTOR = 16
# An ``allowed`` set of at most max(SUBSET_EXACT_MIN, SUBSET_EXACT_FRACTION * n) tracks is searched
# exactly over its stored vectors: a selective IDSelector makes HNSW / IVF widen (efSearch up to
# n) or lose recall (HNSW32 ef 128 at 100k: recall@10 0.84 at 1 %, 0.96 at 2 %). Measured at 100k
# (benchmarks/similarity.py --filtered): single calls are faster exact up to ~2-5k allowed tracks
# and ~2x slower at 10-20k (gathering the vectors); batches are faster exact up to 20k for HNSW.
SUBSET_EXACT_MIN = 5_000
SUBSET_EXACT_FRACTION = 0.02
_KNOBS = frozenset({"ef_search", "nprobe", "k_factor"})
_MISSING = object()


def _faiss():
    try:
        import faiss
    except ImportError:  # pragma: no cover - faiss-cpu is a dependency
        raise ParameterError("the FAISS index needs the faiss-cpu package (pip install faiss-cpu)") from None
    return faiss


def choose_factory(n: int, dim: int) -> str:
    """A FAISS factory string for ``n`` vectors of dimension ``dim``.

    - ``n`` ≤ 50 000: ``"Flat"`` (exact).
    - beyond: ``"IVF{4√n},PQ{dim/2}x4fs,RFlat"`` (inverted lists of 4-bit product-quantised codes,
      re-ranked with the exact vectors; searched with nprobe 32, ``k_factor`` 16).

    Measured (benchmarks/similarity.py, clustered 256-d data): at 1M this IVF-PQ gives recall@10
    0.98 at ~50-200x the QPS of exact search, while ``HNSW32,Flat`` stays at 0.75-0.90 up to
    efSearch 256 and builds 4x slower; at 100k both reach ≥ 0.97 and IVF-PQ is 2-3x faster.
    HNSW remains available (``"hnsw"`` or any ``"HNSW…"`` factory string).
    """
    if n <= EXACT_MAX:
        return "Flat"
    return _ivfpq(n, dim)


def _ivfpq(n: int, dim: int) -> str:
    """IVF lists of 4-bit fast-scan PQ codes (2 dims per code), re-ranked with the exact vectors.
    (8-bit PQ trains ~100x slower here for no recall gain after the re-rank: benchmarks/similarity.py)"""
    m = max(1, dim // 2)
    while dim % m or m % 2:
        m -= 1
    return f"IVF{_nlist_for(n)},PQ{m}x4fs,RFlat"


ALIASES = ("auto", "flat", "hnsw", "ivfpq")


def resolve_factory(index_type: str | None, n: int, dim: int) -> str:
    """Factory string for ``index_type``: ``None``/``"auto"`` (by size, :func:`choose_factory`),
    ``"flat"``, ``"hnsw"``, ``"ivfpq"`` (sized for ``n``), or a FAISS factory string as given."""
    name = (index_type or "auto").strip()
    low = name.lower()
    if low == "auto":
        return choose_factory(n, dim)
    if low in ("flat", "exact"):
        return "Flat"
    if low == "hnsw":
        return "HNSW32,Flat"
    if low == "ivfpq":
        return _ivfpq(n, dim)
    if not name:
        raise ParameterError("index type is empty; use auto, flat, hnsw, ivfpq or a FAISS factory string")
    return name


def _nlist_for(n: int) -> int:
    """A power of two near 4·√n, at most n/39 (FAISS wants ≥ 39 training points per list)."""
    nlist = 1 << int(round(math.log2(max(1.0, 4 * math.sqrt(n)))))
    while nlist > 1 and nlist * 39 > n:
        nlist //= 2
    return nlist


class FaissIndex(VectorIndex):
    """FAISS index of any factory type over unit vectors, inner-product metric.

    Parameters
    ----------
    factory : FAISS factory string, or ``None``/``"auto"``, ``"flat"``, ``"hnsw"``, ``"ivfpq"``
        (resolved at build time by :func:`resolve_factory`)
    ef_search, nprobe, k_factor : default search knobs (see the module docstring)
    train_size : at most this many vectors train IVF/PQ types (a seeded random sample)
    random_state : seed of the training sample
    """

    kind = "faiss"

    def __init__(self, factory: str | None = None, *, ef_search: int = DEFAULT_EF_SEARCH,
                 nprobe: int = DEFAULT_NPROBE, k_factor: float = DEFAULT_K_FACTOR,
                 train_size: int = 200_000, random_state: int = 0):
        super().__init__()
        self.factory = factory
        self.ef_search = ef_search
        self.nprobe = nprobe
        self.k_factor = k_factor
        self.train_size = train_size
        self.random_state = random_state
        self.index_ = None
        self.mmap_ = False

    def _check_writable(self) -> None:
        if self.mmap_:
            raise ParameterError("this index was loaded memory-mapped (read-only); load it with mmap=False to change it")

    def params(self) -> dict:
        return {"factory": self.factory_, "ef_search": self.ef_search, "nprobe": self.nprobe,
                "k_factor": self.k_factor, "train_size": self.train_size, "random_state": self.random_state}

    # --- storage ---------------------------------------------------------------------------------
    def _reset(self, dim: int, train: np.ndarray) -> None:
        faiss = _faiss()
        self.mmap_ = False
        self.factory_ = resolve_factory(self.factory, len(train), dim)
        try:
            inner = faiss.index_factory(dim, self.factory_, faiss.METRIC_INNER_PRODUCT)
        except RuntimeError as exc:
            raise ParameterError(f"FAISS cannot build index type {self.factory_!r} for dimension {dim}: "
                                 f"{str(exc).strip().splitlines()[-1]}") from None
        if not inner.is_trained:
            sample = train
            if len(train) > self.train_size:
                pick = np.random.default_rng(self.random_state).choice(len(train), self.train_size, replace=False)
                sample = train[np.sort(pick)]
            _check_training(self.factory_, inner, len(sample))
            inner.train(sample)
        self._set_faiss(inner)

    def _set_faiss(self, index, inner_labels: np.ndarray | None = None) -> None:
        """Adopt a FAISS index: IVF types keep labels as their native ids (hash-table direct map, so
        they delete and reconstruct by id); any other type stores vectors by position, and
        ``inner_labels_`` maps position -> label (the job of ``IndexIDMap2``, done in NumPy)."""
        faiss = _faiss()
        ivf = _ivf_core(index)
        self.native_ids_ = ivf is not None
        if self.native_ids_ and ivf.direct_map.type != faiss.DirectMap.Hashtable:
            ivf.set_direct_map_type(faiss.DirectMap.Hashtable)
        self.index_ = index
        core = faiss.downcast_index(index)
        self._refine = isinstance(core, faiss.IndexRefine)
        core = faiss.downcast_index(core.base_index) if self._refine else core
        self._hnsw = isinstance(core, faiss.IndexHNSW)
        ivf = ivf if ivf is not None else _ivf_core(core)
        self._nlist = int(ivf.nlist) if ivf is not None else None
        self._params_cache = {}
        self._selector_memo = None  # (allowed labels object, its IDSelectorBatch)
        self._subset_ok = True
        self._subset_memo = None  # (allowed labels object, sorted labels, their vectors)
        self._swig_ptr = faiss.swig_ptr
        self.inner_labels_ = None if self.native_ids_ else (
            np.zeros(0, np.int64) if inner_labels is None else np.asarray(inner_labels, np.int64))
        self._pos = None

    def _positions(self, labels: np.ndarray) -> np.ndarray:
        """Inner ids of ``labels`` (labels not stored give -1)."""
        if self.native_ids_:
            return labels
        if self._pos is None or len(self._pos) < len(self.labels_):
            pos = np.full(max(len(self.labels_), int(self.inner_labels_.max(initial=-1)) + 1), -1, np.int64)
            pos[self.inner_labels_] = np.arange(len(self.inner_labels_))
            self._pos = pos
        return self._pos[labels]

    def _add(self, labels: np.ndarray, x: np.ndarray) -> None:
        self._subset_memo = self._selector_memo = None
        if self.native_ids_:
            self.index_.add_with_ids(x, labels)
        else:
            self.index_.add(x)
            self.inner_labels_ = np.concatenate([self.inner_labels_, labels])
            self._pos = None

    def _remove(self, labels: np.ndarray) -> bool:
        self._subset_memo = self._selector_memo = None
        faiss = _faiss()
        if self.native_ids_:  # a hash-table direct map removes only by IDSelectorArray
            self.index_.remove_ids(faiss.IDSelectorArray(labels))
            return True
        pos = self._positions(labels)
        pos = pos[pos >= 0]
        try:
            removed = self.index_.remove_ids(faiss.IDSelectorBatch(pos))
        except RuntimeError:  # HNSW, refine: cannot delete in place; tombstones until compact()
            return False
        if removed != len(pos):
            raise ParameterError(f"FAISS removed {removed} of {len(pos)} vectors from {self.factory_!r}; rebuild the index")
        keep = np.ones(len(self.inner_labels_), dtype=bool)  # flat storage deletes and shifts, keeping order
        keep[pos] = False
        self.inner_labels_ = self.inner_labels_[keep]
        self._pos = None
        return True

    def _tombstones_changed(self) -> None:
        if self.tombstones_.size > COMPACT_FRACTION * max(1, self.index_.ntotal):
            self.compact()

    def compact(self) -> None:
        """Rebuild the storage without tombstoned vectors (needs reconstructable vectors)."""
        if not self.tombstones_.size:
            return
        labels = self._live_labels()
        try:
            x = self._vectors(labels) if labels.size else np.zeros((0, self.dim_), np.float32)
        except RuntimeError as exc:
            raise ParameterError(f"index type {self.factory_!r} can neither delete nor reconstruct vectors; "
                                 "rebuild it from the embeddings") from exc
        inner = _faiss().clone_index(self.index_)
        inner.reset()
        self.tombstones_ = np.zeros(0, np.int64)
        self._set_faiss(inner)
        if labels.size:
            self._add(labels, np.ascontiguousarray(x))

    def _vectors(self, labels: np.ndarray) -> np.ndarray:
        """Stored vectors of live ``labels``: exact for flat storage (Flat, HNSW…,Flat, the RFlat
        re-rank of refine types), decoded (approximate) for compressed ones."""
        pos = np.ascontiguousarray(self._positions(labels), dtype=np.int64)
        return self.index_.reconstruct_batch(pos)

    def memory_bytes(self) -> int:
        """Size of the serialised index plus the position -> label map (≈ its memory), bytes."""
        extra = 0 if self.inner_labels_ is None else self.inner_labels_.nbytes
        return int(_faiss().serialize_index(self.index_).nbytes) + extra

    # --- search ----------------------------------------------------------------------------------
    def _inner(self):
        return _faiss().downcast_index(self.index_)

    def search_params(self, selector=None, *, ef_search=None, nprobe=None, k_factor=None):
        """FAISS ``SearchParameters`` for the index type (selector on inner ids), or None when defaults do."""
        faiss = _faiss()
        inner = self._inner()
        ef = self.ef_search if ef_search is None else ef_search
        npb = self.nprobe if nprobe is None else nprobe

        def base_params(index, sel):
            index = faiss.downcast_index(index)
            if isinstance(index, faiss.IndexHNSW):
                return faiss.SearchParametersHNSW(efSearch=int(ef), sel=sel) if sel else faiss.SearchParametersHNSW(efSearch=int(ef))
            if isinstance(index, faiss.IndexIVF):
                return faiss.SearchParametersIVF(nprobe=int(npb), sel=sel) if sel else faiss.SearchParametersIVF(nprobe=int(npb))
            if isinstance(index, faiss.IndexPreTransform):
                return base_params(index.index, sel)
            return faiss.SearchParameters(sel=sel) if sel else None

        if isinstance(inner, faiss.IndexRefine):
            base = base_params(inner.base_index, selector)
            kf = float(self.k_factor if k_factor is None else k_factor)
            params = faiss.IndexRefineSearchParameters(k_factor=kf, base_index_params=base) if base \
                else faiss.IndexRefineSearchParameters(k_factor=kf)
            params._keep = base  # the C++ object holds a raw pointer: keep it alive
            return params
        return base_params(inner, selector)

    def _search(self, x: np.ndarray, k: int, allowed: np.ndarray | None, **knobs):
        if knobs and not _KNOBS.issuperset(knobs):
            raise ParameterError(f"unknown search option(s) {sorted(set(knobs) - _KNOBS)}; known: ef_search, nprobe, k_factor")
        if allowed is not None:
            if allowed.size == 0:
                return np.full((len(x), k), -np.inf, np.float32), np.full((len(x), k), -1, np.int64)
            if self._subset_exact(allowed.size):
                found = self._subset_search(x, k, allowed)
                if found is not None:
                    return found
        keep = []  # selectors must outlive the search
        selector = None
        if allowed is not None:
            # the same labels object comes back while the filter and the index are unchanged
            # (VectorIndex._allowed_labels): reuse its selector instead of rebuilding it per call
            memo = self._selector_memo
            if memo is not None and memo[0] is allowed:
                selector = memo[1]
            else:
                pos = self._positions(allowed)
                selector = _faiss().IDSelectorBatch(pos[pos >= 0])
                self._selector_memo = (allowed, selector)
        elif self.tombstones_.size:  # skip removed vectors still stored
            faiss = _faiss()
            keep.append(faiss.IDSelectorBatch(self._positions(self.tombstones_)))
            keep.append(faiss.IDSelectorNot(keep[-1]))
            selector = keep[-1]
        ef = knobs.get("ef_search")
        if ef is None and self._hnsw:
            ef = max(self.ef_search, k)  # HNSW returns at most efSearch results
        key = (ef, knobs.get("nprobe"), knobs.get("k_factor"))
        if selector is None:  # parameter objects without a selector are reused (read-only in FAISS)
            params = self._params_cache.get(key, _MISSING)
            if params is _MISSING:
                params = self.search_params(None, ef_search=key[0], nprobe=key[1], k_factor=key[2])
                self._params_cache = {key: params}
        else:
            params = self.search_params(selector, ef_search=ef, nprobe=key[1], k_factor=key[2])
        # x is already C-contiguous float32 of the right dimension (VectorIndex.search): call the
        # SWIG method directly instead of FAISS's Python wrapper, which checks and converts again
        n = len(x)
        scores = np.empty((n, k), np.float32)
        found = np.empty((n, k), np.int64)
        ptr = self._swig_ptr
        self.index_.search_c(n, ptr(x), k, ptr(scores), ptr(found), params)
        if not self.native_ids_:
            labels = self.inner_labels_
            if not len(labels):
                found[:] = -1
            elif found.min() >= 0:
                found = labels[found]
            else:
                found = np.where(found >= 0, labels[np.maximum(found, 0)], -1)
        return scores, found

    # --- exact search over a small allowed set ---------------------------------------------------
    def subset_exact_max(self) -> int:
        """Largest ``allowed`` set searched exactly over its stored vectors instead of through the
        approximate index with an ``IDSelector`` (see :data:`SUBSET_EXACT_MIN`)."""
        return max(SUBSET_EXACT_MIN, int(SUBSET_EXACT_FRACTION * self.index_.ntotal))

    def _subset_exact(self, n_allowed: int) -> bool:
        return self._subset_ok and n_allowed <= self.subset_exact_max()

    def _subset_search(self, x: np.ndarray, k: int, allowed: np.ndarray):
        """Brute force over the stored vectors of ``allowed`` -> (scores, labels) as ``_search``;
        None if the type cannot reconstruct its vectors."""
        memo = self._subset_memo  # the same allowed labels object again (see VectorIndex._allowed_labels)
        if memo is not None and memo[0] is allowed:
            labels, vectors = memo[1], memo[2]
        else:
            labels = np.sort(allowed)
            if labels.size > 1 and (labels[1:] == labels[:-1]).any():  # an id given twice
                labels = np.unique(labels)
            try:
                vectors = np.ascontiguousarray(self._vectors(labels), np.float32)
            except RuntimeError:  # e.g. a type without reconstruct: use the IDSelector search
                self._subset_ok = False
                return None
            self._subset_memo = (allowed, labels, vectors)
        # FAISS's own brute force (SIMD, its OpenMP settings): NumPy's x @ V.T can hand a single
        # query to a multi-threaded BLAS, which took milliseconds on a loaded 2-core machine
        faiss = _faiss()
        scores, rows = faiss.knn(x, vectors, k, metric=faiss.METRIC_INNER_PRODUCT)
        missing = rows < 0
        if missing.any():
            return np.where(missing, -np.inf, scores).astype(np.float32), np.where(missing, -1, labels[np.maximum(rows, 0)])
        return scores, labels[rows]

    def is_exhaustive(self, *, n_allowed: int | None = None, **knobs) -> bool:
        if n_allowed is not None and self._subset_exact(n_allowed):
            return True
        if self._nlist is not None:
            return (knobs.get("nprobe") or self.nprobe) >= self._nlist
        if self._hnsw:
            return (knobs.get("ef_search") or self.ef_search) >= self.index_.ntotal
        return True

    def widened(self, level: int) -> dict:
        f = 2 ** level
        out = {}
        if self._hnsw:
            out["ef_search"] = self.ef_search * f
        if self._nlist is not None:
            out["nprobe"] = min(self._nlist, self.nprobe * f)
        if self._refine:
            out["k_factor"] = self.k_factor * f
        return out


def _ivf_core(index):
    """The IVF index inside ``index`` (through pre-transforms), or None."""
    faiss = _faiss()
    index = faiss.downcast_index(index)
    if isinstance(index, faiss.IndexPreTransform):
        index = faiss.downcast_index(index.index)
    return index if isinstance(index, faiss.IndexIVF) else None


def _check_training(factory: str, inner, n: int) -> None:
    faiss = _faiss()
    index = faiss.downcast_index(inner)
    if isinstance(index, faiss.IndexRefine):
        index = index.base_index
    ivf = _ivf_core(index)
    need = int(ivf.nlist) if ivf is not None else 1
    if n < need:
        raise ParameterError(f"index type {factory!r} needs at least {need} vectors to train, got {n}; "
                             "use a smaller nlist or 'Flat'")


def read_faiss(path, *, mmap: bool = False):
    """Read a FAISS index file; ``mmap``: memory-mapped where the type allows, else read into memory."""
    faiss = _faiss()
    if mmap:
        for flags in (faiss.IO_FLAG_MMAP_IFC | faiss.IO_FLAG_READ_ONLY, faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY):
            try:
                return faiss.read_index(str(path), flags)
            except RuntimeError:
                continue
    try:
        return faiss.read_index(str(path))
    except RuntimeError as exc:
        from ..errors import CatalogError

        raise CatalogError(f"cannot read FAISS index {path}: {str(exc).strip().splitlines()[-1]}; "
                           "build the index again") from None
