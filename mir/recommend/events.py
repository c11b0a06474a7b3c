"""Listening events in, checked and mapped onto catalogue tracks: :class:`Interactions` out.

An events table (CSV or Parquet) has columns ``user``, ``track``, ``timestamp`` and optionally
``plays`` (or ``weight``; 1 per row when neither is given). ``track`` may be a catalogue track id,
a content hash, an absolute file path, or a path relative to the events file's folder (how the
``mirdemo`` collection names its tracks: ``audio/<genre>/<clip>.<ext>``).

Rows that cannot be used are skipped and counted, never silently dropped: CSV lines with more
fields than the header (counted with their line numbers), missing user or track, tracks not in
the catalogue, unparseable timestamps, negative, zero or non-numeric plays, and exact duplicate
rows. :func:`clean_events` returns the counts in an :class:`EventReport` and logs
one warning line when anything was skipped.
"""
from __future__ import annotations

import logging
import os
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from ..errors import ParameterError

log = logging.getLogger(__name__)

REQUIRED = ("user", "track", "timestamp")
WEIGHT_COLUMNS = ("plays", "weight")
_EPOCH = pd.Timestamp(0, tz="UTC")
MALFORMED = "malformed_lines"  # frame.attrs key: CSV line numbers read_events skipped
SKIP_REASONS = ("malformed_row", "missing_user", "unknown_track", "bad_timestamp", "negative_plays", "zero_plays", "bad_plays",
                "duplicate")


@dataclass
class EventReport:
    """What happened to each row of an events table."""

    source: str = "<frame>"
    rows: int = 0
    kept: int = 0
    skipped: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SKIP_REASONS, 0))
    examples: dict[str, list] = field(default_factory=dict)  # up to 5 offending values per reason

    @property
    def n_skipped(self) -> int:
        return sum(self.skipped.values())

    def summary(self) -> str:
        s = f"{self.source}: {self.rows} events, {self.kept} kept"
        bad = {k: v for k, v in self.skipped.items() if v}
        if bad:
            s += ", skipped " + ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in bad.items())
            ex = self.examples.get("unknown_track")
            if ex:
                s += f" (unknown tracks e.g. {', '.join(map(repr, ex[:3]))})"
            lines = self.examples.get("malformed_row")
            if lines:
                s += f" (malformed CSV lines {', '.join(map(str, lines))}{', …' if self.skipped['malformed_row'] > len(lines) else ''})"
        return s

    def to_dict(self) -> dict:
        return {"source": self.source, "rows": self.rows, "kept": self.kept, "skipped": dict(self.skipped),
                "examples": {k: [str(x) for x in v] for k, v in self.examples.items()}}


def read_events(path: str | os.PathLike) -> pd.DataFrame:
    """The raw events table of a ``.csv`` or ``.parquet`` file (no checks beyond the columns).

    CSV lines with more fields than the header are skipped; their line numbers are kept in
    ``frame.attrs["malformed_lines"]`` for :func:`clean_events` to count. A table with no rows
    raises :class:`ParameterError`.
    """
    path = Path(path)
    if not path.is_file():
        raise ParameterError(f"events file {str(path)!r} does not exist")
    suffix = path.suffix.lower()
    malformed: list[int] = []
    try:
        if suffix == ".parquet":
            frame = pd.read_parquet(path)
        elif suffix in (".csv", ".tsv", ".txt"):
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", pd.errors.ParserWarning)
                frame = pd.read_csv(path, sep="\t" if suffix == ".tsv" else ",", dtype={"user": str, "track": str},
                                    on_bad_lines="warn")
            for w in caught:
                if issubclass(w.category, pd.errors.ParserWarning):
                    malformed += [int(n) for n in re.findall(r"[Ll]ine (\d+)", str(w.message))]
                else:
                    warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        else:
            raise ParameterError(f"events file {str(path)!r}: unknown format {suffix!r}; use .csv or .parquet")
    except ParameterError:
        raise
    except Exception as exc:
        raise ParameterError(f"cannot read events file {str(path)!r}: {exc}") from exc
    check_columns(frame, str(path))
    if frame.empty:
        raise ParameterError(f"events file {str(path)!r} holds no events (only a header{' and malformed lines' if malformed else ''}); "
                             f"give a file with one row per play: {', '.join(REQUIRED)}[, plays]")
    frame.attrs[MALFORMED] = sorted(malformed)
    return frame


