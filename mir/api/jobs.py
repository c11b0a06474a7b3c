"""Background generation jobs: one at a time, in a thread of the server, each persisted under ``LIB/serve/jobs/``.

A job is ``<id>.json`` (written atomically at every change of state, and at most every
``SAVE_EVERY_S`` while its progress moves), its audio ``<id>.wav`` and the provenance
``<id>.provenance.json`` that :func:`mir.generate.generate` writes beside it. The job runs in the
server process, so it goes on when the client that started it disconnects. A job left ``queued``
or ``running`` by a server that is gone (a restart, a crash) reads as ``failed``, and a new server
writes that down when it starts.

Cancelling writes ``<id>.cancel``: a queued job is ``cancelled`` at once and never starts, a running
one stops at its next progress step (both also when another server process of the same library owns
it). A finished job (done, failed, cancelled) stays until it is removed (:meth:`Jobs.remove`).
"""
from __future__ import annotations

import json
import logging
import os
import queue
import threading
import time
import uuid
from pathlib import Path

from .. import atomic
from . import deps

LOG = logging.getLogger("mir.api")
SAVE_EVERY_S = 0.5
MAX_WAITING = 16  # queued jobs beyond which POST /generate answers 503
UNFINISHED = ("queued", "running")
FINISHED = ("done", "failed", "cancelled")


class Cancelled(Exception):
    """Raised in a running job's progress callback once the job is cancelled."""


class JobFinished(Exception):
    """Cancelling a finished job, or removing an unfinished one."""


def _pid_alive(pid) -> bool:
    try:
        os.kill(int(pid), 0)
    except (OSError, TypeError, ValueError):
        return False
    return True


