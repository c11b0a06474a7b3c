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
        self._nlist_v = int(ivf.nlist) if ivf is not None else (
            int(_ivf_core(core).nlist) if _ivf_core(core) is not None else None)
        self._params_cache = {}
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
        if self.native_ids_:
            self.index_.add_with_ids(x, labels)
        else:
            self.index_.add(x)
            self.inner_labels_ = np.concatenate([self.inner_labels_, labels])
            self._pos = None

    def _remove(self, labels: np.ndarray) -> bool:
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
        pos = self._positions(labels)
        if not self.native_ids_ and len(pos) > 1000:
            return self.index_.reconstruct_n(0, self.index_.ntotal)[pos]
        return np.stack([self.index_.reconstruct(int(p)) for p in pos.tolist()])

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
        faiss = _faiss()
        unknown = set(knobs) - {"ef_search", "nprobe", "k_factor"}
        if unknown:
            raise ParameterError(f"unknown search option(s) {sorted(unknown)}; known: ef_search, nprobe, k_factor")
        if allowed is not None and allowed.size == 0:
            return np.full((len(x), k), -np.inf, np.float32), np.full((len(x), k), -1, np.int64)
        keep = []  # selectors must outlive the search
        selector = None
        if allowed is not None:
            pos = self._positions(allowed)
            keep.append(faiss.IDSelectorBatch(pos[pos >= 0]))
            selector = keep[-1]
        elif self.tombstones_.size:  # skip removed vectors still stored
            keep.append(faiss.IDSelectorBatch(self._positions(self.tombstones_)))
            keep.append(faiss.IDSelectorNot(keep[-1]))
            selector = keep[-1]
        ef = knobs.get("ef_search")
        if ef is None and self._hnsw:
            ef = max(self.ef_search, k)  # HNSW returns at most efSearch results
        key = (ef, knobs.get("nprobe"), knobs.get("k_factor"))
        if selector is None:  # parameter objects without a selector are reused (read-only in FAISS)
            if key not in self._params_cache:
                self._params_cache = {key: self.search_params(None, ef_search=key[0], nprobe=key[1], k_factor=key[2])}
            params = self._params_cache[key]
        else:
            params = self.search_params(selector, ef_search=ef, nprobe=key[1], k_factor=key[2])
        scores, found = self.index_.search(x, k, params=params) if params is not None else self.index_.search(x, k)
        if not self.native_ids_:
            found = np.where(found >= 0, self.inner_labels_[np.maximum(found, 0)] if len(self.inner_labels_) else -1, -1)
        return scores, found

    def _is_hnsw(self) -> bool:
        return self._hnsw

    def _nlist(self) -> int | None:
        return self._nlist_v

    def is_exhaustive(self, **knobs) -> bool:
        nlist = self._nlist()
        if nlist is not None:
            return (knobs.get("nprobe") or self.nprobe) >= nlist
        if self._is_hnsw():
            return (knobs.get("ef_search") or self.ef_search) >= self.index_.ntotal
        return True

    def widened(self, level: int) -> dict:
        f = 2 ** level
        out = {}
        if self._is_hnsw():
            out["ef_search"] = self.ef_search * f
        if self._nlist() is not None:
            out["nprobe"] = min(self._nlist(), self.nprobe * f)
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
    index = inner
    if isinstance(faiss.downcast_index(index), faiss.IndexRefine):
        index = faiss.downcast_index(index).base_index
    index = faiss.downcast_index(index)
    if isinstance(index, faiss.IndexPreTransform):
        index = faiss.downcast_index(index.index)
    need = int(index.nlist) if isinstance(index, faiss.IndexIVF) else 1
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
