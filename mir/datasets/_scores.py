"""Turn one corpus work into a compact note list (the only place that parses scores).

A parsed work is a plain dict, cached as JSON so a rebuild or another size never parses twice:

``parts``     list of ``{"onset": [...], "dur": [...], "pitch": [...]}`` in quarter notes / MIDI,
              sorted from the highest part to the lowest
``length_q``  length of the score in quarter notes
``measures``  measure start offsets (quarter notes)
``meter``     the prevailing time signature (``"6/8"``), ``meter_class`` duple/triple/compound
``bar_q``     bar length in quarters; ``mode`` major/minor; ``tonic`` pitch class 0-11

Parsing runs under a wall-clock limit (``signal.alarm`` in the main thread of the process) so a
pathological score cannot stall a build.
"""
from __future__ import annotations

import contextlib
import json
import re
import signal
import threading
import warnings
from collections import Counter
from pathlib import Path

from .. import atomic
from ..errors import DatasetError
from ._corpus import Work, abc_tune_text, corpus_root, stable_hash

SCORE_CACHE_VERSION = 1
MAX_NOTES = 60_000

_MAJOR_MODES = {"major", "ionian", "mixolydian", "lydian"}
_MINOR_MODES = {"minor", "aeolian", "dorian", "phrygian", "locrian"}
_ABC_MODE = re.compile(r"^[A-G][#b]?\s*(minor|major|min|maj|ion|dor|phr|lyd|mix|aeo|loc|m)\w*", re.I)
_ABC_MODE_NAMES = {"m": "minor", "min": "minor", "minor": "minor", "maj": "major", "major": "major", "ion": "major",
                   "dor": "minor", "phr": "minor", "lyd": "major", "mix": "major", "aeo": "minor", "loc": "minor"}


class ScoreTimeout(DatasetError):
    pass


@contextlib.contextmanager
def time_limit(seconds: float, what: str):
    """Raise :class:`ScoreTimeout` if the block runs longer than ``seconds`` (main thread only)."""
    if seconds <= 0 or threading.current_thread() is not threading.main_thread() or not hasattr(signal, "SIGALRM"):
        yield
        return

    def _alarm(signum, frame):
        raise ScoreTimeout(f"{what}: gave up after {seconds:g} s")

    old = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def meter_class(numerator: int, denominator: int) -> str:
    if numerator in (6, 9, 12) and denominator >= 4:
        return "compound"
    if numerator % 3 == 0:
        return "triple"
    return "duple"


def _parse(work: Work, root: Path):
    from music21 import converter

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if work.ordinal >= 0:
            text = abc_tune_text(root, work.path, work.ordinal)
            return converter.parse(text, format="abc"), text
        return converter.parse(str(root / work.path), forceSource=True, storePickle=False), None


def extract(work: Work, *, root: Path | None = None, timeout: float = 120.0) -> dict:
    """Parse ``work`` and return its note list (see the module docstring); raises DatasetError."""
    root = corpus_root() if root is None else root
    try:
        with time_limit(timeout, f"parsing {work.work_id}"):
            score, abc_text = _parse(work, root)
            return _notes(work, score, abc_text)
    except DatasetError:
        raise
    except Exception as exc:  # music21 raises many kinds of errors on odd scores
        raise DatasetError(f"{work.work_id}: music21 could not parse it ({type(exc).__name__}: {exc})") from None


