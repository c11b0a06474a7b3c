"""A corpus of malformed and odd audio files, generated on the spot (tests/test_robustness.py and
benchmarks/robustness.py).

:func:`cases` lists what :func:`build` writes under a folder, each as a :class:`Case` saying what
a scan + analyse must make of the file:

- ``ok``: a track, analysed, with no failure and no warning
- ``warn:<kind>``: a track, analysed, with a warning of that kind (``truncated``, ``no_sound``)
- ``fail:<text>``: listed in the failures, with ``<text>`` in the message (case-insensitive)
- ``listed``: a failure or a warning (cut files: which one depends on where the cut falls)
- ``any``: analysed or listed (the file is odd but may be fine: junk appended, nearly whole)
- ``ignored``: not a file mir should consider (a link to a folder)

Formats: wav, flac, ogg (Vorbis), aiff, and mp3 when libsndfile can write it
(:data:`MP3_SKIP_REASON` says why not otherwise).
"""
from __future__ import annotations

import functools
import io
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import soundfile as sf

SR = 22050
SECONDS = 1.5  # short, so the corpus analyses quickly; the minimum is 1 s
FORMATS = {  # name -> (soundfile format, subtype)
    "wav": ("WAV", "PCM_16"),
    "flac": ("FLAC", "PCM_16"),
    "ogg": ("OGG", "VORBIS"),
    "aiff": ("AIFF", "PCM_16"),
    "mp3": ("MP3", "MPEG_LAYER_III"),
}
MP3_SKIP_REASON = None if "MP3" in sf.available_formats() else \
    f"libsndfile {sf.__libsndfile_version__} cannot write MP3 (it needs the LAME/mpg123 build)"
# share of the bytes kept by the truncation cases; from 0.97 on, an MP3 may pass within its 1% tolerance
CUTS = (0.0005, 0.002, 0.005, 0.01, 0.02, 0.05, 0.08, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.6, 0.7,
        0.75, 0.8, 0.85, 0.9, 0.93, 0.97, 0.99, 0.999)
NEARLY_WHOLE = 0.97


@dataclass(frozen=True)
class Case:
    name: str  # pytest id
    path: str  # absolute path as mir stores it (not-UTF-8 bytes escaped as \xNN)
    expect: str
    make: Callable[[], None] = field(compare=False, repr=False)


def clip(seed: int, seconds: float = SECONDS, sr: int = SR, channels: int = 1) -> np.ndarray:
    """A distinct, audible signal for every seed: three tones, a slow swell, a little noise."""
    g = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    y = sum(0.2 * np.sin(2 * np.pi * f * t) for f in g.uniform(110, 1760, 3))
    y = y * (0.6 + 0.4 * np.sin(2 * np.pi * g.uniform(0.5, 3) * t) ** 2) + 0.01 * g.standard_normal(t.size)
    y = (0.8 * y / np.abs(y).max()).astype(np.float32)
    return np.stack([np.roll(y, 37 * c) for c in range(channels)], axis=1) if channels > 1 else y


def formats() -> list[str]:
    return [f for f in FORMATS if f != "mp3" or MP3_SKIP_REASON is None]


def write(path: str | os.PathLike, y: np.ndarray, fmt: str, *, sr: int = SR, subtype: str | None = None) -> None:
    sf_format, default = FORMATS[fmt]
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, y, sr, format=sf_format, subtype=subtype or default)


@functools.lru_cache(maxsize=64)
def encoded(fmt: str, seed: int) -> bytes:
    """The bytes of a good ``fmt`` file of :func:`clip` ``(seed)``."""
    buf = io.BytesIO()
    sf_format, subtype = FORMATS[fmt]
    sf.write(buf, clip(seed), SR, format=sf_format, subtype=subtype)
    return buf.getvalue()


