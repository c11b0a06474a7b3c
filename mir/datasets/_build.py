"""Building the ``mirdemo`` collection: plan, parse, render (resumable, parallel), tables.

Layout of ``DIR``::

    audio/<genre>/<clip>.<ext>   the clips (flac, ogg, wav, mp3), tagged
    labels.csv                   track,genre,tags (the format of ``mir train``)
    clips.parquet                one row per planned clip with every draw (rejected ones too)
    works.parquet                the work index with splits
    events.parquet               user,track,timestamp,plays
    tastes.json                  the hidden taste model behind the events
    manifest.json                name, size, seed, version, counts, timings
    .build/                      resume state: per-clip rows, parsed-score cache

Phases: (1) parse the candidate works of each (genre, split) into the score cache, replacing
works that fail by the next ones; (2) render the clips, one task per work, each clip written
atomically and then recorded by an atomic per-clip row, so an interrupted build resumes with
the missing clips only; (3) write the tables. Same seed: byte-identical audio and labels.
"""
from __future__ import annotations

import concurrent.futures as cf
import datetime as _dt
import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .. import __version__ as mir_version
from .. import atomic
from ..errors import DatasetError, ParameterError
from . import _audio_io, _corpus, _histories, _render, _scores, _soundfonts
from ._spec import (
    CHANNELS, GENRES, PROCEDURAL_GENRES, SAMPLE_RATE, SCORE_GENRES, SIZES, STYLE_BY_NAME, TAG_GROUPS, TAG_VOCABULARY,
    TOP_GENRES, SizeSpec,
)
from ..catalog.labels import TAG_SEPARATOR, write_labels

NAME = "mirdemo"
DATASET_VERSION = "2"  # 2: two-level genres, procedural styles, several soundfonts, pedalboard production
MAX_ATTEMPTS = 4
PARSE_TIMEOUT = 180.0


@dataclass(frozen=True)
class ClipPlan:
    clip_id: str
    track: str  # relative path of the audio file
    work_id: str
    genre: str
    split: str
    render: int  # k-th render of this work
    fmt: str
    seconds: float


@dataclass
class DatasetInfo:
    """What a build produced (also read back from ``manifest.json`` by :func:`info`)."""

    name: str
    size: str
    seed: int
    path: Path
    n_clips: int
    n_rejected: int
    duration_s: float
    size_bytes: int
    build_seconds: float
    genres: dict[str, int] = field(default_factory=dict)
    splits: dict[str, int] = field(default_factory=dict)
    tags: dict[str, int] = field(default_factory=dict)
    manifest: dict = field(default_factory=dict, repr=False)

    @property
    def labels_path(self) -> Path:
        return self.path / "labels.csv"

    @property
    def clips_path(self) -> Path:
        return self.path / "clips.parquet"

    @property
    def events_path(self) -> Path:
        return self.path / "events.parquet"

    @property
    def tastes_path(self) -> Path:
        return self.path / "tastes.json"

    @classmethod
    def from_manifest(cls, path: Path, manifest: dict) -> "DatasetInfo":
        c = manifest.get("counts", {})
        return cls(
            name=manifest["name"], size=manifest["size"], seed=int(manifest["seed"]), path=Path(path),
            n_clips=int(c.get("clips", 0)), n_rejected=int(c.get("rejected", 0)),
            duration_s=float(manifest.get("duration_s", 0.0)), size_bytes=int(manifest.get("size_bytes", 0)),
            build_seconds=float(manifest.get("build_seconds", 0.0)), genres=dict(c.get("genres", {})),
            splits=dict(c.get("splits", {})), tags=dict(c.get("tags", {})), manifest=manifest,
        )


# --- planning ---------------------------------------------------------------------------------------------
def split_targets(n: int) -> dict[str, int]:
    """Clips per split for ``n`` clips of one genre (at least one each in valid and test)."""
    n_test = max(1, round(_corpus.TEST_FRACTION * n))
    n_valid = max(1, round(_corpus.VALID_FRACTION * n))
    return {"train": n - n_test - n_valid, "valid": n_valid, "test": n_test}


