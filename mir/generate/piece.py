"""`mir generate`: retrieve neighbours, sample a token sequence under constraints, render it, say what it is made of.

:func:`generate` is the whole call; the provenance JSON (``<out stem>.provenance.json`` beside the audio)
holds the seeds, the neighbours with their scores, the generator and tagger ids, the RNG seed, the
settings, and per output beat: source track, source time, stretch ratio and semitone shift.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from .. import atomic, audio
from ..catalog import Library
from ..config import get_config
from ..errors import ModelError, ParameterError
from ..features.beats import SEGMENT_FEATURES
from .model import LoadedGenerator, condition_vector, load_generator
from .render import Run, fit_shifts, level, limit, mix_loudness, overlap_add, render_run, stretcher_name
from .retrieve import Filters, embeddings, load_tags, open_library_index, parse_key, retrieve
from .sample import Constraints, Pool, longest_source_run, max_share, sample_piece
from .segments import load_segments
from .train import default_path

MIN_SECONDS, MAX_SECONDS = 10.0, 600.0
STEREO_RATE = 44100  # ``stereo=True`` output: 44.1 kHz, two channels
PROVENANCE_SUFFIX = ".provenance.json"
CHROMA = [SEGMENT_FEATURES.index(f"chroma{i}") for i in range(12)]


@dataclass
class GenerateResult:
    path: Path
    provenance_path: Path
    provenance: dict

    def summary(self) -> str:
        p = self.provenance
        srcs = sorted(p["sources"].items(), key=lambda kv: -kv[1])
        return (f"{self.path}: {p['duration']:.1f} s, {p['n_beats']} beats at {p['tempo']:.1f} BPM in {p['key']}, "
                f"from {len(srcs)} of {len(p['neighbours'])} neighbours (largest share {p['checks']['max_share']:.0%}, "
                f"longest source run {p['checks']['longest_run']} beats); stretch: {p['stretcher']}; "
                f"seed {p['seed']}; {p['seconds']:.1f} s ({p['duration'] / max(p['seconds'], 1e-9):.0f}x realtime)")


def provenance_path(path: str | os.PathLike) -> Path:
    path = Path(path)
    return path.with_name(path.stem + PROVENANCE_SUFFIX)


def find_provenance(path: str | os.PathLike) -> dict | None:
    """The provenance written beside a generated audio file, or None."""
    p = provenance_path(path)
    if not p.is_file():
        return None
    try:
        return json.loads(p.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def describe_provenance(prov: dict) -> str:
    """A few lines on what a generated piece is made of (for `mir show`)."""
    srcs = sorted(prov.get("sources", {}).items(), key=lambda kv: -kv[1])
    lines = [f"generated  by generator {prov.get('generator_id')} (tagger {prov.get('tagger_id')}), seed {prov.get('seed')}, "
             f"{prov.get('duration', 0):.1f} s, {prov.get('tempo', 0):.1f} BPM, {prov.get('key')}, stretch {prov.get('stretcher')}",
             f"seeds      {json.dumps(prov.get('seeds'))}",
             "sources    " + ", ".join(f"{t[:12]} {c} beats" for t, c in srcs[:8]) + (" …" if len(srcs) > 8 else "")]
    return "\n".join(lines)


def _model_step(gen: LoadedGenerator, cond: np.ndarray):
    """Log-probabilities of the next token: the Transformer's, mixed with the bigram and the cache when the
    checkpoint has a mixture (as its perplexity was measured)."""
    net, c, mix = gen.model, gen.config.context, gen.mixture
    cond_t = torch.as_tensor(cond[None, :], dtype=torch.float32)

    def step(tokens: list[int], bars: np.ndarray) -> np.ndarray:
        t = len(tokens)
        s = max(0, t + 1 - c)
        prev = [net.start_token if s == 0 else tokens[s - 1]] + tokens[s:t]
        with torch.inference_mode():
            logits = net(torch.as_tensor([prev]), torch.as_tensor(bars[None, s:t + 1].astype(np.int64)), cond_t)
        if mix is None:
            return logits[0, -1].numpy()
        p = torch.softmax(logits[0, -1].double(), dim=-1).numpy()
        return np.log(np.maximum(mix.probs(p, tokens), 1e-300))

    return step


def _bigram_step(gen: LoadedGenerator, seg):
    """Logits of a bigram over every library track's tokens (add-one smoothing), for the baseline."""
    k = gen.codebook.size
    tok = gen.codebook.encode(seg.features)
    counts = np.ones((k + 1, k))
    same = np.r_[False, seg.track[1:] == seg.track[:-1]]
    prev = np.where(same, np.r_[k, tok[:-1]], k)
    np.add.at(counts, (prev, tok), 1)
    logp = np.log(counts / counts.sum(axis=1, keepdims=True))
    return lambda tokens, bars: logp[tokens[-1] if tokens else k]