def check_columns(frame: pd.DataFrame, source: str) -> None:
    missing = [c for c in REQUIRED if c not in frame.columns]
    if missing:
        raise ParameterError(f"{source}: events need columns {list(REQUIRED)} (+ optional plays or weight); "
                             f"missing {missing}, found {list(frame.columns)}")


def track_resolver(track_ids: Sequence[str], *, hashes: Sequence[str] | None = None,
                   paths: Sequence[str] | None = None, base: str | os.PathLike | None = None) -> Callable[[str], str | None]:
    """A function mapping a track reference to a catalogue track id (``None`` when unknown).

    References tried in order: track id, content hash, absolute path, path relative to ``base``,
    and finally a unique trailing path match (``genre/clip.flac`` finds ``/music/genre/clip.flac``).
    """
    by_ref: dict[str, str] = {str(t): str(t) for t in track_ids}
    if hashes is not None:
        by_ref.update({str(h): str(t) for h, t in zip(hashes, track_ids)})
    by_path: dict[str, str] = {}
    by_tail: dict[str, str | None] = {}
    if paths is not None:
        for p, t in zip(paths, track_ids):
            if p is None or (isinstance(p, float) and np.isnan(p)):
                continue
            by_path[os.path.normpath(str(p))] = str(t)
            parts = Path(str(p)).parts
            for n in range(1, min(4, len(parts)) + 1):  # tails of 1-4 path components
                tail = "/".join(parts[-n:])
                by_tail[tail] = None if tail in by_tail and by_tail[tail] != str(t) else str(t)
    base_dir = Path(base).resolve() if base is not None else None

    def resolve(ref: str) -> str | None:
        ref = str(ref)
        hit = by_ref.get(ref)
        if hit is not None:
            return hit
        if by_path:
            if os.path.isabs(ref):
                return by_path.get(os.path.normpath(ref))
            if base_dir is not None:
                hit = by_path.get(os.path.normpath(str(base_dir / ref)))
                if hit is not None:
                    return hit
            return by_tail.get("/".join(Path(ref).parts[-4:])) or by_tail.get(Path(ref).name)
        return None

    return resolve


def _note(report: EventReport, reason: str, mask: np.ndarray, values) -> None:
    n = int(mask.sum())
    report.skipped[reason] += n
    if n:
        report.examples[reason] = list(pd.unique(np.asarray(values)[mask]))[:5]


