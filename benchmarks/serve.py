"""Load test of `mir serve`: concurrent clients on loopback against a real server process.

    python benchmarks/serve.py LIB [--seconds 60] [--warmup 10] [--clients 50] [--workers 1]
                               [--mix similar=40,track=30,audio=25,upload=5] [--upload FILE] [--out FILE]

Starts ``python -m mir serve LIB --read-only [--workers N]`` on a free loopback port (the CLI's
defaults), waits for ``/health``, then runs ``--clients`` asyncio + httpx clients, each
sending one request after another, drawn from the mix (seeded):

- ``similar``: ``GET /similar?track=ID&k=10`` for a random track
- ``track``: ``GET /tracks/ID``
- ``audio``: ``GET /tracks/ID/audio`` with a random 64 KB ``Range`` (checks 206 and the length)
- ``upload``: ``POST /analyze`` of one audio file (``--upload``; default: a track of the library)

The first ``--warmup`` seconds are not counted; the server's RSS (summed over its processes) is
read after warm-up and at the end (psutil). Peer in the same run: the same ``similar`` query
through the Python API in this process (``mir.similar``, sequential), so the HTTP layer's
share is visible.
Prints a table (p50 / p99 / max per endpoint, errors, requests/s) and writes JSON (default
``benchmarks/results/serve.json``). Loopback only; bounded in time; nothing asserts.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

RANGE_BYTES = 65536


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def parse_mix(text: str) -> dict[str, float]:
    mix = {}
    for part in text.split(","):
        name, _, weight = part.partition("=")
        if name.strip() not in ("similar", "track", "audio", "upload"):
            raise SystemExit(f"--mix: unknown endpoint {name!r} (similar, track, audio, upload)")
        mix[name.strip()] = float(weight)
    return {k: v for k, v in mix.items() if v > 0}


def start_server(lib: str, port: int, log: Path, workers: int) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]) + os.pathsep
               + os.environ.get("PYTHONPATH", ""))
    env.pop("MIR_TOKEN", None)
    return subprocess.Popen([sys.executable, "-m", "mir", "serve", lib, "--port", str(port), "--read-only",
                             "--workers", str(workers)],
                            stdout=subprocess.DEVNULL, stderr=open(log, "wb"), env=env)


async def wait_ready(client, proc, timeout: float = 120.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited with code {proc.returncode}; see its log")
        try:
            if (await client.get("/health")).status_code == 200:
                return
        except Exception:
            pass
        await asyncio.sleep(0.2)
    raise SystemExit("the server did not answer /health in time")


async def catalogue(client) -> list[dict]:
    ids, offset = [], 0
    while True:
        page = (await client.get("/tracks", params={"limit": 500, "offset": offset})).json()
        ids += [t["track_id"] for t in page["tracks"]]
        offset += len(page["tracks"])
        if offset >= page["total"] or not page["tracks"]:
            break
    sizes = {}
    for tid in ids:  # file sizes, for valid random ranges
        r = await client.get(f"/tracks/{tid}/audio", headers={"Range": "bytes=0-0"})
        sizes[tid] = int(r.headers["content-range"].rsplit("/", 1)[1])
    return [{"id": t, "size": sizes[t]} for t in ids]


async def one_request(client, kind: str, tracks: list[dict], upload: bytes, rng: random.Random) -> tuple[bool, str]:
    t = rng.choice(tracks)
    if kind == "similar":
        r = await client.get("/similar", params={"track": t["id"], "k": 10})
        return r.status_code == 200 and len(r.json()["results"]) > 0, str(r.status_code)
    if kind == "track":
        r = await client.get(f"/tracks/{t['id']}")
        return r.status_code == 200, str(r.status_code)
    if kind == "audio":
        start = rng.randrange(max(1, t["size"] - RANGE_BYTES))
        r = await client.get(f"/tracks/{t['id']}/audio", headers={"Range": f"bytes={start}-{start + RANGE_BYTES - 1}"})
        want = min(RANGE_BYTES, t["size"] - start)
        return r.status_code == 206 and len(r.content) == want, str(r.status_code)
    r = await client.post("/analyze", files={"file": ("upload.flac", upload)})
    return r.status_code == 200 and len(r.json()["tags"]) >= 0, str(r.status_code)


async def run_clients(base: str, n_clients: int, mix: dict, tracks: list[dict], upload: bytes, seconds: float,
                      warmup: float, server_pid: int, seed: int) -> dict:
    import httpx
    import psutil

    server = psutil.Process(server_pid)

    def rss_now() -> int:  # the server and its worker processes
        return sum(p.memory_info().rss for p in [server, *server.children(recursive=True)])

    limits = httpx.Limits(max_connections=n_clients, max_keepalive_connections=n_clients)
    lat: dict[str, list[float]] = {k: [] for k in mix}
    errors: dict[str, dict] = {k: {} for k in mix}
    kinds, weights = list(mix), list(mix.values())
    t0 = time.monotonic()
    measure_from, stop_at = t0 + warmup, t0 + warmup + seconds
    rss = {}

    async def client_loop(i: int, client):
        rng = random.Random(seed * 1000 + i)
        while (now := time.monotonic()) < stop_at:
            kind = rng.choices(kinds, weights)[0]
            start = time.perf_counter()
            try:
                ok, why = await one_request(client, kind, tracks, upload, rng)
            except Exception as exc:
                ok, why = False, type(exc).__name__
            took = time.perf_counter() - start
            if now >= measure_from:
                lat[kind].append(took)
                if not ok:
                    errors[kind][why] = errors[kind].get(why, 0) + 1

    async def sample_rss():
        await asyncio.sleep(warmup)
        rss["after_warmup"] = rss_now()
        peak = rss["after_warmup"]
        while time.monotonic() < stop_at:
            await asyncio.sleep(1)
            peak = max(peak, rss_now())
        rss["end"] = rss_now()
        rss["peak"] = peak

    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=120) as client:
        await asyncio.gather(sample_rss(), *(client_loop(i, client) for i in range(n_clients)))
    return {"latency": lat, "errors": errors, "rss": rss, "measured_s": seconds}


def in_process_similar(lib_path: str, ids: list[str], n: int, seed: int) -> list[float]:
    """The peer: the same query through the Python API, sequentially, in this process."""
    from mir.catalog import Library
    from mir.similar import open_library_index
    from mir.similar import similar

    li = open_library_index(Library(lib_path))
    rng = random.Random(seed)
    similar(li, tracks=[ids[0]], k=10)  # warm: metadata, memory map
    out = []
    for _ in range(n):
        start = time.perf_counter()
        similar(li, tracks=[rng.choice(ids)], k=10)
        out.append(time.perf_counter() - start)
    return out


def summary(values: list[float]) -> dict:
    if not values:
        return {"n": 0}
    ms = np.asarray(values) * 1000
    return {"n": int(ms.size), "p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99)),
            "max_ms": float(ms.max())}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("library", metavar="LIB")
    p.add_argument("--seconds", type=float, default=60, help="measured seconds (default 60)")
    p.add_argument("--warmup", type=float, default=10, help="seconds before measuring (default 10)")
    p.add_argument("--clients", type=int, default=50, help="concurrent clients (default 50)")
    p.add_argument("--mix", default="similar=40,track=30,audio=25,upload=5", help="endpoint weights")
    p.add_argument("--workers", type=int, default=1, help="server processes (mir serve --workers; default 1)")
    p.add_argument("--upload", default=None, metavar="FILE", help="audio file to upload (default: a library track)")
    p.add_argument("--peer-queries", type=int, default=300, help="in-process similar() calls (default 300)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="benchmarks/results/serve.json")
    args = p.parse_args(argv)
    mix = parse_mix(args.mix)

    import httpx

    port = free_port()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    log = out.with_suffix(".server.log")
    proc = start_server(args.library, port, log, args.workers)
    base = f"http://127.0.0.1:{port}"
    try:
        async def prepare():
            async with httpx.AsyncClient(base_url=base, timeout=120) as c:
                await wait_ready(c, proc)
                tracks = await catalogue(c)
                detail = (await c.get(f"/tracks/{tracks[0]['id']}")).json()
                return tracks, detail

        tracks, detail = asyncio.run(prepare())
        upload = Path(args.upload or detail["path"]).read_bytes()
        print(f"server pid {proc.pid} on {base}; {len(tracks)} tracks; upload {len(upload) / 1e6:.2f} MB; "
              f"{args.clients} clients, {args.warmup:g} s warm-up + {args.seconds:g} s measured; mix {mix}",
              file=sys.stderr)
        load_before = os.getloadavg()
        res = asyncio.run(run_clients(base, args.clients, mix, tracks, upload, args.seconds, args.warmup, proc.pid,
                                      args.seed))
        load_after = os.getloadavg()
    finally:
        proc.terminate()
        proc.wait(20)
    peer = summary(in_process_similar(args.library, [t["id"] for t in tracks], args.peer_queries, args.seed))

    rows = {k: {**summary(v), "errors": sum(res["errors"][k].values()), "error_kinds": res["errors"][k],
                "per_s": len(v) / args.seconds} for k, v in res["latency"].items()}
    all_lat = [x for v in res["latency"].values() for x in v]
    total = {**summary(all_lat), "errors": sum(r["errors"] for r in rows.values()), "per_s": len(all_lat) / args.seconds}
    rss = res["rss"]
    print(f"\n{'endpoint':10} {'requests':>9} {'req/s':>7} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'errors':>7}")
    for name, r in [*rows.items(), ("all", total)]:
        print(f"{name:10} {r['n']:>9} {r['per_s']:>7.1f} {r.get('p50_ms', 0):>8.1f} {r.get('p99_ms', 0):>8.1f} "
              f"{r.get('max_ms', 0):>8.1f} {r['errors']:>7}")
    print(f"{'peer':10} {peer['n']:>9} {'':>7} {peer['p50_ms']:>8.1f} {peer['p99_ms']:>8.1f} {peer['max_ms']:>8.1f}"
          "  (similar() in-process, sequential)")
    print(f"\nserver RSS: {rss['after_warmup'] / 2**20:.0f} MiB after warm-up, {rss['end'] / 2**20:.0f} MiB at the end "
          f"(x{rss['end'] / rss['after_warmup']:.2f}), peak {rss['peak'] / 2**20:.0f} MiB; "
          f"load average {load_before[0]:.1f} -> {load_after[0]:.1f}; {os.cpu_count()} CPUs")
    doc = {"library": os.path.abspath(args.library), "tracks": len(tracks), "clients": args.clients, "mix": mix,
           "workers": args.workers,
           "warmup_s": args.warmup, "seconds": args.seconds, "upload_bytes": len(upload), "endpoints": rows,
           "all": total, "peer_similar_in_process": peer, "rss_bytes": rss,
           "rss_ratio_end_to_warm": rss["end"] / rss["after_warmup"], "loadavg": [load_before, load_after],
           "cpus": os.cpu_count(), "python": platform.python_version(), "command": " ".join(sys.argv)}
    out.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