def cases(root: str | os.PathLike, *, copies: int = 1) -> list[Case]:
    """Every case under ``root``; ``copies`` > 1 repeats each with new content (for benchmarks)."""
    root = Path(root)
    out: list[Case] = []

    def add(rel: str, expect: str, make: Callable[[Path], None]) -> None:
        p = root / rel
        out.append(Case(os.path.normpath(rel).replace("/", "-"), os.path.normpath(str(p)), expect,
                        lambda: (p.parent.mkdir(parents=True, exist_ok=True), make(p))))

    def data(blob: Callable[[], bytes]) -> Callable[[Path], None]:
        return lambda p: p.write_bytes(blob())

    def audio(y: Callable[[], np.ndarray], fmt: str, **kw) -> Callable[[Path], None]:
        return lambda p: write(p, y(), fmt, **kw)

    for copy in range(copies):
        d = f"c{copy}" if copies > 1 else "."
        base = 1000 + 10000 * copy
        for k, fmt in enumerate(formats()):
            s = base + 200 * k
            g = np.random.default_rng(s)
            junk, noise = g.bytes(3000), g.bytes(4096)
            add(f"{d}/{fmt}/good.{fmt}", "ok", audio(lambda s=s: clip(s + 1), fmt))
            add(f"{d}/{fmt}/stereo.{fmt}", "ok", audio(lambda s=s: clip(s + 2, channels=2), fmt))
            add(f"{d}/{fmt}/rate8k.{fmt}", "ok", audio(lambda s=s: clip(s + 3, sr=8000), fmt, sr=8000))
            add(f"{d}/{fmt}/zero-bytes.{fmt}", "fail:empty", data(lambda: b""))
            add(f"{d}/{fmt}/text.{fmt}", "fail:", data(lambda: b"this is a text file, not audio\n" * 40))
            add(f"{d}/{fmt}/random.{fmt}", "fail:", data(lambda noise=noise: noise))
            add(f"{d}/{fmt}/header-only.{fmt}", "listed", data(lambda s=s, fmt=fmt: encoded(fmt, s + 4)[:60]))
            for cut in CUTS:  # one encoding cut at every point: each cut is different content
                def kept(s=s, cut=cut, fmt=fmt):
                    whole = encoded(fmt, s + 20)
                    return whole[:max(1, int(len(whole) * cut))]
                add(f"{d}/{fmt}/cut-{cut:g}.{fmt}", "any" if cut >= NEARLY_WHOLE else "listed", data(kept))
            add(f"{d}/{fmt}/junk-appended.{fmt}", "any",
                data(lambda s=s, fmt=fmt, junk=junk: encoded(fmt, s + 5) + junk))

            def garbled(s=s, fmt=fmt, noise=noise):
                b = bytearray(encoded(fmt, s + 6))
                b[len(b) // 2:len(b) // 2 + 2048] = noise[:2048]
                return bytes(b)
            add(f"{d}/{fmt}/garbage-inside.{fmt}", "any", data(garbled))
            add(f"{d}/{fmt}/one-sample.{fmt}", "fail:", audio(lambda s=s: clip(s + 7)[:1], fmt))
            add(f"{d}/{fmt}/silence.{fmt}", "fail:silent", audio(lambda: np.zeros(int(SR * SECONDS), np.float32), fmt))
            other = formats()[(k + 1) % len(formats())]
            add(f"{d}/{fmt}/wrong-extension.{other}", "any", data(lambda s=s, fmt=fmt: encoded(fmt, s + 8)))
            if fmt in ("wav", "flac", "aiff"):
                add(f"{d}/{fmt}/dc-only.{fmt}", "warn:no_sound",
                    audio(lambda: np.full(int(SR * SECONDS), 0.25, np.float32), fmt))
                add(f"{d}/{fmt}/rate192k.{fmt}", "ok", audio(lambda s=s: clip(s + 9, sr=192000), fmt, sr=192000))
            if fmt in ("wav", "flac", "ogg", "aiff"):
                add(f"{d}/{fmt}/eight-channels.{fmt}", "ok", audio(lambda s=s: clip(s + 10, channels=8), fmt))
            if fmt in ("wav", "aiff"):
                for bad, value in (("nan", np.nan), ("inf", np.inf)):
                    def spoiled(s=s, value=value):
                        y = clip(s + 11)
                        y[SR // 2:SR // 2 + 100] = value
                        return y
                    add(f"{d}/{fmt}/{bad}.{fmt}", "fail:nan or infinite", audio(spoiled, fmt, subtype="FLOAT"))
        _names_and_links(f"{d}/names", base + 5000, add, audio, data)
    return out


def _names_and_links(rel: str, s: int, add, audio, data) -> None:
    """File names and file-system oddities under ``rel``."""
    for i, name in enumerate(["with space.wav", 'quote "double" and \'single\'.wav', "new\nline.wav",
                              "ünïcødé-♪.wav", "-leading-dash.wav", "tab\there.flac"]):
        add(f"{rel}/{name}", "ok", audio(lambda i=i: clip(s + i), name.rsplit(".", 1)[1]))

    def latin1(p: Path) -> None:  # a name that is not UTF-8: written through bytes, stored escaped
        with open(os.fsencode(p.parent) + b"/latin1-caf\xe9.wav", "wb") as fh:
            sf.write(fh, clip(s + 10), SR, format="WAV")
    add(f"{rel}/latin1-caf\\xe9.wav", "fail:not valid utf-8", latin1)
    add(f"{rel}/dangling.wav", "fail:dangling", lambda p: os.symlink(p.parent / "nowhere.wav", p))
    add(f"{rel}/loop-a.mp3", "fail:loop", lambda p: os.symlink(p.parent / "loop-b.mp3", p))
    add(f"{rel}/loop-b.mp3", "fail:loop", lambda p: os.symlink(p.parent / "loop-a.mp3", p))
    add(f"{rel}/self.ogg", "fail:loop", lambda p: os.symlink("self.ogg", p))
    add(f"{rel}/link-to-folder.wav", "ignored", lambda p: os.symlink(p.parent, p))  # not followed: no loop
    add(f"{rel}/x.mp3/inside-folder-named-mp3.wav", "ok", audio(lambda: clip(s + 11), "wav"))
    for sub in ("a", "b", "c"):
        add(f"{rel}/{sub}/empty-duplicate.wav", "fail:empty", data(lambda: b""))
    add(f"{rel}/fifo.wav", "fail:not a regular file", lambda p: os.mkfifo(p))

    def locked(p: Path) -> None:
        write(p, clip(s + 12), "wav")
        p.chmod(0)
    add(f"{rel}/unreadable.wav", "fail:permission" if os.geteuid() != 0 else "any", locked)  # root reads anything


def verdict(case: Case, listed: list[dict], file_hash: str | None, done: bool) -> str | None:
    """What is wrong with how mir treated ``case`` (``None``: as expected).

    ``listed``: the rows of `mir failures --json` with the case's path; ``file_hash``: the hash in
    the files table (``None`` when absent); ``done``: the track is analysed (and tagged, when tagging ran).
    """
    failures = [r for r in listed if r["level"] == "error"]
    warnings = [r for r in listed if r["level"] == "warning"]
    for r in listed:
        if not r["message"].startswith(case.path + ": ") or len(r["message"]) < len(case.path) + 10:
            return f"message does not name the file or says nothing: {r['message']!r}"
    kind, _, text = case.expect.partition(":")
    if kind == "ok" and not (done and not listed):
        return f"expected analysed with no remark; done={done}, listed={listed}"
    if kind == "warn" and not (done and not failures and [w["error"] for w in warnings] == [text]):
        return f"expected analysed with a {text} warning; done={done}, listed={listed}"
    if kind == "fail":
        if not failures or done:
            return f"expected a failure; done={done}, listed={listed}"
        if text not in failures[-1]["message"].lower():
            return f"failure message lacks {text!r}: {failures[-1]['message']!r}"
    if kind == "listed" and not (listed and (done or failures)):
        return f"expected a failure or a warning; done={done}, listed={listed}"
    if kind == "any" and not (done or failures):
        return f"neither analysed nor listed; listed={listed}"
    if kind == "ignored" and (listed or file_hash is not None):
        return f"expected to be left alone; listed={listed}"
    return None


def build(root: str | os.PathLike, *, copies: int = 1) -> list[Case]:
    """Write every case of :func:`cases` under ``root``; returns the cases."""
    listed = cases(root, copies=copies)
    for case in listed:
        case.make()
    return listed


def restore_permissions(root: str | os.PathLike) -> None:
    """Make the corpus deletable again (the unreadable file has mode 000)."""
    for dirpath, _, filenames in os.walk(root):
        for f in filenames:
            p = os.path.join(dirpath, f)
            if not os.path.islink(p) and stat.S_IMODE(os.lstat(p).st_mode) == 0:
                os.chmod(p, 0o644)