def clean_events(frame: pd.DataFrame, resolve: Callable[[str], str | None] | Mapping[str, str] | None = None, *,
                 source: str = "<frame>") -> tuple[pd.DataFrame, EventReport]:
    """Checked events ``(user str, track_id str, timestamp int64 s UTC, plays float64)`` and the report.

    ``resolve`` maps a track reference to a catalogue track id (``None``: unknown); a mapping
    works too; ``None`` keeps track references as they are. Rows are kept in input order.
    """
    check_columns(frame, source)
    malformed = list(frame.attrs.get(MALFORMED, []))
    report = EventReport(source=source, rows=int(len(frame)) + len(malformed))
    report.skipped["malformed_row"] = len(malformed)
    if malformed:
        report.examples["malformed_row"] = malformed[:5]
    user = frame["user"]
    ok = user.notna().to_numpy() & (user.astype(str).str.strip() != "").to_numpy()
    _note(report, "missing_user", ~ok, user.astype(str))

    refs = frame["track"].astype(str).to_numpy()
    if resolve is None:
        ids = np.where(frame["track"].notna().to_numpy(), refs, None)
    else:
        lookup = resolve.get if isinstance(resolve, Mapping) else resolve
        cache = {r: lookup(r) for r in pd.unique(refs)}
        ids = np.array([cache[r] for r in refs], dtype=object)
    known = np.array([i is not None for i in ids], dtype=bool) & frame["track"].notna().to_numpy()
    _note(report, "unknown_track", ok & ~known, refs)
    ok &= known

    ts = _parse_timestamps(frame["timestamp"])
    good_ts = ts.notna().to_numpy()
    _note(report, "bad_timestamp", ok & ~good_ts, frame["timestamp"].astype(str))
    ok &= good_ts

    wcol = next((c for c in WEIGHT_COLUMNS if c in frame.columns), None)
    if wcol is None:
        plays = np.ones(len(frame))
    else:
        plays = pd.to_numeric(frame[wcol], errors="coerce").to_numpy(dtype=np.float64)
        finite = np.isfinite(plays)
        _note(report, "bad_plays", ok & ~finite, frame[wcol].astype(str))
        ok &= finite
        _note(report, "negative_plays", ok & (plays < 0), plays)
        ok &= ~(plays < 0)
        _note(report, "zero_plays", ok & (plays == 0), plays)
        ok &= plays != 0

    out = pd.DataFrame({
        "user": user.astype(str).to_numpy()[ok],
        "track_id": ids[ok].astype(str),
        "timestamp": ((ts[ok] - _EPOCH) // pd.Timedelta(seconds=1)).to_numpy(np.int64) if ok.any() else np.zeros(0, np.int64),
        "plays": plays[ok],
    })
    dup = out.duplicated(keep="first").to_numpy()
    _note(report, "duplicate", dup, out["user"] + " " + out["track_id"])
    out = out[~dup].reset_index(drop=True)
    report.kept = int(len(out))
    if report.n_skipped:
        log.warning("events %s", report.summary())
    return out, report


def _parse_timestamps(col: pd.Series) -> pd.Series:
    """UTC timestamps; numbers are Unix seconds; anything unparseable becomes NaT."""
    if pd.api.types.is_datetime64_any_dtype(col):
        ts = col
        return ts.dt.tz_convert("UTC") if ts.dt.tz is not None else ts.dt.tz_localize("UTC")
    if pd.api.types.is_numeric_dtype(col):
        return pd.to_datetime(col, unit="s", utc=True, errors="coerce")
    text = col.astype("string")
    ts = pd.to_datetime(text, utc=True, errors="coerce", format="mixed")
    numeric = pd.to_numeric(text, errors="coerce")  # Unix seconds written as text (CSV)
    return ts.where(numeric.isna(), pd.to_datetime(numeric, unit="s", utc=True, errors="coerce"))


@dataclass
class Interactions:
    """Events mapped to index space: the input of every recommender.

    ``users`` [n_users] sorted user ids; ``items`` [n_items] catalogue track ids (never-played
    tracks included: content-based methods can recommend them); one entry per event in
    ``user_idx``, ``item_idx``, ``timestamp`` (int64 s) and ``plays`` (float64).
    """

    users: np.ndarray
    items: np.ndarray
    user_idx: np.ndarray
    item_idx: np.ndarray
    timestamp: np.ndarray
    plays: np.ndarray

    @classmethod
    def from_events(cls, events: pd.DataFrame, items: Sequence[str], *, users: Sequence[str] | None = None) -> "Interactions":
        """From :func:`clean_events` output; ``items`` is the catalogue's track id order."""
        items = np.asarray(items, dtype=str)
        pos = pd.Index(items)
        if not pos.is_unique:
            raise ParameterError("catalogue track ids must be unique")
        item_idx = pos.get_indexer(events["track_id"].astype(str))
        if (item_idx < 0).any():
            bad = events["track_id"].to_numpy()[item_idx < 0][:3]
            raise ParameterError(f"events name tracks not in the catalogue (e.g. {list(bad)}); clean them with clean_events")
        users = np.asarray(sorted(set(events["user"].astype(str))) if users is None else users, dtype=str)
        user_idx = pd.Index(users).get_indexer(events["user"].astype(str))
        if (user_idx < 0).any():
            raise ParameterError("events name users outside the given user list")
        return cls(users, items, user_idx.astype(np.int32), item_idx.astype(np.int32),
                   events["timestamp"].to_numpy(np.int64), events["plays"].to_numpy(np.float64))

    @property
    def n_users(self) -> int:
        return len(self.users)

    @property
    def n_items(self) -> int:
        return len(self.items)

    def __len__(self) -> int:
        return len(self.user_idx)

    def subset(self, mask: np.ndarray) -> "Interactions":
        """The events where ``mask`` is True (same users and items)."""
        return Interactions(self.users, self.items, self.user_idx[mask], self.item_idx[mask],
                            self.timestamp[mask], self.plays[mask])

    def matrix(self):
        """User × item CSR matrix of summed plays [n_users, n_items] (float32)."""
        import scipy.sparse as sp

        m = sp.csr_matrix((self.plays.astype(np.float32), (self.user_idx, self.item_idx)),
                          shape=(self.n_users, self.n_items), dtype=np.float32)
        m.sum_duplicates()
        m.sort_indices()
        return m

    def fingerprint(self) -> str:
        """A digest of the whole content (users, items, events): names a batch job's input."""
        import hashlib

        h = hashlib.blake2b(digest_size=16)
        for a in (self.users, self.items):
            h.update("\n".join(a.tolist()).encode())
            h.update(b"\0")
        for a in (self.user_idx, self.item_idx, self.timestamp, self.plays):
            h.update(np.ascontiguousarray(a).tobytes())
        return h.hexdigest()
