"""Similarity search speed and quality: exact, HNSW and IVF-PQ through mir against raw FAISS.

    python benchmarks/similarity.py [--sizes 100000,1000000] [--dim 256] [--queries 1000]
                                    [--single 200] [--out benchmarks/results/similarity-N.json]
    python benchmarks/similarity.py --filtered --sizes 100000 [--selectivity 0.01,0.1]

Data: clustered synthetic vectors (``n/1000`` Gaussian clusters, centres N(0, 1), points centre +
N(0, 1)), the engine's embedding dimension (256); queries are fresh draws from the same mixture
(not in the index). Ground truth: exact inner-product top 10 of the unit vectors.

For each index type, mir (:class:`mir.index.FaissIndex`, track-id strings, ``IndexIDMap2`` where
needed, normalisation and id translation per call) and raw FAISS (``faiss.index_factory`` with the
same factory string, training sample and search parameters, sequential int ids) are built in the
same run and measured alike:

- build: seconds to train + add (mir includes normalising and the id table)
- bytes/vector: serialised index size / n (mir adds its id table)
- recall@10 against the exact top 10
- QPS: one query per call (``--single`` queries) and batches of ``--queries``, with 1 and 2 threads
- mir overhead: raw QPS / mir QPS - 1, per mode

Exact search is FAISS ``Flat`` (BLAS brute force). Search knobs are swept without rebuilding
(HNSW efSearch; IVF-PQ nprobe with a re-rank of ``k_factor × k`` candidates by the exact vectors,
``RFlat``, or by 8-bit scalar-quantised ones, ``Refine(SQ8)``, the ``ivfsq8`` rows: 4x less memory).
Timings on a shared machine are noisy: each QPS is the best of ``--repeats``; the load average is
recorded. Not a test: nothing asserts. Writes one JSON per size to benchmarks/results/.
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import faiss  # noqa: E402

from mir.index import FaissIndex, choose_factory, resolve_factory  # noqa: E402

K = 10


def clustered(n: int, dim: int, *, seed: int, clusters: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(1234).standard_normal((clusters, dim), dtype=np.float32)
    x = rng.standard_normal((n, dim), dtype=np.float32)
    x += centres[rng.integers(0, clusters, n)]
    return x


def unit(x: np.ndarray) -> np.ndarray:
    x = np.ascontiguousarray(x, dtype=np.float32).copy()
    faiss.normalize_L2(x)
    return x


def exact_top(base: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    index = faiss.IndexFlatIP(base.shape[1])
    index.add(base)
    return index.search(queries, k)[1]


def recall(found_rows: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(a.tolist()) & set(b.tolist())) / truth.shape[1] for a, b in zip(found_rows, truth)]))


def best_of(fn, repeats: int) -> float:
    best = np.inf
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


# --- one side (mir or raw) ---------------------------------------------------------------------------
class Mir:
    name = "mir"

    def __init__(self, factory: str, x: np.ndarray, ids: np.ndarray, train_size: int):
        t = time.perf_counter()
        self.index = FaissIndex(factory, train_size=train_size).build(ids, x)
        self.build_s = time.perf_counter() - t
        self.bytes = self.index.memory_bytes() + self.index.labels_.nbytes
        self.row_of = {t: i for i, t in enumerate(ids.tolist())}

    def search(self, q: np.ndarray, knobs: dict) -> np.ndarray:
        return self.index.search(q, K, **knobs)[1]

    def rows(self, found: np.ndarray) -> np.ndarray:
        return np.vectorize(lambda t: self.row_of.get(t, -1), otypes=[np.int64])(found)


class Raw:
    name = "faiss"

    def __init__(self, factory: str, x: np.ndarray, train_size: int, seed: int = 0):
        t = time.perf_counter()
        xu = unit(x)  # mir normalises inside its build; raw FAISS needs it done too
        index = faiss.index_factory(x.shape[1], factory, faiss.METRIC_INNER_PRODUCT)
        if not index.is_trained:
            sample = xu
            if len(xu) > train_size:  # the same sample as mir's FaissIndex (same seed, same rule)
                pick = np.random.default_rng(seed).choice(len(xu), train_size, replace=False)
                sample = xu[np.sort(pick)]
            index.train(sample)
        index.add(xu)
        self.build_s = time.perf_counter() - t
        self.index = index
        self.bytes = int(faiss.serialize_index(index).nbytes)
        del xu

    def params(self, knobs: dict):
        inner = faiss.downcast_index(self.index)
        if isinstance(inner, faiss.IndexHNSW):
            return faiss.SearchParametersHNSW(efSearch=knobs.get("ef_search", 128))
        if isinstance(inner, faiss.IndexRefine):
            base = faiss.SearchParametersIVF(nprobe=knobs.get("nprobe", 32))
            p = faiss.IndexRefineSearchParameters(k_factor=knobs.get("k_factor", 4), base_index_params=base)
            p._keep = base
            return p
        if isinstance(inner, faiss.IndexIVF):
            return faiss.SearchParametersIVF(nprobe=knobs.get("nprobe", 32))
        return None

    def search(self, q: np.ndarray, knobs: dict) -> np.ndarray:
        p = self.params(knobs)
        qu = unit(q)  # raw FAISS callers normalise queries too (same work as mir)
        return (self.index.search(qu, K, params=p) if p is not None else self.index.search(qu, K))[1]

    def rows(self, found: np.ndarray) -> np.ndarray:
        return found


def measure(side, queries: np.ndarray, truth: np.ndarray, knobs: dict, *, single: int, repeats: int) -> dict:
    out = {"recall@10": recall(side.rows(side.search(queries, knobs)), truth)}
    for threads in (1, 2):
        faiss.omp_set_num_threads(threads)
        qs = queries[:single]
        t1 = best_of(lambda qs=qs: [side.search(qs[i:i + 1], knobs) for i in range(len(qs))], repeats)
        tb = best_of(lambda: side.search(queries, knobs), repeats)
        out[f"qps_single_{threads}t"] = len(qs) / t1
        out[f"qps_batch_{threads}t"] = len(queries) / tb
    faiss.omp_set_num_threads(2)
    return out


def run_size(n: int, args) -> dict:
    dim = args.dim
    print(f"\n=== n = {n:,} x {dim} (clustered, {max(1, n // 1000)} clusters) ===", flush=True)
    x = clustered(n, dim, seed=0, clusters=max(1, n // 1000))
    q = clustered(args.queries, dim, seed=1, clusters=max(1, n // 1000))
    ids = np.char.add("t", np.arange(n).astype(str))
    t = time.perf_counter()
    truth = exact_top(unit(x), unit(q), K)
    print(f"ground truth in {time.perf_counter() - t:.1f} s", flush=True)
    ivf = [{"nprobe": p, "k_factor": kf} for p in args.nprobe for kf in args.k_factor]
    configs = [
        ("exact", "Flat", [{}]),
        ("hnsw", "HNSW32,Flat", [{"ef_search": ef} for ef in args.ef]),
        ("ivfpq", resolve_factory("ivfpq", n, dim), ivf),
        ("ivfsq8", resolve_factory("ivfpq", n, dim).replace("RFlat", "Refine(SQ8)"), ivf),
    ]
    rows = []
    for label, factory, sweeps in configs:
        if args.only and label not in args.only:
            continue
        for side_cls in (Mir, Raw):
            gc.collect()
            print(f"[{label}] building {factory} via {side_cls.name} …", flush=True)
            side = side_cls(factory, x, ids, args.train_size) if side_cls is Mir else side_cls(factory, x, args.train_size)
            print(f"[{label}] {side_cls.name}: built in {side.build_s:.1f} s, {side.bytes / n:.0f} B/vector", flush=True)
            for knobs in sweeps:
                single = min(args.single, 50) if label == "exact" and n > 200_000 else args.single
                res = measure(side, q, truth, knobs, single=single, repeats=args.repeats)
                row = {"n": n, "type": label, "factory": factory, "side": side_cls.name, "knobs": knobs,
                       "build_s": side.build_s, "bytes_per_vector": side.bytes / n, **res}
                rows.append(row)
                print("   ", json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()
                                        if k not in ("n", "factory")}), flush=True)
            del side
    return {"n": n, "dim": dim, "queries": args.queries, "rows": rows, "auto_factory": choose_factory(n, dim)}


# --- filtered queries (--filtered): a small allowed set ------------------------------------------------
def run_filtered(n: int, args) -> dict:
    """Queries restricted to a random ``allowed`` set (1 % and 10 % of the tracks), single calls and
    one batch, 1 thread: mir forced to each of its two paths (``mir-subset``: brute force over the
    stored vectors of the allowed tracks; ``mir-selector``: the approximate index with an IDSelector),
    ``*`` marking the one mir takes by default (subset when the set has at most ``subset_exact_max()``
    tracks), and raw FAISS with an ``IDSelectorBatch`` built once outside the timing. mir's calls
    include turning the allowed track-id strings into labels. Recall@10 is against the exact top 10
    within the allowed set."""
    from mir.index import faiss_index

    dim = args.dim
    clusters = max(1, n // 1000)
    x = clustered(n, dim, seed=0, clusters=clusters)
    q = clustered(args.queries, dim, seed=1, clusters=clusters)
    ids = np.char.add("t", np.arange(n).astype(str))
    xu, qu = unit(x), unit(q)
    faiss.omp_set_num_threads(1)
    configs = [("hnsw", "HNSW32,Flat", {"ef_search": 128}),
               ("ivfpq", resolve_factory("ivfpq", n, dim), {"nprobe": 16, "k_factor": 16})]
    rows = []
    for label, factory, knobs in configs:
        if args.only and label not in args.only:
            continue
        mir_side, raw_side = Mir(factory, x, ids, args.train_size), Raw(factory, x, args.train_size)
        print(f"[{label}] built {factory}: mir {mir_side.build_s:.1f} s, raw {raw_side.build_s:.1f} s", flush=True)
        for frac in args.selectivity:
            rows_allowed = np.sort(np.random.default_rng(2).choice(n, max(K, int(frac * n)), replace=False))
            allowed = ids[rows_allowed]
            sub = faiss.IndexFlatIP(dim)
            sub.add(xu[rows_allowed])
            truth = rows_allowed[sub.search(qu, K)[1]]
            sel = faiss.IDSelectorBatch(rows_allowed.astype(np.int64))
            raw_params = raw_side.params(knobs)
            inner = raw_params.base_index_params if isinstance(raw_params, faiss.IndexRefineSearchParameters) else raw_params
            inner.sel = sel

            def raw_search(qq, index=raw_side.index, raw_params=raw_params):
                return index.search(unit(qq), K, params=raw_params)[1]

            def mir_search(qq, index=mir_side.index, allowed=allowed, knobs=knobs):
                return index.search(qq, K, allowed=allowed, **knobs)[1]

            default = "mir-subset" if len(allowed) <= mir_side.index.subset_exact_max() else "mir-selector"
            sides = [("mir-subset", mir_search, mir_side.rows, (n, 1.0)),
                     ("mir-selector", mir_search, mir_side.rows, (0, 0.0)),
                     ("faiss", raw_search, lambda f: f, None)]
            for name, fn, to_rows, force in sides:
                saved = faiss_index.SUBSET_EXACT_MIN, faiss_index.SUBSET_EXACT_FRACTION
                if force is not None:
                    faiss_index.SUBSET_EXACT_MIN, faiss_index.SUBSET_EXACT_FRACTION = force
                try:
                    found = to_rows(fn(q))
                    qs = q[:args.single]
                    t1 = best_of(lambda fn=fn, qs=qs: [fn(qs[i:i + 1]) for i in range(len(qs))], args.repeats)
                    tb = best_of(lambda fn=fn: fn(q), args.repeats)
                finally:
                    faiss_index.SUBSET_EXACT_MIN, faiss_index.SUBSET_EXACT_FRACTION = saved
                row = {"n": n, "type": label, "factory": factory, "knobs": knobs, "selectivity": frac,
                       "allowed": len(allowed), "side": name, "mir_default": name == default, "recall@10": recall(found, truth),
                       "leaks": int(np.isin(found[found >= 0], rows_allowed, invert=True).sum()),
                       "qps_single_1t": len(qs) / t1, "qps_batch_1t": len(q) / tb}
                rows.append(row)
                print("   ", json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()
                                        if k not in ("n", "factory")}), flush=True)
        del mir_side, raw_side
    faiss.omp_set_num_threads(2)
    return {"n": n, "dim": dim, "queries": args.queries, "filtered_rows": rows}


def filtered_table(result: dict) -> str:
    lines = [f"filtered queries, n = {result['n']:,}, 1 thread; QPS single calls / batch of {result['queries']}",
             f"{'type':6} {'sel':>5} {'allowed':>8} {'side':13} {'R@10':>6} {'leaks':>5} {'single1':>8} {'batch1':>8}"]
    for r in result["filtered_rows"]:
        side = r["side"] + ("*" if r.get("mir_default") else "")
        lines.append(f"{r['type']:6} {r['selectivity']:5.0%} {r['allowed']:8d} {side:13} {r['recall@10']:6.3f} "
                     f"{r['leaks']:5d} {r['qps_single_1t']:8.0f} {r['qps_batch_1t']:8.0f}")
    return "\n".join(lines)


def table(result: dict) -> str:
    rows = result["rows"]
    exact = {r["side"]: r for r in rows if r["type"] == "exact"}
    lines = [f"n = {result['n']:,}, d = {result['dim']}; QPS: single-query calls (1t/2t) and batches of "
             f"{result['queries']} (1t/2t); x exact = QPS / exact QPS of the same side (single 1t, batch 2t)",
             f"{'type':6} {'knobs':31} {'side':5} {'build s':>8} {'B/vec':>6} {'R@10':>6} "
             f"{'single1':>8} {'single2':>8} {'batch1':>8} {'batch2':>8} {'x ex s1':>8} {'x ex b2':>8}"]
    for r in rows:
        ex = exact.get(r["side"])
        s1 = r["qps_single_1t"] / ex["qps_single_1t"] if ex else float("nan")
        b2 = r["qps_batch_2t"] / ex["qps_batch_2t"] if ex else float("nan")
        lines.append(f"{r['type']:6} {json.dumps(r['knobs']):31} {r['side']:5} {r['build_s']:8.1f} "
                     f"{r['bytes_per_vector']:6.0f} {r['recall@10']:6.3f} {r['qps_single_1t']:8.0f} "
                     f"{r['qps_single_2t']:8.0f} {r['qps_batch_1t']:8.0f} {r['qps_batch_2t']:8.0f} {s1:8.1f} {b2:8.1f}")
    lines.append("mir overhead (raw QPS / mir QPS - 1) per mode:")
    raw = {(r["type"], json.dumps(r["knobs"])): r for r in rows if r["side"] == "faiss"}
    for r in rows:
        o = raw.get((r["type"], json.dumps(r["knobs"])))
        if r["side"] != "mir" or o is None:
            continue
        parts = [f"{mode} {o[f'qps_{mode}'] / r[f'qps_{mode}'] - 1:+.1%}"
                 for mode in ("single_1t", "single_2t", "batch_1t", "batch_2t")]
        lines.append(f"  {r['type']:6} {json.dumps(r['knobs']):31} " + ", ".join(parts)
                     + f"; build {r['build_s'] / o['build_s'] - 1:+.1%}")
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="100000", help="comma-separated index sizes (default 100000)")
    p.add_argument("--dim", type=int, default=256)
    p.add_argument("--queries", type=int, default=1000, help="batch size and recall queries")
    p.add_argument("--single", type=int, default=200, help="queries timed one call at a time")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--ef", default="64,128,256", help="HNSW efSearch values")
    p.add_argument("--nprobe", default="16,64", help="IVF-PQ nprobe values")
    p.add_argument("--k-factor", default="8,16,32", help="IVF-PQ re-rank factors")
    p.add_argument("--train-size", type=int, default=100_000, help="training sample of IVF-PQ")
    p.add_argument("--only", default="", help="comma-separated subset of exact,hnsw,ivfpq,ivfsq8")
    p.add_argument("--out", default=None, help="JSON path (default benchmarks/results/similarity-<n>.json)")
    p.add_argument("--table", metavar="JSON", help="only print the table of a saved result")
    p.add_argument("--filtered", action="store_true",
                   help="instead: filtered queries (random allowed sets, --selectivity) on HNSW and IVF-PQ")
    p.add_argument("--selectivity", default="0.01,0.1", help="allowed fractions for --filtered")
    args = p.parse_args()
    if args.table:
        saved = json.loads(Path(args.table).read_text())
        print(filtered_table(saved) if "filtered_rows" in saved else table(saved))
        return 0
    args.ef = [int(v) for v in args.ef.split(",")]
    args.nprobe = [int(v) for v in args.nprobe.split(",")]
    args.k_factor = [float(v) for v in args.k_factor.split(",")]
    args.only = [v for v in args.only.split(",") if v]
    args.selectivity = [float(v) for v in args.selectivity.split(",")]
    for n in (int(float(v)) for v in args.sizes.split(",")):
        result = run_filtered(n, args) if args.filtered else run_size(n, args)
        result.update(machine=platform.platform(), cpus=os.cpu_count(), load_avg=os.getloadavg(),
                      faiss=faiss.__version__)
        print()
        print(filtered_table(result) if args.filtered else table(result))
        stem = "similarity-filtered" if args.filtered else "similarity"
        out = Path(args.out) if args.out else HERE / "results" / f"{stem}-{n}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=1))
        print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