def _reporting(step, n: int, report):
    """``step`` that also reports the fraction of the ``n`` beats sampled (about 50 times in all)."""
    every = max(1, n // 50)

    def counted(tokens, bars):
        if len(tokens) % every == 0:
            report(len(tokens) / max(n, 1))
        return step(tokens, bars)

    return counted


def _parse_target_key(key: str | None, default: tuple[str, str]) -> tuple[str, str]:
    if key is None:
        return default
    tonic, mode = parse_key(key)
    return tonic, mode or "major"


def generate(lib: Library | str | os.PathLike, *, tracks: Sequence[str] = (), audio_file: str | os.PathLike | None = None,
             tags: Sequence[str] | str = (), user: str | None = None, events: str | os.PathLike | None = None,
             neighbours: int = 20, filters: Filters | None = None, duration: float = 60.0,
             out: str | os.PathLike = "piece.wav", seed: int = 0, temperature: float = 1.0, top_p: float = 0.95,
             tempo: float | None = None, key: str | None = None, structure: str | None = None,
             generator: str | os.PathLike | None = None, stretch: str = "auto", xfade: float = 0.03,
             constraints: Constraints = Constraints(), method: str = "model", stereo: bool = False,
             sources: int | None = 8,
             progress: Callable[[float, str], None] | None = None) -> GenerateResult:
    """Generate a piece in the style of the seeds' neighbours and write it (WAV/FLAC: mono at the analysis rate,
    or with ``stereo`` 44.1 kHz stereo rendered from the sources at their own rate and channels).

    Seeds: ``tracks`` (ids, prefixes or paths), ``audio_file``, ``tags``, or ``user`` + ``events``.
    ``tempo`` (BPM) and ``key`` ("A minor") default to the neighbours' median tempo and commonest key.
    ``method``: ``"model"`` (the generator), or the baselines ``"bigram"`` (a bigram over the library's tokens,
    same constraints) and ``"shuffle"`` (the neighbours' segments in a random order, no constraints).
    ``sources``: segments come from this many of the neighbours, those closest to the neighbours' mean
    embedding (``None``: all of them; never fewer than ``constraints.max_share`` needs).
    ``progress(fraction, stage)``, when given, is called as the work advances (fraction in 0-1).
    """
    report = progress or (lambda fraction, stage: None)
    if method not in ("model", "bigram", "shuffle"):
        raise ParameterError(f"unknown method {method!r}; use model, bigram or shuffle")
    t_start = time.monotonic()
    lib = lib if isinstance(lib, Library) else Library(lib)
    if not MIN_SECONDS <= duration <= MAX_SECONDS:
        raise ParameterError(f"duration {duration!r} s is outside {MIN_SECONDS:.0f}-{MAX_SECONDS:.0f} s")
    if not 0.02 <= xfade <= 0.05:
        raise ParameterError(f"crossfade {xfade!r} s is outside 0.02-0.05 s")
    if tempo is not None and not 30 <= tempo <= 300:
        raise ParameterError(f"tempo {tempo!r} BPM is outside 30-300")
    target_key = None if key is None else _parse_target_key(key, ("C", "major"))
    out = Path(out)
    if out.suffix.lower() not in (".wav", ".flac"):
        raise ParameterError(f"output {out} must end in .wav or .flac")
    stretcher = stretcher_name(stretch)
    gen_path = Path(generator) if generator else default_path(lib)
    if not gen_path.is_file():
        raise ModelError(f"no generator at {gen_path}; run `mir train-generator {lib.root}` first")
    report(0.02, "loading the generator")
    gen = load_generator(gen_path)
    seg = load_segments(lib)  # raises "run mir analyze" without a beats stage
    if gen.analysis != seg_version(lib):
        raise ModelError(f"generator {gen.model_id} was trained on beats analysis {gen.analysis}, the library has "
                         f"{seg_version(lib)}; run `mir train-generator {lib.root}` again")
    report(0.05, "retrieving neighbours")
    li = open_library_index(lib, gen.tagger_id)
    found = retrieve(li, tracks=tracks, audio=audio_file, tags=tags, user=user, events=events, k=neighbours,
                     filters=filters)
    nb = [t for t in found.track_ids if t in seg.tracks.index and seg.tracks.at[t, "n"] > 0]
    if len(nb) < 4:
        raise ParameterError(f"only {len(nb)} neighbours with beats were found (need 4 or more with at most "
                             f"{constraints.max_share:.0%} from each); widen the filters or raise --neighbours")
    info = seg.tracks.loc[nb]
    tempo = float(tempo or np.median(info["tempo"].astype(float)))
    if target_key is None:
        keys = (info["key"].astype(str) + " " + info["mode"].astype(str)).value_counts()
        target_key = tuple(keys.index[0].split(" "))
    meter = int(info["meter"].mode().iat[0]) if "meter" in info else 4

    # conditioning and candidate pool
    ids, _, emb = embeddings(lib, gen.tagger_id)
    row_of = {t: i for i, t in enumerate(ids)}
    tag_table = load_tags(lib, gen.tagger_id)
    probs = dict(zip(tag_table["track_id"], tag_table["tag_probs"]))
    cond = condition_vector(emb[[row_of[t] for t in nb]].mean(axis=0), tempo, target_key[0], target_key[1],
                            np.mean([np.asarray(probs[t], np.float32) for t in nb], axis=0), gen.n_tags)
    period = 60.0 / tempo
    n = int(round(duration / period))
    need = int(np.ceil(n / max(int(np.floor(constraints.max_share * n)), 1)))  # sources the share cap needs
    src = typical(emb[[row_of[t] for t in nb]], None if sources is None else max(sources, need))
    rows = seg.rows_of([nb[k] for k in src])
    local = {r: i for i, r in enumerate(rows)}
    succ_all = seg.successor()
    succ = np.array([local.get(int(succ_all[r]), -1) if succ_all[r] >= 0 else -1 for r in rows])
    pred = np.full(len(rows), -1)
    pred[succ[succ >= 0]] = np.flatnonzero(succ >= 0)
    pool = Pool(track=seg.track[rows].astype(np.int64), token=gen.codebook.encode(seg.features[rows]),
                bar_pos=seg.bar_pos[rows].astype(np.int64) % max(meter, 1), succ=succ, pred=pred,
                feats=gen.codebook.standardise(seg.features[rows]))
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one tiny model step at a time: more threads only add overhead
    try:
        if method == "shuffle":
            picks = np.resize(rng.permutation(len(pool)), n)
        else:
            step = _model_step(gen, cond) if method == "model" else _bigram_step(gen, seg)
            step = _reporting(step, n, lambda f: report(0.1 + 0.5 * f, "sampling"))
            picks = sample_piece(step, pool, n, meter=meter, rng=rng, temperature=temperature,
                                 top_p=top_p, constraints=constraints, structure=structure)
    finally:
        torch.set_num_threads(threads)
    srows = rows[picks]

    # render
    report(0.6, "rendering")
    target_lufs = float(np.median(info["loudness"].astype(float)))
    runs, starts, beats_out = [], [], []
    src_ids = seg.track_ids[seg.track[srows]]
    used = list(dict.fromkeys(src_ids))
    chroma = np.stack([seg.features[srows[src_ids == t]][:, CHROMA].sum(axis=0) for t in used])
    shift_of = dict(zip(used, (int(s_) for s_ in fit_shifts(chroma, np.array([(src_ids == t).sum() for t in used]),
                                                             *target_key))))
    sr = _working_rate(seg, used) if stereo else get_config().analysis.sample_rate
    i = 0
    while i < n:
        j = i + 1
        while j < n and srows[j] == srows[j - 1] + 1 and seg.track[srows[j]] == seg.track[srows[j - 1]]:
            j += 1
        r = srows[i:j]
        tid = seg.track_ids[seg.track[r[0]]]
        t = seg.tracks.loc[tid]
        shift = shift_of[tid]
        gain = float(np.clip(target_lufs - float(t["loudness"]), -12, 12)) if np.isfinite(t["loudness"]) else 0.0
        runs.append(Run(tid, np.r_[seg.start[r], seg.end[r[-1]]], i, shift, gain))
        starts.append(int(round(i * period * sr)))
        ratio = (j - i) * period / float(seg.end[r[-1]] - seg.start[r[0]])
        for q, rr in enumerate(r):
            beat_ratio = period / float(seg.end[rr] - seg.start[rr])
            beats_out.append({"beat": i + q, "time": round(xfade + (i + q) * period, 6), "track_id": tid,
                              "source_time": round(float(seg.start[rr]), 6),
                              "source_beat": int(seg.beat[rr]),
                              "stretch": round(beat_ratio if stretcher == "librosa" else ratio, 6),
                              "semitones": shift, "gain_db": round(gain, 3), "token": int(pool.token[picks[i + q]])})
        i = j
    chunks = []
    for r in runs:  # each run decoded on its own: a short span, not the whole track
        t0 = _span_start(r, xfade)
        y = _span(seg.tracks.at[r.track_id, "path"], t0, float(r.beats[-1]) + 4 * xfade + 0.05, sr, stereo)
        shifted = Run(r.track_id, r.beats - t0, r.first_beat, r.semitones, r.gain_db)
        chunks.append(render_run(y, sr, shifted, period, xfade, stretcher) * np.float32(10 ** (r.gain_db / 20)))
    length = int(round((n * period + xfade) * sr))
    y = overlap_add(chunks, starts, int(round(xfade * sr)), length)
    y = level(y, sr, target_lufs)
    out_sr = STEREO_RATE if stereo else sr
    if out_sr != sr:
        y = limit(audio.resample(y, sr, out_sr), out_sr)
    report(0.95, "writing")
    audio.save(out, y if stereo else y[0], out_sr)

    src = np.array([b["track_id"] for b in beats_out])
    src_beat = np.array([b["source_beat"] for b in beats_out])
    _, src_idx = np.unique(src, return_inverse=True)
    elapsed = time.monotonic() - t_start
    prov = {
        "format": "mir.generation", "format_version": 1, "audio": out.name, "library": str(lib.root),
        "seeds": found.seeds, "neighbours": [{"track_id": t, "score": round(s, 6)} for t, s in
                                             zip(found.track_ids, found.scores)],
        "generator_id": gen.model_id, "tagger_id": gen.tagger_id, "seed": int(seed), "method": method,
        "settings": {"temperature": temperature, "top_p": top_p, "structure": structure, "xfade": xfade,
                     "max_run": constraints.max_run, "max_share": constraints.max_share, "neighbours": neighbours,
                     "sources": sources},
        "tempo": tempo, "key": f"{target_key[0]} {target_key[1]}", "meter": meter, "sample_rate": out_sr,
        "channels": int(y.shape[0]), "duration": y.shape[1] / out_sr, "n_beats": n, "stretcher": stretcher,
        "target_loudness": round(target_lufs, 3), "loudness": round(mix_loudness(y, out_sr), 3),
        "peak": round(float(np.abs(y).max()), 6),
        "checks": {"longest_run": longest_source_run(src_idx, src_beat), "max_share": max_share(src_idx)},
        "sources": {t: int(c) for t, c in zip(*np.unique(src, return_counts=True))},
        "seams": [b["time"] for k_, b in enumerate(beats_out) if k_ and not (
            b["track_id"] == beats_out[k_ - 1]["track_id"] and b["source_beat"] == beats_out[k_ - 1]["source_beat"] + 1)],
        "beats": beats_out, "seconds": round(elapsed, 3),
    }
    ppath = provenance_path(out)
    atomic.write_text(ppath, json.dumps(prov, indent=1))
    report(1.0, "done")
    return GenerateResult(out, ppath, prov)


def typical(vectors: np.ndarray, k: int | None) -> np.ndarray:
    """Indices (ascending) of the ``k`` rows of ``vectors`` [n, d] with the highest cosine to their mean;
    all rows when ``k`` is None."""
    n = len(vectors)
    k = n if k is None else min(n, int(k))
    mean = vectors.mean(axis=0)
    unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    return np.sort(np.argsort(-(unit @ mean), kind="stable")[:k])


def _span_start(run: Run, xfade: float) -> float:
    """Where the audio decoded for ``run`` starts in its track (s): before its first beat by a margin for
    the crossfade pad at any stretch up to 4x, and for the resampler."""
    return max(float(run.beats[0]) - 4 * xfade - 0.05, 0.0)


def _span(path: str, t0: float, t1: float, sr: int, stereo: bool) -> np.ndarray:
    """Source audio [channels, n] from ``t0`` to ``t1`` s (or the end of the file) at ``sr``."""
    y = audio.load(path, sr=sr, offset=t0, duration=t1 - t0, check=False, stereo=stereo)
    return y if stereo else y[None, :]


def _working_rate(seg, track_ids) -> int:
    """Rate the stereo rendering works at: the sources' highest own rate, at most 44.1 kHz (resampled once after)."""
    rates = [audio.probe(seg.tracks.at[t, "path"]).sample_rate for t in track_ids]
    return int(min(max(rates), STEREO_RATE))


def seg_version(lib: Library) -> str:
    from ..catalog.stages import stage_versions

    return stage_versions()["beats"]

