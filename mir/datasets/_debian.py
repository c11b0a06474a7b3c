"""The external programs the real-audio corpora need: ``apt-get download``, ``dpkg-deb``, ``openmpt123``, ``espeak-ng``.

Everything that runs a subprocess for :mod:`mir.datasets.realmusic` lives in :class:`Debian`, so tests
replace one object (a subclass whose ``download`` copies a tiny ``.deb`` built with ``dpkg-deb -b``).
No package is ever installed: ``apt-get download`` only fetches the ``.deb`` into a folder and
``dpkg-deb -x`` unpacks it.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from ..errors import DatasetError

MODULE_RENDER_SECONDS = 900  # tracker modules may loop forever; render at most this long


class Debian:
    """Runs apt-get, dpkg-deb and openmpt123; every failure is a :class:`DatasetError` naming what to do."""

    def require(self, program: str, why: str) -> str:
        path = shutil.which(program)
        if path is None:
            raise DatasetError(
                f"{program} not found: {why}. The real-audio corpus is built from Debian packages, so it needs a "
                "Debian or Ubuntu machine with apt-get and dpkg-deb on PATH (they ship with apt and dpkg)"
            )
        return path

    def download(self, package: str, dest: Path) -> Path:
        """Fetch ``package``'s ``.deb`` into the empty folder ``dest`` with ``apt-get download``; its path."""
        self.require("apt-get", f"needed to fetch {package}")
        proc = subprocess.run(["apt-get", "download", package], cwd=dest, capture_output=True, text=True)
        debs = sorted(dest.glob("*.deb"))
        if proc.returncode != 0 or len(debs) != 1:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
            raise DatasetError(
                f"apt-get download {package} failed (exit {proc.returncode}): {' | '.join(tail) or 'no output'}. "
                f"Run `apt-get update` once, check that `apt-cache policy {package}` shows a candidate version "
                "(the package is in Debian main), then run the build again: it resumes"
            )
        return debs[0]

    def fields(self, deb: Path) -> dict[str, str]:
        """Control fields of ``deb`` (Package, Version, Description, ...); raises if the file is damaged."""
        self.require("dpkg-deb", f"needed to read {deb.name}")
        proc = subprocess.run(["dpkg-deb", "-f", os.fspath(deb)], capture_output=True, text=True)
        if proc.returncode != 0:
            raise DatasetError(f"{deb}: not a readable .deb ({proc.stderr.strip()}); delete it and build again")
        return parse_control(proc.stdout)

    def extract(self, deb: Path, dest: Path) -> None:
        """Unpack ``deb``'s files into ``dest`` (``dpkg-deb -x``: nothing is installed, no scripts run)."""
        self.require("dpkg-deb", f"needed to unpack {deb.name}")
        proc = subprocess.run(["dpkg-deb", "-x", os.fspath(deb), os.fspath(dest)], capture_output=True, text=True)
        if proc.returncode != 0:
            raise DatasetError(f"dpkg-deb -x {deb} failed: {proc.stderr.strip()}; delete the file and build again")

    def can_render_modules(self) -> bool:
        return shutil.which("openmpt123") is not None

    def render_module(self, src: Path, dest: Path) -> None:
        """Render a tracker module (xm, it, s3m, mod) to FLAC at 44.1 kHz with ``openmpt123``."""
        self.require("openmpt123", f"needed to render the tracker module {src.name} (apt-get install openmpt123)")
        cmd = ["openmpt123", "--batch", "--quiet", "--samplerate", "44100", "--no-float",
               "--end-time", str(MODULE_RENDER_SECONDS), "--force", "-o", os.fspath(dest), os.fspath(src)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0 or not dest.is_file():
            raise DatasetError(f"openmpt123 could not render {src}: {proc.stderr.strip() or proc.stdout.strip()}")

    def speak(self, text: str, dest: Path, *, voice: str, speed: int, pitch: int) -> None:
        """Synthesise ``text`` with espeak-ng ``voice`` (e.g. ``"de+m3"``) into the WAV file ``dest``."""
        self.require("espeak-ng", "needed for the speech of the non-music corpus (apt-get install espeak-ng)")
        cmd = ["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch), "-w", os.fspath(dest), text]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0 or not dest.is_file():
            raise DatasetError(f"espeak-ng -v {voice} failed: {proc.stderr.strip() or 'no output file'}; "
                               "`espeak-ng --voices` lists the installed voices")


def parse_control(text: str) -> dict[str, str]:
    """Fields of a Debian control paragraph; continuation lines are joined with newlines ('.' lines empty)."""
    out: dict[str, str] = {}
    key = None
    for line in text.splitlines():
        if line[:1] in (" ", "\t") and key is not None:
            body = line.strip()
            out[key] += "\n" + ("" if body == "." else body)
        elif ":" in line:
            key, _, value = line.partition(":")
            key = key.strip()
            out[key] = value.strip()
    return out
