"""Tagging throughput on CPU: mir (decode → log-mel → batched CNN → aggregation) against a plain loop.

    python benchmarks/tagging.py [--audio DIR] [--clips 100] [--baseline-clips 12] [--seconds 1.5]
                                 [--no-compile] [--no-presets] [--no-default-model]
                                 [--out benchmarks/results/tagging.json]

Audio: ``--clips`` files from ``--audio`` (default ``mir-demo/collection/audio`` under the current
directory, the demo collection that ``make demo`` renders: 30 s clips in flac/ogg/mp3/wav); when that
folder is missing or holds too few files, generated 30 s clips (benchmarks/analysis.py's synthesiser).
Models: the ``short_chunk`` and ``fast`` presets with random weights (50 tags, 10 genres): speed
does not depend on the weights (``--no-presets`` skips sections 2 and 3 for them); and the shipped
default model (``mir/models/default/default.pt``: a ``fast`` backbone + a track-level head that also
needs whole-track descriptors computed from the audio), in sections 3 and 4 when it is installed.

Sections
1. peak: this machine's fp32 matmul rate (4096² torch.matmul, best of several), the yardstick.
2. CNN: chunks/s and GFLOP/s (2 × ``conv_macs_per_chunk``) per setting (batch size, memory format,
   bf16 autocast, torch.compile, torch threads), each the best of three timed windows.
3. end to end, on the same ``--baseline-clips`` files: the loop a user would write (per file
   ``librosa.load`` → ``melspectrogram`` + ``power_to_db(top_db=None)`` → the model on one chunk at a time, fp32,
   eval mode under ``torch.no_grad``) against :func:`mir.tagging.predict_files` in several settings;
   then mir alone on all ``--clips`` files for the realtime factor of both models. For the default
   model the plain loop also runs ``mir.features.describe`` per file (all descriptors, loudness
   included) and the track head on the pooled chunk outputs + descriptors; mir computes the log-mel
   and the head's descriptors in one pass (``describe_with_logmel``, tempo + key only).
4. default model stages: decode, log-mel alone, log-mel + descriptors, ``describe``, and backbone +
   head on ready log-mels, each alone on all ``--clips`` files with 1 torch and 1 BLAS thread (as in a
   ``mir tag`` worker), with their shares of the serial total.

"1 thread" rows cap numpy's BLAS threads as well as torch's (:func:`mir.parallel.limit_threads`): on a
loaded machine, BLAS threads oversubscribing the cores slow the descriptor maths several-fold.

Timings on a shared machine are noisy; every number is the best of its repeats and the load
average is recorded. Not a test: nothing asserts.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
DEMO_AUDIO = Path("mir-demo") / "collection" / "audio"  # what `make demo` (mir demo --dir mir-demo) renders
N_TAGS, N_GENRES = 50, 10
SR, N_FFT, HOP, N_MELS = 22050, 1024, 512, 128


# --- inputs ----------------------------------------------------------------------------------------
def pick_audio(folder: Path | None, clips: int, seconds: float = 30.0) -> list[Path]:
    from mir.audio import is_audio_path

    if folder is not None and not folder.is_dir():
        print(f"no audio folder {folder} (`make demo` renders the demo collection there); generating clips instead",
              file=sys.stderr)
    if folder is not None and folder.is_dir():
        files = sorted(p for p in folder.rglob("*") if p.is_file() and is_audio_path(p))
        if len(files) >= clips:
            step = len(files) / clips  # spread over genres and formats
            return [files[int(i * step)] for i in range(clips)]
        print(f"only {len(files)} files in {folder}; generating instead", file=sys.stderr)
    sys.path.insert(0, str(HERE))
    from analysis import generate  # noqa: E402  (benchmarks/analysis.py)

    return generate(HERE / "results" / f"audio-{clips}x{int(seconds)}s", clips, seconds)


def models():
    from mir.models import build_model, fast, short_chunk

    torch.manual_seed(0)
    return {name: (cfg, build_model(cfg).eval())
            for name, cfg in (("short_chunk", short_chunk(n_tags=N_TAGS, n_genres=N_GENRES)),
                              ("fast", fast(n_tags=N_TAGS, n_genres=N_GENRES)))}


# --- timing helpers --------------------------------------------------------------------------------
def best_rate(fn, work: float, *, seconds: float, repeats: int = 3) -> float:
    """Best ``work / time`` over ``repeats`` windows of at least ``seconds`` each (after one warm-up)."""
    fn()
    best = 0.0
    for _ in range(repeats):
        n, t0 = 0, time.perf_counter()
        while True:
            fn()
            n += 1
            dt = time.perf_counter() - t0
            if dt >= seconds:
                break
        best = max(best, n * work / dt)
    return best


def matmul_peak(seconds: float) -> dict:
    """FLOP/s of a 4096² matmul per dtype and torch thread count (best of 4 windows)."""
    out = {}
    threads = torch.get_num_threads()
    for n_threads in sorted({1, threads}):
        torch.set_num_threads(n_threads)
        try:
            for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
                a, b = torch.randn(4096, 4096, dtype=dtype), torch.randn(4096, 4096, dtype=dtype)
                out[f"{name}_{n_threads}thr"] = best_rate(lambda: torch.matmul(a, b), 2 * 4096**3,
                                                          seconds=seconds, repeats=4)
        finally:
            torch.set_num_threads(threads)
    out["fp32"] = max(v for k, v in out.items() if k.startswith("fp32_"))
    out["bf16"] = max(v for k, v in out.items() if k.startswith("bf16_"))
    return out


# --- CNN settings ----------------------------------------------------------------------------------
def cnn_sweep(name, cfg, model, *, peak: float, seconds: float, compile: bool) -> list[dict]:
    from mir.models import conv_macs_per_chunk
    from mir.models.inference import cpu_supports_bf16

    flops = 2 * conv_macs_per_chunk(cfg)
    threads = torch.get_num_threads()
    settings = []  # (batch, channels_last, bf16, threads, compile)
    for n_threads in sorted({threads, 1}, reverse=True):
        settings += [(1, False, False, n_threads, False), (1, True, False, n_threads, False),
                     (16, False, False, n_threads, False), (16, True, False, n_threads, False),
                     (64, True, False, n_threads, False)]
        if cpu_supports_bf16():
            settings += [(16, True, True, n_threads, False), (64, True, True, n_threads, False)]
    if compile:
        settings += [(16, True, False, 1, True)]
        if cpu_supports_bf16():
            settings += [(16, True, True, 1, True)]
    rows = []
    for bs, cl, bf16, n_threads, comp in settings:
        m = model.to(memory_format=torch.channels_last if cl else torch.contiguous_format)
        x = torch.randn(bs, 1, cfg.n_mels, cfg.chunk_frames)
        if cl:
            x = x.contiguous(memory_format=torch.channels_last)
        note = ""
        if comp:
            t0 = time.perf_counter()
            m = torch.compile(m, dynamic=True)
            with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                m(x)
            note = f"compile {time.perf_counter() - t0:.0f} s"

        def step():
            with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                m(x)

        torch.set_num_threads(n_threads)
        try:
            rate = best_rate(step, bs, seconds=seconds)
        finally:
            torch.set_num_threads(threads)
        row = dict(model=name, batch=bs, channels_last=cl, precision="bf16" if bf16 else "fp32", threads=n_threads,
                   compile=comp, chunks_per_s=rate, gflops=rate * flops / 1e9, peak_fraction=rate * flops / peak,
                   audio_x_realtime=rate * cfg.chunk_frames * HOP / SR, note=note)
        rows.append(row)
        print(f"  {name:11s} batch {bs:3d} {'channels_last' if cl else 'contiguous   '} {row['precision']} "
              f"{n_threads} thr{' compiled' if comp else '         '}  {rate:7.1f} chunks/s  "
              f"{row['gflops']:6.1f} GFLOP/s  {row['peak_fraction']:5.0%} of fp32 peak  {note}", flush=True)
    model.to(memory_format=torch.contiguous_format)
    return rows


# --- end to end ------------------------------------------------------------------------------------
def plain_mel(path) -> tuple[np.ndarray, np.ndarray, int]:
    """``(y, S, sr)`` as a user would get them: ``librosa.load`` → ``melspectrogram`` → ``power_to_db``
    (``top_db=None`` as mir's log-mel: librosa's default 80 dB floor changes the default model's tags by up to 0.16)."""
    import librosa

    y, sr = librosa.load(path, sr=SR, mono=True)
    S = librosa.power_to_db(librosa.feature.melspectrogram(y=y, sr=sr, n_fft=N_FFT, hop_length=HOP, n_mels=N_MELS),
                            top_db=None)
    return y, S, sr


def plain_chunks(model, cfg, S) -> dict[str, np.ndarray]:
    """The model on one chunk of ``S`` at a time (fp32, ``torch.no_grad``): per-chunk probabilities and embeddings."""
    out = {"tag_probs": [], "genre_probs": [], "embedding": []}
    n = max(1, S.shape[1] // cfg.chunk_frames)
    for i in range(n):
        chunk = S[:, i * cfg.chunk_frames:(i + 1) * cfg.chunk_frames]
        if chunk.shape[1] < cfg.chunk_frames:
            chunk = np.pad(chunk, ((0, 0), (0, cfg.chunk_frames - chunk.shape[1])), constant_values=-100.0)
        with torch.no_grad():
            o = model(torch.from_numpy(np.ascontiguousarray(chunk, dtype=np.float32))[None])
        out["tag_probs"].append(torch.sigmoid(o.tags)[0].numpy())
        out["genre_probs"].append(torch.softmax(o.genre, -1)[0].numpy())
        out["embedding"].append(o.embedding[0].numpy())
    return {k: np.stack(v) for k, v in out.items()}


def baseline(model, cfg, paths) -> tuple[np.ndarray, np.ndarray]:
    """What a user would write: one file, one chunk at a time, fp32, no batching; mean over chunks."""
    model.eval()
    all_probs, all_genre = [], []
    for path in paths:
        _, S, _ = plain_mel(path)
        chunks = plain_chunks(model, cfg, S)
        all_probs.append(chunks["tag_probs"].mean(axis=0))
        all_genre.append(chunks["genre_probs"].mean(axis=0))
    return np.array(all_probs), np.array(all_genre)


def baseline_track_head(model, cfg, paths) -> tuple[np.ndarray, np.ndarray]:
    """The same loop for a model with a track head: the backbone chunk by chunk as :func:`baseline`, then
    per file ``mir.features.describe`` (all descriptors) and the head on the pooled chunks + descriptors."""
    from mir.features import describe
    from mir.models.track_head import context_of, pool_chunks

    model.eval()
    all_probs, all_genre = [], []
    for path in paths:
        y, S, sr = plain_mel(path)
        chunks = plain_chunks(model, cfg, S)
        pooled = pool_chunks(chunks, np.array([len(chunks["tag_probs"])]))
        context = context_of(describe(y, sr=sr))
        with torch.no_grad():
            out = model.track_head(torch.from_numpy(pooled), torch.from_numpy(context))
        all_probs.append(torch.sigmoid(out.tags)[0].numpy())
        all_genre.append(torch.softmax(out.genre, -1)[0].numpy())
    return np.array(all_probs), np.array(all_genre)


def with_threads(n: int, fn):
    """``fn()`` with ``n`` torch threads and ``n`` BLAS/OpenMP threads (numpy's maths: log-mel, descriptors)."""
    from mir.parallel import limit_threads

    with limit_threads(n):
        return fn()


def mir_in_process(model, cfg, paths, *, precision="fp32", prefetch=1, n_chunks=None):
    """mir.tagging.predict_files: decode + log-mel (a thread ahead) → batched CNN → aggregation."""
    from mir.tagging import predict_files

    return predict_files(model, paths, chunk_frames=cfg.chunk_frames, n_chunks=n_chunks, precision=precision,
                         prefetch=prefetch)


def _worker_files(checkpoint: str, paths: list, precision: str, n_chunks) -> dict:
    """One worker process (1 torch thread): decode → log-mel → CNN for its share of the files."""
    from mir.models import load_checkpoint
    from mir.models.inference import prepare_model
    from mir.tagging import predict_files

    key = (checkpoint,)
    if _WORKER.get("key") != key:
        loaded = load_checkpoint(checkpoint)
        _WORKER.update(key=key, model=prepare_model(loaded.model), cfg=loaded.config)
    return predict_files(_WORKER["model"], paths, chunk_frames=_WORKER["cfg"].chunk_frames, n_chunks=n_chunks,
                         precision=precision, prefetch=0)


_WORKER: dict = {}


def mir_workers(pool, checkpoint, paths, *, precision="fp32", n_chunks=None, per_task=4):
    """mir with one process per core, each running whole files (the `mir tag --workers N` layout)."""
    tasks = [paths[i:i + per_task] for i in range(0, len(paths), per_task)]
    results = list(pool.map(_worker_files, [checkpoint] * len(tasks), tasks, [precision] * len(tasks),
                            [n_chunks] * len(tasks)))
    return {k: np.concatenate([r[k] for r in results]) for k in results[0]}


def timed(fn, repeats: int = 1):
    best, out = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def audio_seconds(paths) -> float:
    from mir import audio

    return float(sum(audio.probe(p).duration for p in paths))


def save_random_checkpoint(folder: Path, name: str, cfg, model) -> Path:
    import dataclasses

    from mir.config import get_config
    from mir.models import save_checkpoint

    path = folder / f"{name}.pt"
    save_checkpoint(path, model, config=cfg, tags=[f"t{i}" for i in range(cfg.n_tags)],
                    genres=[f"g{i}" for i in range(cfg.n_genres)], thresholds=[0.5] * cfg.n_tags, metrics={},
                    analysis=dataclasses.asdict(get_config().analysis))
    return path


def end_to_end(name, cfg, model, few, paths, *, checkpoint: Path, bf16: bool, plain=baseline) -> tuple[list[dict], dict]:
    """``plain`` (the peer) against mir on ``few``, then mir on ``paths``; rows and the outputs' agreement."""
    from mir.models.inference import prepare_model
    from mir.parallel import process_pool

    threads = torch.get_num_threads()
    few_s, all_s = audio_seconds(few), audio_seconds(paths)
    rows = []

    peer = "baseline loop" if plain is baseline else "baseline loop + describe + head"

    def add(method, files, seconds, audio_s, base=None):
        rows.append(dict(model=name, method=method, files=files, seconds=seconds, x_realtime=audio_s / seconds,
                         speedup=(base / seconds) if base else None))
        r = rows[-1]
        sp = f"{r['speedup']:6.1f}x" if r["speedup"] else "       "
        print(f"  {name:11s} {method:58s} {files:4d} files {seconds:7.2f} s {r['x_realtime']:7.1f}x realtime {sp}",
              flush=True)

    model.to(memory_format=torch.contiguous_format)
    plain(model, cfg, few[:1])  # warm-up: librosa's first call compiles and caches
    t_base, (p_base, g_base) = timed(lambda: plain(model, cfg, few))
    add(f"{peer}, torch default ({threads} threads)", len(few), t_base, few_s, t_base)
    if threads > 1:
        t1, _ = timed(lambda: with_threads(1, lambda: plain(model, cfg, few)))
        add(f"{peer}, 1 thread", len(few), t1, few_s, t_base)

    prepare_model(model)  # eval + channels_last from here on
    precisions = ["fp32", "bf16"] if bf16 else ["fp32"]
    outs = {}
    mir_in_process(model, cfg, few[:1])  # warm-up
    for prec in precisions:
        t, outs[f"in-process {prec}"] = timed(lambda: mir_in_process(model, cfg, few, precision=prec), repeats=2)
        add(f"mir in-process {prec}, {threads} threads, decode thread", len(few), t, few_s, t_base)
        if threads > 1:
            t, _ = timed(lambda: with_threads(1, lambda: mir_in_process(model, cfg, few, precision=prec)), repeats=2)
            add(f"mir in-process {prec}, 1 thread, decode thread", len(few), t, few_s, t_base)
    t, _ = timed(lambda: mir_in_process(model, cfg, few, prefetch=0), repeats=2)
    add(f"mir in-process fp32, {threads} threads, decode in series", len(few), t, few_s, t_base)
    if threads > 1:
        with process_pool(threads, preload=["mir.tagging.worker", "mir.models", "torch"], threads_per_worker=1) as pool:
            mir_workers(pool, str(checkpoint), few[:threads])  # warm-up: load the model in each worker
            for prec in precisions:
                t, outs[f"workers {prec}"] = timed(lambda: mir_workers(pool, str(checkpoint), few, precision=prec),
                                                   repeats=2)
                add(f"mir {threads} worker processes x 1 thread, {prec}", len(few), t, few_s, t_base)
            prec = precisions[-1]
            t, _ = timed(lambda: mir_workers(pool, str(checkpoint), few, precision=prec, n_chunks=1))
            add(f"  (--chunks 1: one chunk per track, less work) {prec}", len(few), t, few_s, t_base)
            # realtime factor on all files, best layout per precision
            for prec in precisions:
                t, _ = timed(lambda: mir_workers(pool, str(checkpoint), paths, precision=prec))
                add(f"mir {threads} worker processes x 1 thread, {prec}", len(paths), t, all_s)
            t, _ = timed(lambda: mir_in_process(model, cfg, paths))
            add(f"mir in-process fp32, {threads} threads, decode thread", len(paths), t, all_s)
    else:
        for prec in precisions:
            t, _ = timed(lambda: mir_in_process(model, cfg, paths, precision=prec))
            add(f"mir in-process {prec}", len(paths), t, all_s)
    ref = outs["in-process fp32"]
    agree = {"max_abs_tag_prob_diff_vs_baseline": float(np.abs(ref["tag_probs"] - p_base).max()),
             "max_abs_genre_prob_diff_vs_baseline": float(np.abs(ref["genre_probs"] - g_base).max())}
    if "workers fp32" in outs:
        agree["workers_equal_in_process_fp32"] = bool(all(np.array_equal(outs["workers fp32"][k], ref[k]) for k in ref))
    if bf16:
        b = outs["in-process bf16"]
        agree |= {"max_abs_tag_prob_diff_bf16_vs_fp32": float(np.abs(b["tag_probs"] - ref["tag_probs"]).max()),
                  "max_abs_genre_prob_diff_bf16_vs_fp32": float(np.abs(b["genre_probs"] - ref["genre_probs"]).max()),
                  "min_embedding_cosine_bf16_vs_fp32": float(np.sum(b["embedding"] * ref["embedding"], 1).min())}
    print(f"  {name:11s} agreement: " + ", ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}"
                                                  for k, v in agree.items()), flush=True)
    model.to(memory_format=torch.contiguous_format)
    return rows, agree


# --- the shipped default model ---------------------------------------------------------------------
def default_stages(loaded, paths, *, bf16: bool, threads: int = 1) -> list[dict]:
    """Where the default model's time goes: each stage alone on the same files, best of two, with ``threads``
    torch and BLAS threads (1 = as in each ``mir tag`` worker): decode, log-mel alone, log-mel + the track
    head's descriptors in one pass (``describe_with_logmel``, what :func:`mir.tagging.predict_files` runs),
    all descriptors (``mir.features.describe``, the plain loop's), backbone + head on the ready log-mels."""
    from mir import audio
    from mir.config import get_config
    from mir.features import describe, describe_with_logmel, log_mel
    from mir.models.inference import predict_logmels, prepare_model
    from mir.models.track_head import context_of

    a = get_config().analysis
    params = {"sr": a.sample_rate, "n_fft": a.n_fft, "hop_length": a.hop_length, "n_mels": a.n_mels,
              "fmin": a.fmin, "fmax": a.fmax}
    audio_s = audio_seconds(paths)
    model = prepare_model(loaded.model)

    def run() -> dict[str, float]:
        t = {}
        t["decode"], ys = timed(lambda: [audio.load(p, sr=a.sample_rate) for p in paths], repeats=2)
        warm = ys[0][: 5 * a.sample_rate]
        describe_with_logmel(warm, **params), describe(warm, sr=a.sample_rate)  # build the filter banks once
        t["log-mel"], _ = timed(lambda: [log_mel(y, **params) for y in ys], repeats=2)
        t["both"], both = timed(lambda: [describe_with_logmel(y, **params, include=("tempo", "key")) for y in ys],
                                repeats=2)
        t["describe"], _ = timed(lambda: [describe(y, sr=a.sample_rate) for y in ys], repeats=2)
        mels, context = [m for m, _ in both], np.concatenate([context_of(d) for _, d in both])
        predict_logmels(model, mels[:1], chunk_frames=loaded.config.chunk_frames, context=context[:1])  # warm-up
        for prec in ["fp32", "bf16"] if bf16 else ["fp32"]:
            t[prec], _ = timed(lambda prec=prec: predict_logmels(model, mels, chunk_frames=loaded.config.chunk_frames,
                                                                 precision=prec, context=context), repeats=2)
        return t

    t = with_threads(threads, run)
    loaded.model.to(memory_format=torch.contiguous_format)
    total = t["decode"] + t["both"] + t["fp32"]  # predict_files' work in fp32, in series
    rows = [("decode (mir.audio.load)", t["decode"], True),
            ("log-mel alone (mir.features.log_mel)", t["log-mel"], False),
            ("log-mel + head descriptors (describe_with_logmel)", t["both"], True),
            ("  of which descriptors (that minus log-mel alone)", t["both"] - t["log-mel"], True),
            ("all descriptors (mir.features.describe, the plain loop's)", t["describe"], False),
            ("backbone + head on ready log-mels, fp32", t["fp32"], True)]
    if bf16:
        rows.append(("backbone + head on ready log-mels, bf16", t["bf16"], False))
    rows.append(("total in series (decode + describe_with_logmel + CNN fp32)", total, True))
    out = []
    for stage, seconds, in_total in rows:
        share = seconds / total if in_total else None
        out.append({"stage": stage, "files": len(paths), "threads": threads, "seconds": seconds,
                    "x_realtime": audio_s / max(seconds, 1e-9), "share_of_fp32_total": share})
        sh = f"{share:5.0%} of total" if share is not None else ""
        print(f"  {stage:58s} {len(paths):4d} files {seconds:7.2f} s {audio_s / max(seconds, 1e-9):7.1f}x realtime  "
              f"{sh}", flush=True)
    return out


def default_model_section(path: Path, few, paths, *, bf16: bool) -> tuple[list[dict], dict, dict]:
    """The shipped default model (backbone + track head) end to end against its plain loop, then its stages."""
    from mir.models import load_checkpoint

    loaded = load_checkpoint(path)
    print(f"default model {loaded.model_id} ({path.name}): end to end incl. the descriptor pass; the plain loop "
          f"computes all descriptors with mir.features.describe per file")
    rows, agree = end_to_end("default", loaded.config, loaded.model, few, paths, checkpoint=path, bf16=bf16,
                             plain=baseline_track_head)
    print(f"default model, stages alone on the {len(paths)} files (1 torch + BLAS thread, as a `mir tag` worker; "
          "best of 2):")
    stages = default_stages(loaded, paths, bf16=bf16)
    info = {"path": str(path), "model_id": loaded.model_id, "widths": list(loaded.config.widths),
            "chunk_frames": loaded.config.chunk_frames, "stages": stages}
    return rows, agree, info


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--audio", type=Path, default=DEMO_AUDIO,
                        help=f"folder of audio files (default {DEMO_AUDIO}; generated clips when missing)")
    parser.add_argument("--clips", type=int, default=100)
    parser.add_argument("--baseline-clips", type=int, default=12)
    parser.add_argument("--seconds", type=float, default=1.5, help="length of each CNN timing window")
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile settings")
    parser.add_argument("--presets", action=argparse.BooleanOptionalAction, default=True,
                        help="time the short_chunk and fast presets (random weights): CNN sweep and end to end")
    parser.add_argument("--default-model", action=argparse.BooleanOptionalAction, default=None,
                        help="time the shipped default model (backbone + track head) end to end "
                             "(default: on when mir/models/default/default.pt exists)")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "tagging.json")
    args = parser.parse_args()

    import tempfile

    from mir.models.inference import cpu_supports_bf16
    from mir.models.checkpoint import DEFAULT_CHECKPOINT as DEFAULT_MODEL

    bf16 = cpu_supports_bf16()
    if args.default_model is None:
        args.default_model = DEFAULT_MODEL.is_file()
    result = {
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                    "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
                    "bf16_native": bf16, "load_average_start": os.getloadavg()},
        "command": " ".join(["python", *sys.argv]),
    }
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, native bf16: {bf16}, "
          f"load average {os.getloadavg()[0]:.1f}")
    peak = matmul_peak(args.seconds)
    result["peak_gflops"] = {k: v / 1e9 for k, v in peak.items()}
    print("matmul peak GFLOP/s: " + ", ".join(f"{k} {v / 1e9:.1f}" for k, v in peak.items()))

    nets = models() if args.presets else {}
    if nets:
        print("CNN alone (random input, per setting the best of 3 windows; fraction of the best fp32 matmul):")
    result["cnn"] = []
    for name, (cfg, model) in nets.items():
        result["cnn"] += cnn_sweep(name, cfg, model, peak=peak["fp32"], seconds=args.seconds,
                                   compile=not args.no_compile)

    paths = pick_audio(args.audio, args.clips)
    few = paths[: args.baseline_clips]
    print(f"end to end (decode → log-mel → CNN → mean over chunks): baseline and mir on the same {len(few)} files, "
          f"then mir on {len(paths)} files; speedup = baseline at torch defaults / this")
    result["end_to_end"], result["agreement"] = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, (cfg, model) in nets.items():
            ckpt = save_random_checkpoint(Path(tmp), name, cfg, model)
            rows, agree = end_to_end(name, cfg, model, few, paths, checkpoint=ckpt, bf16=bf16)
            result["end_to_end"] += rows
            result["agreement"][name] = agree
    if args.default_model:
        rows, agree, result["default_model"] = default_model_section(DEFAULT_MODEL, few, paths, bf16=bf16)
        result["end_to_end"] += rows
        result["agreement"]["default"] = agree

    result["machine"]["load_average_end"] = os.getloadavg()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