class Jobs:
    """The job area of one server: ``submit`` a job, ``get`` its record (``records``: all of them),
    ``cancel`` it, ``remove`` a finished one, ``audio_path`` its file."""

    def __init__(self, folder: str | os.PathLike, run, *, writable: bool = True):
        """``run(params, out, progress)`` makes the piece at ``out`` and returns its provenance."""
        self.folder = Path(folder)
        self.run = run
        self.writable = writable
        self.server = uuid.uuid4().hex  # this server instance (several may share a folder: --workers)
        self._queue: queue.Queue = queue.Queue()
        self._lock = threading.Lock()
        self._worker: threading.Thread | None = None
        self._saved: dict[str, float] = {}

    # --- records ---------------------------------------------------------------------------------
    def path(self, job_id: str) -> Path:
        return self.folder / f"{job_id}.json"

    def audio_path(self, job_id: str) -> Path:
        return self.folder / f"{job_id}.wav"

    def cancel_path(self, job_id: str) -> Path:
        return self.folder / f"{job_id}.cancel"

    def _outputs(self, job_id: str) -> list[Path]:
        """What a job's run writes: its audio and the provenance beside it."""
        return [self.audio_path(job_id), self.folder / f"{job_id}.provenance.json"]

    def _record_paths(self) -> list[Path]:
        """The job records in the folder (``<id>.json``; not the provenance files)."""
        if not self.folder.is_dir():
            return []
        return sorted(p for p in self.folder.glob("*.json") if not p.name.endswith(".provenance.json"))

    def _save(self, job: dict) -> None:
        atomic.write_text(self.path(job["id"]), json.dumps(job, indent=1))
        self._saved[job["id"]] = time.monotonic()

    def _orphaned(self, job: dict) -> bool:
        """Unfinished, and its server is gone (not this one, and not another live process)."""
        if job["status"] not in UNFINISHED or job.get("server") == self.server:
            return False
        pid = job.get("pid")
        return pid == os.getpid() or not _pid_alive(pid)

    def _fail_orphan(self, job: dict) -> dict:
        return {**job, "status": "failed", "finished": job.get("finished") or time.time(),
                "error": f"the server stopped while this job was {job['status']} (a restart or a crash); "
                         "start it again with POST /generate"}

    def get(self, job_id: str) -> dict | None:
        """A job's record (None: no such job); a running job that was asked to stop says ``cancel_requested``."""
        try:
            job = json.loads(self.path(job_id).read_text())
        except FileNotFoundError:
            return None
        if self._orphaned(job):
            return self._fail_orphan(job)
        if job["status"] in UNFINISHED and self.cancel_path(job_id).exists():
            job["cancel_requested"] = True
        return job

    def records(self, status: str | None = None) -> list[dict]:
        """Every job's record, newest first; ``status``: only jobs in that state."""
        jobs = []
        for path in self._record_paths():
            try:
                job = self.get(path.stem)
            except (OSError, json.JSONDecodeError, KeyError):  # a damaged record: left out, not a failed listing
                LOG.warning("job record %s cannot be read; left out of the list", path)
                continue
            if job is not None and (status is None or job["status"] == status):
                jobs.append(job)
        return sorted(jobs, key=lambda j: (j.get("created") or 0.0, j["id"]), reverse=True)

    def cancel(self, job_id: str) -> dict | None:
        """Cancel a queued or running job; returns its record (None: no such job).

        A queued job is ``cancelled`` at once; a running one keeps ``running`` with ``cancel_requested``
        until its next progress step ends it. Raises :class:`JobFinished` for a finished job.
        """
        with self._lock:  # the worker starts a job under the same lock
            job = self.get(job_id)
            if job is None:
                return None
            if job["status"] not in UNFINISHED:
                raise JobFinished(f"job {job_id} is already {job['status']}; nothing to cancel")
            atomic.write_text(self.cancel_path(job_id), "")
            return self._cancelled(job) if job["status"] == "queued" else self.get(job_id)

    def remove(self, job_id: str) -> bool:
        """Delete a finished job's record, audio and provenance; False: no such job. Raises
        :class:`JobFinished` for a job that is still queued or running."""
        job = self.get(job_id)
        if job is None:
            return False
        if job["status"] not in FINISHED:
            raise JobFinished(f"job {job_id} is {job['status']}; cancel it first (POST /jobs/{job_id}/cancel)")
        for path in [*self._outputs(job_id), self.cancel_path(job_id), self.path(job_id)]:  # the record last
            path.unlink(missing_ok=True)
        self._saved.pop(job_id, None)
        return True

    def _cancelled(self, job: dict) -> dict:
        """Write ``job`` down as cancelled (its partial files gone) and return the record."""
        for path in self._outputs(job["id"]):
            path.unlink(missing_ok=True)
        job.update(status="cancelled", stage="cancelled", finished=time.time(), result=None,
                   error=f"cancelled by a client (POST /jobs/{job['id']}/cancel)")
        job.pop("cancel_requested", None)
        self._save(job)
        self.cancel_path(job["id"]).unlink(missing_ok=True)
        return job

    def recover(self) -> int:
        """Write down as failed the jobs a stopped server left unfinished; returns how many."""
        if not self.writable or not self.folder.is_dir():
            return 0
        atomic.clean_stale_temps(self.folder)
        n = 0
        for path in self._record_paths():
            try:
                job = json.loads(path.read_text())
            except (OSError, json.JSONDecodeError):
                continue
            if self._orphaned(job):
                self._save(self._fail_orphan(job))
                n += 1
        return n

    # --- running ---------------------------------------------------------------------------------
    def waiting(self) -> int:
        return self._queue.qsize()

    def submit(self, params: dict) -> dict:
        """Queue a job for ``params`` (what :func:`mir.generate.generate` takes, as JSON) and return its record."""
        job = {"id": uuid.uuid4().hex, "status": "queued", "progress": 0.0, "stage": "queued", "params": params,
               "created": time.time(), "started": None, "finished": None, "result": None, "error": None,
               "server": self.server, "pid": os.getpid()}
        self.folder.mkdir(parents=True, exist_ok=True)
        self._save(job)
        self._queue.put(job)
        with self._lock:
            if self._worker is None:
                self._worker = threading.Thread(target=self._work, name="mir-generate-jobs", daemon=True)
                self._worker.start()
        return job

    def _work(self) -> None:
        while True:
            job = self._queue.get()
            try:
                with self._lock:
                    current = self.get(job["id"])
                    if current is None or current["status"] == "cancelled":  # cancelled while it waited
                        continue
                    if self.cancel_path(job["id"]).exists():  # asked just now, from another process
                        self._cancelled(current)
                        continue
                    job.update(status="running", started=time.time(), stage="starting")
                    self._save(job)
                self._run_one(job)
            except Exception:  # never let the worker die: the next job must still run
                LOG.exception("job %s could not be recorded", job["id"])

    def _run_one(self, job: dict) -> None:
        def progress(fraction: float, stage: str) -> None:
            if fraction < 1.0 and self.cancel_path(job["id"]).exists():
                raise Cancelled(job["id"])
            job.update(progress=round(float(fraction), 3), stage=stage)
            if time.monotonic() - self._saved.get(job["id"], 0.0) >= SAVE_EVERY_S:
                self._save(job)

        try:
            prov = self.run(job["params"], self.audio_path(job["id"]), progress)
            job.update(status="done", progress=1.0, stage="done",
                       result={"audio": f"/jobs/{job['id']}/audio", "provenance": prov})
        except Cancelled:
            with self._lock:
                self._cancelled(job)
            return
        except deps.MirError as exc:
            job.update(status="failed", error=str(exc))
        except Exception as exc:
            LOG.exception("job %s failed", job["id"])
            job.update(status="failed", error=f"internal error ({type(exc).__name__}: {exc}); the server log has the details")
        job["finished"] = time.time()
        self._save(job)
        self.cancel_path(job["id"]).unlink(missing_ok=True)  # a cancel that came after the last step