def _notes(work: Work, score, abc_text: str | None) -> dict:
    from music21 import stream

    parts = list(score.parts) if hasattr(score, "parts") and len(score.parts) else [score]
    out_parts = []
    total = 0
    for part in parts:
        onset, dur, pitch = [], [], []
        open_ties: dict[int, int] = {}  # midi -> index of the note a tie continues
        for el in part.flatten().notes:
            if el.duration.isGrace:
                continue
            pitches = getattr(el, "pitches", ())
            off = float(el.offset)
            ql = float(el.duration.quarterLength)
            tie = getattr(el, "tie", None)
            tie_type = tie.type if tie is not None else None
            for p in pitches:
                midi = int(round(p.ps))
                if tie_type in ("stop", "continue") and midi in open_ties:
                    i = open_ties[midi]
                    dur[i] = max(dur[i], off + ql - onset[i])
                    if tie_type == "stop":
                        del open_ties[midi]
                    continue
                onset.append(off)
                dur.append(ql)
                pitch.append(midi)
                if tie_type == "start":
                    open_ties[midi] = len(onset) - 1
        if not onset:
            continue
        order = sorted(range(len(onset)), key=lambda i: (onset[i], pitch[i]))
        out_parts.append({
            "onset": [round(onset[i], 6) for i in order],
            "dur": [round(max(dur[i], 1e-3), 6) for i in order],
            "pitch": [pitch[i] for i in order],
        })
        total += len(onset)
        if total > MAX_NOTES:
            raise DatasetError(f"{work.work_id}: more than {MAX_NOTES} notes; skipped")
    if total < 8:
        raise DatasetError(f"{work.work_id}: only {total} notes")
    out_parts.sort(key=lambda p: -sum(p["pitch"]) / len(p["pitch"]))

    # prevailing time signature (by number of measures that carry it)
    ts_list = list(score.recurse().getElementsByClass("TimeSignature"))
    if ts_list:
        counts = Counter((ts.numerator, ts.denominator) for ts in ts_list)
        num, den = counts.most_common(1)[0][0]  # ties: the first one met
    else:
        num, den = 4, 4
    bar_q = num * 4.0 / den
    length_q = max(p["onset"][-1] + p["dur"][-1] for p in out_parts)

    first = parts[0]
    measures = sorted({round(float(m.offset), 6) for m in first.getElementsByClass(stream.Measure)})
    if len(measures) < 2:
        n = max(1, int(length_q // bar_q))
        measures = [round(i * bar_q, 6) for i in range(n)]

    mode, tonic = _mode(score, abc_text)
    return {
        "version": SCORE_CACHE_VERSION,
        "work_id": work.work_id,
        "parts": out_parts,
        "length_q": round(length_q, 6),
        "measures": measures,
        "meter": f"{num}/{den}",
        "meter_class": meter_class(num, den),
        "bar_q": bar_q,
        "mode": mode,
        "tonic": tonic,
        "n_notes": total,
    }


def _mode(score, abc_text: str | None) -> tuple[str, int]:
    """(major|minor, tonic pitch class): the ABC K: field when it names a mode, else key analysis."""
    if abc_text is not None:
        m = re.search(r"^K:\s*(.*?)\s*$", abc_text, re.M)
        found = _ABC_MODE.match(m.group(1)) if m else None
        if found:
            word = found.group(1).lower()
            mode = _ABC_MODE_NAMES.get(word) or _ABC_MODE_NAMES[word[:3]]
            from music21 import key

            for k in score.recurse().getElementsByClass(key.Key):
                return mode, int(k.tonic.pitchClass)
    k = score.analyze("key")
    mode = "minor" if k.mode in _MINOR_MODES else "major"
    return mode, int(k.tonic.pitchClass)


# --- cache ----------------------------------------------------------------------------------------
def cache_path(cache_dir: Path, work: Work) -> Path:
    slug = re.sub(r"[^A-Za-z0-9]+", "_", work.work_id)[-60:]
    return Path(cache_dir) / f"{slug}_{stable_hash(work.work_id) % 16**8:08x}.json"


def load_or_extract(work: Work, cache_dir: Path | None, *, root: Path | None = None, timeout: float = 120.0) -> dict:
    """The note list of ``work``, from the JSON cache when present (failures are cached too)."""
    path = cache_path(cache_dir, work) if cache_dir is not None else None
    if path is not None and path.is_file():
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            data = None
        if data and data.get("version") == SCORE_CACHE_VERSION and data.get("work_id") == work.work_id:
            if "error" in data:
                raise DatasetError(data["error"])
            return data
    try:
        data = extract(work, root=root, timeout=timeout)
    except ScoreTimeout:
        raise  # do not cache: a slower machine may succeed
    except DatasetError as exc:
        if path is not None:
            atomic.write_text(path, json.dumps({"version": SCORE_CACHE_VERSION, "work_id": work.work_id, "error": str(exc)}))
        raise
    if path is not None:
        atomic.write_text(path, json.dumps(data, separators=(",", ":")))
    return data