def _candidates(works: list[_corpus.Work], size: SizeSpec) -> dict[tuple[str, str], list[_corpus.Work]]:
    """Works of each (genre, split) in pick order (a stable hash; tiny keeps the quick-to-parse half)."""
    out: dict[tuple[str, str], list[_corpus.Work]] = {}
    for genre in SCORE_GENRES:
        gw = [w for w in works if w.genre == genre]
        if size.light_only and gw:
            cutoff = float(np.median([w.size for w in gw]))
            gw = [w for w in gw if w.size <= cutoff]
        for split in _corpus.SPLITS:
            sw = [w for w in gw if w.split == split]
            sw.sort(key=lambda w: (_corpus.stable_hash("pick", w.work_id), w.work_id))
            out[(genre, split)] = sw
    return out


PROCEDURAL_COLLECTION = "mir procedural styles"


def procedural_works(size: SizeSpec) -> dict[tuple[str, str], list[_corpus.Work]]:
    """One work per clip of each procedural genre and split: a piece ``_procedural`` arranges from the
    clip's seed (so no two clips share a piece, and splits cannot leak)."""
    out = {}
    for genre in PROCEDURAL_GENRES:
        leaf = STYLE_BY_NAME[genre].name
        number = 0
        for split, n in split_targets(size.clips_per_genre).items():
            out[(genre, split)] = [_corpus.Work(
                work_id=f"procedural/{genre}/{split}-{j:04d}", genre=genre, collection=PROCEDURAL_COLLECTION,
                composer="mir", title=f"{leaf.replace('_', ' ').title()} no. {number + j + 1}", path="", ordinal=-1,
                group=f"procedural/{genre}/{split}-{j:04d}", size=0, split=split) for j in range(n)]
            number += n
    return out


def clip_id_for(genre: str, work_id: str, render: int) -> str:
    leaf = genre.rsplit("/", 1)[-1]  # leaves are unique across the collection
    return f"{leaf}-{_corpus.stable_hash('clip', work_id) % 16**8:08x}-{render}"


def assign(usable: dict[tuple[str, str], list[_corpus.Work]], size: SizeSpec) -> list[ClipPlan]:
    """Clips round-robin over the usable works of each (genre, split); sorted by track."""
    plans = []
    for genre in GENRES:
        for split, n in split_targets(size.clips_per_genre).items():
            ws = usable.get((genre, split), [])
            if not ws:
                raise DatasetError(f"no usable works for genre {genre!r} in split {split!r}")
            for j in range(n):
                w = ws[j % len(ws)]
                plans.append((genre, w, split, j // len(ws)))
    out = []
    for i, (genre, w, split, render) in enumerate(plans):
        cid = clip_id_for(genre, w.work_id, render)
        fmt = size.formats[(i * 7) % len(size.formats)]
        out.append(ClipPlan(cid, f"audio/{genre}/{cid}.{fmt}", w.work_id, genre, split, render, fmt, size.clip_seconds))
    return sorted(out, key=lambda p: p.track)


# --- workers ------------------------------------------------------------------------------------------------
def _parse_task(work: dict, cache_dir: str) -> tuple[str, str | None]:
    w = _corpus.Work(**work)
    try:
        _scores.load_or_extract(w, Path(cache_dir), timeout=PARSE_TIMEOUT)
        return w.work_id, None
    except DatasetError as exc:
        return w.work_id, str(exc)


def clip_tags(draws: dict, score: dict) -> list[str]:
    """The clip's tags; ``score`` is the parsed score or, for a procedural clip, its ``piece`` draws."""
    fams = set(draws["families"])
    pitched = [f for f in draws["families"] if f != "drums"]
    present = set(fams)
    present.add(draws["tempo_bucket"])
    present.add(score["mode"])
    present.add(score["meter_class"])
    present.add("solo" if len(draws["programs"]) == 1 and not draws["drums"] and len(pitched) == 1 else "ensemble")
    return [t for t in TAG_VOCABULARY if t in present]


def _clip_rng(seed: int, clip_id: str, attempt: int) -> np.random.Generator:
    return np.random.default_rng([seed, _corpus.stable_hash("rng", clip_id) % 2**63, attempt])


def _render_task(work: dict, plans: list[dict], out: str, seed: int, cache_dir: str, max_gap: float,
                 soundfonts: tuple[str, ...] = (_soundfonts.DEFAULT,)) -> list[dict]:
    """Render every planned clip of one work; write each file and its row; return the rows."""
    w = _corpus.Work(**work)
    out_dir = Path(out)
    rows = []
    procedural = STYLE_BY_NAME[w.genre].procedural
    score, parse_error = None, ""
    try:
        if not procedural:
            score = _scores.load_or_extract(w, Path(cache_dir), timeout=PARSE_TIMEOUT)
    except DatasetError as exc:
        parse_error = str(exc)
    for p in plans:
        plan = ClipPlan(**p)
        t0 = time.perf_counter()
        row = _base_row(plan, w, seed)
        reasons = []
        if score is None and not procedural:
            reasons.append(parse_error)
        else:
            style = STYLE_BY_NAME[plan.genre]
            for attempt in range(MAX_ATTEMPTS):
                rng = _clip_rng(seed, plan.clip_id, attempt)
                try:
                    y, draws = _render.render_clip(score, style, rng, seconds=plan.seconds, soundfonts=tuple(soundfonts))
                except DatasetError as exc:
                    reasons.append(f"attempt {attempt}: {exc}")
                    continue
                problem = _render.check_audio(y, seconds=plan.seconds, max_gap=max_gap)
                if problem:
                    reasons.append(f"attempt {attempt}: {problem}")
                    continue
                piece = draws.get("piece") or score
                tags = clip_tags(draws, piece)
                file_tags = {"title": w.title, "artist": w.composer, "album": w.collection, "genre": plan.genre,
                             "comment": TAG_SEPARATOR.join(tags)}
                data, y, (frames, sr, ch, _), headroom_db = _save_checked(out_dir / plan.track, y, plan, file_tags)
                if headroom_db:  # lossy codecs overshoot: the clip was turned down to stay unclipped
                    for k in ("gain_db", "loudness_db", "peak_limit_db"):
                        draws[k] = round(draws[k] + headroom_db, 2)
                if frames != len(y) or sr != SAMPLE_RATE or ch != CHANNELS:
                    reasons.append(f"attempt {attempt}: decoded {frames} frames at {sr} Hz, {ch} ch")
                    (out_dir / plan.track).unlink(missing_ok=True)
                    continue
                row.update(_draw_columns(draws, piece))
                row.update({
                    "status": "ok", "attempt": attempt, "tags": TAG_SEPARATOR.join(tags),
                    "peak": round(float(np.max(np.abs(y))), 5), "bytes": len(data),
                    "blake2b": hashlib.blake2b(data, digest_size=16).hexdigest(),
                })
                break
        row["reason"] = "; ".join(reasons)
        row["render_seconds"] = round(time.perf_counter() - t0, 4)
        text = json.dumps(row, sort_keys=True)
        atomic.write_text(_row_path(out_dir, plan.clip_id), text)
        rows.append(json.loads(text))  # the same types and key order as a row read back on resume
    return rows


def _save_checked(path: Path, y: np.ndarray, plan: ClipPlan, tags: dict):
    """Write the clip, decode it back; turn it down and rewrite while the decoded peak clips.

    Returns the file bytes, the audio as written, ``(frames, sr, channels, decoded peak)`` and the
    gain applied (dB, 0 when the first write decoded unclipped).
    """
    headroom_db = 0.0
    for _ in range(6):
        data = _audio_io.save(path, y, SAMPLE_RATE, fmt=plan.fmt, tags=tags, serial=_corpus.stable_hash("serial", plan.clip_id))
        stats = _audio_io.decode_stats(path)
        if stats[3] < _render.CLIP_PEAK:
            break
        scale = 0.98 * _render.CLIP_PEAK / stats[3]
        y = y * np.float32(scale)
        headroom_db += 20 * float(np.log10(scale))
    return data, y, stats, round(headroom_db, 2)


def _base_row(plan: ClipPlan, w: _corpus.Work, seed: int) -> dict:
    return {
        "clip_id": plan.clip_id, "track": plan.track, "work_id": w.work_id, "group": w.group,
        "collection": w.collection, "composer": w.composer, "title": w.title, "genre": plan.genre,
        "genre_top": plan.genre.split("/")[0], "genre_leaf": plan.genre.rsplit("/", 1)[-1],
        "split": plan.split, "render": plan.render, "format": plan.fmt, "duration_s": plan.seconds,
        "sample_rate": SAMPLE_RATE, "channels": CHANNELS, "seed": seed, "status": "rejected", "attempt": -1,
        "tags": "", "bytes": 0, "blake2b": "",
    }


def _draw_columns(draws: dict, score: dict) -> dict:
    rev = draws["reverb"] or {}
    return {
        "meter": score["meter"], "meter_class": score["meter_class"], "mode": score["mode"], "tonic": score["tonic"],
        "tempo_bpm": draws["tempo_bpm"], "tempo_bucket": draws["tempo_bucket"], "beat_q": draws["beat_q"],
        "transpose": draws["transpose"], "start_q": draws["start_q"], "loops": draws["loops"],
        "velocity_sigma": draws["velocity_sigma"], "accent": draws["accent"], "timing_sigma_s": draws["timing_sigma_s"],
        "legato": draws["legato"], "drums": draws["drums"], "families": TAG_SEPARATOR.join(draws["families"]),
        "programs": draws["programs"], "n_programs": len(draws["programs"]), "n_notes": draws["n_notes"],
        "arrangement": json.dumps(draws["arrangement"], sort_keys=True),
        "reverb": bool(rev), "reverb_rt60_s": rev.get("rt60_s", 0.0), "reverb_wet": rev.get("wet", 0.0),
        "reverb_predelay_s": rev.get("predelay_s", 0.0),
        "target_loudness_db": draws["target_loudness_db"], "gain_db": draws["gain_db"],
        "peak_limit_db": draws["peak_limit_db"], "noise_db": draws["noise_db"], "loudness_db": draws["loudness_db"],
        "soundfont": draws["soundfont"], "effects": json.dumps(draws["effects"], sort_keys=True),
        "progression": draws.get("progression", ""), "groove": draws.get("groove", ""), "swing": draws.get("swing", 0.5),
    }


def _row_path(out: Path, clip_id: str) -> Path:
    return out / ".build" / "clips" / f"{clip_id}.json"


def _done(out: Path, plan: ClipPlan, seed: int) -> dict | None:
    """The recorded row when ``plan`` is finished (valid file + row), else None."""
    path = _row_path(out, plan.clip_id)
    try:
        row = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if row.get("track") != plan.track or row.get("seed") != seed:
        return None
    if row.get("status") == "rejected":
        return row
    audio = out / plan.track
    try:
        data = audio.read_bytes()
    except OSError:
        return None
    if len(data) != row.get("bytes") or hashlib.blake2b(data, digest_size=16).hexdigest() != row.get("blake2b"):
        return None
    return row


# --- pool ----------------------------------------------------------------------------------------------------
def _resolve_workers(workers: int | None) -> int:
    if workers is None:
        from ..config import get_config

        workers = get_config().runtime.workers
    if workers < 0:
        raise ParameterError(f"workers must be >= 0, got {workers}")
    return workers or (os.cpu_count() or 1)


def _run(fn, jobs: list[tuple], *, workers: int, progress, weights: list[int]):
    """Yield ``fn(*job)`` results (any order); ``progress.update(weight)`` per finished job."""
    if workers <= 1 or len(jobs) <= 1:
        for job, wgt in zip(jobs, weights):
            yield fn(*job)
            progress.update(wgt)
        return
    from ..parallel import process_pool

    with process_pool(workers) as pool:  # its workers exit with the build when it is killed
        futures = {pool.submit(fn, *job): wgt for job, wgt in zip(jobs, weights)}
        try:
            for fut in cf.as_completed(futures):
                yield fut.result()
                progress.update(futures[fut])
        except BaseException:
            for fut in futures:
                fut.cancel()
            raise


class _NoBar:
    def update(self, n=1):
        pass

    def close(self):
        pass


def _bar(total: int, desc: str, enabled: bool):
    if not enabled:
        return _NoBar()
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="clip" if "render" in desc else "work", dynamic_ncols=True)


# --- the build -------------------------------------------------------------------------------------------------
def build(size: str, out: str | os.PathLike, *, seed: int = 0, workers: int | None = None, progress: bool = True,
          cache_dir: str | os.PathLike | None = None, soundfonts=None) -> DatasetInfo:
    """Build (or resume, or reuse) the ``mirdemo`` collection of ``size`` into ``out``.

    ``soundfonts``: names from :data:`_soundfonts.SOUNDFONTS` to draw from, or None for every
    installed one (a missing Debian font warns once, naming its package).
    """
    if size not in SIZES:
        raise ParameterError(f"unknown size {size!r}; choose one of {sorted(SIZES, key=list(SIZES).index)}")
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise ParameterError(f"seed must be a non-negative integer, got {seed!r}")
    seed = int(seed)
    spec = SIZES[size]
    n_workers = _resolve_workers(workers)
    out = Path(out)
    t_start = time.perf_counter()
    fonts = _soundfonts.resolve(soundfonts)
    state = {"name": NAME, "size": spec.name, "seed": seed, "version": DATASET_VERSION, "soundfonts": list(fonts)}
    state_path = out / ".build" / "state.json"
    if state_path.is_file():
        old = json.loads(state_path.read_text())
        if {k: old.get(k) for k in state} != state:
            raise DatasetError(f"{out} holds a different build ({old.get('name')} size={old.get('size')} "
                               f"seed={old.get('seed')} version={old.get('version')} soundfonts={old.get('soundfonts')}; "
                               f"this one: soundfonts={list(fonts)}); use another --out or delete it")
    elif out.exists() and any(p.name != ".build" for p in out.iterdir()):
        raise DatasetError(f"{out} exists and is not a {NAME} build folder; choose an empty or new --out")
    atomic.write_text(state_path, json.dumps(state, sort_keys=True))
    for folder in (out, out / ".build", out / ".build" / "clips"):
        atomic.clean_stale_temps(folder)
    cache = Path(cache_dir) if cache_dir is not None else out / ".build" / "scores"
    cache.mkdir(parents=True, exist_ok=True)
    elapsed_path = out / ".build" / "elapsed.json"
    prior = float((_read_manifest(elapsed_path) or {}).get("seconds", 0.0))
    try:
        result = _build_in(out, spec, seed, n_workers, progress, cache, fonts)
    except BaseException:  # interrupted or failed: keep the time spent for the next run's total
        atomic.write_text(elapsed_path, json.dumps({"seconds": round(prior + time.perf_counter() - t_start, 2)}))
        raise
    if isinstance(result, DatasetInfo):
        return result  # a finished build, reused as it is
    manifest = result
    total = prior + time.perf_counter() - t_start
    atomic.write_text(elapsed_path, json.dumps({"seconds": round(total, 2)}))
    manifest["build_seconds"] = round(total, 2)
    manifest["timings"]["this_run_s"] = round(time.perf_counter() - t_start, 2)
    manifest["created"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    atomic.write_text(out / "manifest.json", json.dumps(manifest, indent=2) + "\n")
    return DatasetInfo.from_manifest(out, manifest)


def _build_in(out: Path, spec: SizeSpec, seed: int, n_workers: int, progress: bool, cache: Path,
              fonts: tuple[str, ...]):
    """Phases 1-3; returns the manifest dict, or the DatasetInfo of a finished build left as it is."""
    size = spec.name
    works = _corpus.build_index(genres=SCORE_GENRES)
    usable, parse_errors = _pick_usable(works, spec, cache, n_workers, progress)
    generated = procedural_works(spec)
    usable.update(generated)
    works = works + [w for ws in generated.values() for w in ws]
    by_id = {w.work_id: w for w in works}
    plans = assign(usable, spec)

    pending: dict[str, list[ClipPlan]] = {}
    rows: dict[str, dict] = {}
    for p in plans:
        row = _done(out, p, seed)
        if row is None:
            pending.setdefault(p.work_id, []).append(p)
        else:
            rows[p.clip_id] = row
    jobs, weights = [], []
    order = sorted(pending, key=lambda wid: -(by_id[wid].size * len(pending[wid])))  # big tasks first
    max_gap = 1.5 if spec.clip_seconds < 10 else 2.5
    for wid in order:
        jobs.append((by_id[wid].as_dict(), [asdict(p) for p in pending[wid]], str(out), seed, str(cache), max_gap, fonts))
        weights.append(len(pending[wid]))
    bar = _bar(len(plans), f"{NAME}-{size}: render", progress)
    bar.update(len(rows))
    t_render = time.perf_counter()
    try:
        for result in _run(_render_task, jobs, workers=n_workers, progress=bar, weights=weights):
            for row in result:
                rows[row["clip_id"]] = row
    finally:
        bar.close()
    render_seconds = time.perf_counter() - t_render
    n_rendered = sum(weights)

    previous = _read_manifest(out / "manifest.json")
    tables = ("labels.csv", "clips.parquet", "works.parquet", "events.parquet", "tastes.json")
    if (n_rendered == 0 and previous and previous.get("counts", {}).get("planned") == len(plans)
            and all((out / t).is_file() for t in tables)):
        return DatasetInfo.from_manifest(out, previous)  # a finished build: reuse it as it is
    manifest = _write_tables(out, spec, seed, plans, rows, works, parse_errors, fonts)
    manifest["timings"] = {
        "this_run_s": None,
        "render_s": round(render_seconds, 2),
        "clips_rendered_this_run": n_rendered,
        "workers": n_workers,
        "realtime_factor": round(n_rendered * spec.clip_seconds / render_seconds, 1) if n_rendered and render_seconds > 0 else None,
    }
    return manifest


def _read_manifest(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _pick_usable(works, spec: SizeSpec, cache: Path, n_workers: int, progress: bool):
    """For each (genre, split), enough works that parse, in pick order (failures replaced)."""
    cands = _candidates(works, spec)
    targets = {(g, s): n for g in SCORE_GENRES for s, n in split_targets(spec.clips_per_genre).items()}
    usable: dict[tuple[str, str], list] = {k: [] for k in cands}
    errors: dict[str, str] = {}
    cursor = {k: 0 for k in cands}
    bar = None
    while True:
        batch = []
        for key, ws in cands.items():
            need = targets[key] - len(usable[key])
            if need <= 0 or cursor[key] >= len(ws):
                continue
            take = ws[cursor[key]: cursor[key] + need + (2 if need > 4 else 0)]
            cursor[key] += len(take)
            batch.extend((key, w) for w in take)
        if not batch:
            break
        todo = [(key, w) for key, w in batch if not _cached(cache, w)]
        if todo and bar is None:
            bar = _bar(0, f"{NAME}: parse scores", progress)
        if todo:
            if hasattr(bar, "total"):
                bar.total += len(todo)
                bar.refresh()
            jobs = [(w.as_dict(), str(cache)) for _, w in sorted(todo, key=lambda kw: -kw[1].size)]
            for _ in _run(_parse_task, jobs, workers=n_workers, progress=bar, weights=[1] * len(jobs)):
                pass
        for key, w in batch:
            try:
                _scores.load_or_extract(w, cache, timeout=PARSE_TIMEOUT)
                usable[key].append(w)
            except DatasetError as exc:
                errors[w.work_id] = str(exc)
    if bar is not None:
        bar.close()
    # keep pick order and stop at the target (extra parsed works stay unused)
    for key, ws in usable.items():
        order = {w.work_id: i for i, w in enumerate(cands[key])}
        ws.sort(key=lambda w: order[w.work_id])
        del ws[targets[key]:]
    return usable, errors


def _cached(cache: Path, w) -> bool:
    return _scores.cache_path(cache, w).is_file()


def _write_tables(out: Path, spec: SizeSpec, seed: int, plans: list[ClipPlan], rows: dict[str, dict], works,
                  parse_errors: dict[str, str], fonts: tuple[str, ...]) -> dict:
    import pandas as pd

    ordered = [rows[p.clip_id] for p in plans]  # plans are sorted by track
    clips = pd.DataFrame(ordered).drop(columns=["render_seconds"])  # timings vary run to run: manifest only
    ok = clips[clips["status"] == "ok"].reset_index(drop=True)
    atomic.write_parquet(out / "clips.parquet", clips)
    write_labels(out / "labels.csv", [(r.track, r.genre, r.tags.split(TAG_SEPARATOR)) for r in ok.itertuples()])
    wdf = pd.DataFrame([w.as_dict() for w in works])
    wdf["parse_error"] = [parse_errors.get(w, "") for w in wdf["work_id"]]
    atomic.write_parquet(out / "works.parquet", wdf)

    rng = np.random.default_rng([seed, _corpus.stable_hash("histories") % 2**63])
    events, tastes = _histories.simulate(
        list(ok["track"]), list(ok["genre"]), [tuple(t.split(TAG_SEPARATOR)) for t in ok["tags"]],
        genre_names=GENRES, tag_names=TAG_VOCABULARY, n_users=spec.n_users, rng=rng)
    atomic.write_parquet(out / "events.parquet", events)
    atomic.write_text(out / "tastes.json", json.dumps(tastes, sort_keys=True) + "\n")

    tag_counts = {t: int(sum(t in s.split(TAG_SEPARATOR) for s in ok["tags"])) for t in TAG_VOCABULARY}
    size_bytes = int(ok["bytes"].sum())
    per_user = events.groupby("user")["plays"].sum()
    return {
        "name": NAME, "size": spec.name, "seed": seed, "version": DATASET_VERSION, "mir_version": mir_version,
        "music21_version": _corpus.music21_version(), "pedalboard_version": _pedalboard_version(),
        "soundfonts": [{"name": f, "file": _soundfonts.path_of(f).name, "package": _soundfonts.BY_NAME[f].package,
                        "bytes": _soundfonts.path_of(f).stat().st_size} for f in fonts],
        "sample_rate": SAMPLE_RATE, "channels": CHANNELS, "clip_seconds": spec.clip_seconds,
        "genres": list(GENRES), "genre_tops": {t: [g for g in GENRES if g.split("/")[0] == t] for t in TOP_GENRES},
        "tag_groups": {k: list(v) for k, v in TAG_GROUPS.items()},
        "counts": {
            "clips": int(len(ok)), "planned": int(len(clips)), "rejected": int(len(clips) - len(ok)),
            "works": int(ok["work_id"].nunique()), "unusable_works": len(parse_errors),
            "genres": {g: int((ok["genre"] == g).sum()) for g in GENRES},
            "soundfonts": {f: int((ok["soundfont"] == f).sum()) for f in fonts},
            "splits": {s: int((ok["split"] == s).sum()) for s in _corpus.SPLITS},
            "formats": {f: int((ok["format"] == f).sum()) for f in sorted(ok["format"].unique())},
            "tags": tag_counts,
            "users": int(events["user"].nunique()), "events": int(len(events)), "plays": int(events["plays"].sum()),
            "cold_users": int((per_user <= 3).sum()),
            "tracks_never_played": int(len(set(ok["track"]) - set(events["track"]))),
        },
        "duration_s": float(ok["duration_s"].sum()),
        "render_seconds_per_clip": round(float(np.mean([r.get("render_seconds", 0.0) for r in ordered])), 4),
        "size_bytes": size_bytes,
        "rejected": {r.clip_id: r.reason for r in clips[clips["status"] != "ok"].itertuples()},
    }


def _pedalboard_version() -> str:
    import pedalboard

    return str(pedalboard.__version__)


def info(path: str | os.PathLike) -> DatasetInfo:
    """Read ``manifest.json`` of a built collection."""
    path = Path(path)
    manifest = _read_manifest(path / "manifest.json")
    if manifest is None:
        raise DatasetError(f"{path}: no readable manifest.json; is this a finished dataset build?")
    return DatasetInfo.from_manifest(path, manifest)
