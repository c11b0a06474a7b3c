"""``POST /generate`` starts a generation job; ``GET /jobs/{id}`` follows it; ``GET /jobs/{id}/audio`` plays the piece;
``GET /jobs`` lists jobs, ``POST /jobs/{id}/cancel`` stops one, ``DELETE /jobs/{id}`` removes a finished one."""
from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Path, Query, Request, Response
from fastapi.responses import FileResponse, JSONResponse

from . import deps
from .jobs import MAX_WAITING, JobFinished
from .queries import _track_ids
from .schemas import Error, GenerateFilters, GenerateRequest, Job, JobList

router = APIRouter(tags=["generate"], responses={422: {"model": Error, "description": "a parameter is malformed"}})
JOB_ID = r"^[0-9a-f]{32}$"
JobId = Annotated[str, Path(pattern=JOB_ID, description="job id (32 hex characters), as POST /generate returned it")]
NO_JOB = {404: {"model": Error, "description": "no such job"}}


def _filters(f) -> "deps.Filters":
    return deps.Filters(genres=f.genre, file_genres=f.file_genre, tags=f.with_tags, bpm=f.bpm or None, keys=tuple(f.key),
                        year=f.year or None, exclude_tracks=tuple(f.exclude_track),
                        exclude_artists=tuple(f.exclude_artist), max_per_artist=f.max_per_artist)


def run_job(svc):
    """What a job does: :func:`mir.generate.generate` with the request's settings, writing ``out``."""
    def run(params: dict, out, progress) -> dict:
        p = dict(params)
        filters = _filters(GenerateFilters(**p.pop("filters")))
        p["tracks"] = p.pop("track_ids")
        p["sources"] = p.get("sources") or None
        return deps.generate(svc.lib, **p, filters=filters, events=svc.events if p.get("user") else None,
                             out=out, progress=progress).provenance
    return run


def _check_ready(svc) -> None:
    """Refuse what would fail at once in the job: no generator, no beats stage."""
    if not deps.generator_path(svc.lib).is_file():
        raise HTTPException(409, f"library {svc.lib.root.name!r} has no generator; run `mir train-generator {svc.lib.root}`")
    deps.load_segments(svc.lib)  # CatalogError (409) naming `mir analyze`


def _writable(request: Request, what: str) -> None:
    if request.app.state.service.read_only:
        raise HTTPException(403, f"this server is read-only (--read-only): it does not {what}")


@router.post("/generate", status_code=202, response_model=Job, responses={
    403: {"model": Error, "description": "a read-only server"},
    404: {"model": Error, "description": "an unknown seed track, or no --events for a user seed"},
    409: {"model": Error, "description": "no generator, or no beats analysis: the fix is named"},
    503: {"model": Error, "description": "too many jobs waiting"}})
def start_generate(request: Request, body: GenerateRequest):
    """Start generating a piece from the seeds (tracks, tags and/or a user); follow it at ``GET /jobs/{id}``."""
    _writable(request, "generate")
    svc = request.app.state.service
    if not body.tracks and not [t for t in body.tags if t.strip()] and body.user is None:
        raise HTTPException(422, "give at least one seed: tracks, tags or user")
    if body.user is not None and svc.events is None:
        raise HTTPException(404, "a user seed needs listening events; start the server with `mir serve LIB --events FILE`")
    if body.key is not None:
        deps.parse_key(body.key)  # ParameterError (422) naming the bad key
    _filters(body.filters)  # bad ranges or keys: 422 now, not a failed job later
    ids = _track_ids(svc, body.tracks)
    _check_ready(svc)
    if svc.jobs.waiting() >= MAX_WAITING:
        raise HTTPException(503, f"{MAX_WAITING} jobs are already waiting; try again later", headers={"Retry-After": "30"})
    params = body.model_dump()
    params["track_ids"] = ids
    del params["tracks"]
    job = svc.jobs.submit(params)
    return JSONResponse(Job(**job).model_dump(), status_code=202, headers={"Location": f"/jobs/{job['id']}"})


@router.get("/jobs", response_model=JobList)
def list_jobs(request: Request,
              status: Annotated[Literal["queued", "running", "done", "failed", "cancelled"] | None,
                                Query(description="only jobs in this state")] = None,
              limit: Annotated[int, Query(ge=1, le=500)] = 50,
              offset: Annotated[int, Query(ge=0)] = 0):
    """The server's generation jobs, newest first (those of earlier servers of this library too)."""
    jobs = request.app.state.service.jobs.records(status)
    return {"total": len(jobs), "jobs": jobs[offset:offset + limit]}


@router.post("/jobs/{job_id}/cancel", response_model=Job, responses={
    **NO_JOB, 202: {"model": Job, "description": "running: it stops at its next step (cancel_requested)"},
    403: {"model": Error, "description": "a read-only server"},
    409: {"model": Error, "description": "the job has already finished"}})
def cancel_job(request: Request, job_id: JobId):
    """Cancel a job: a queued one at once (200, status cancelled), a running one at its next step (202)."""
    job = _change_job(request, job_id, "cancel jobs", request.app.state.service.jobs.cancel)
    return JSONResponse(Job(**job).model_dump(), status_code=202 if job["status"] == "running" else 200)


@router.delete("/jobs/{job_id}", status_code=204, response_class=Response, responses={
    **NO_JOB, 403: {"model": Error, "description": "a read-only server"},
    409: {"model": Error, "description": "the job is queued or running: cancel it first"}})
def delete_job(request: Request, job_id: JobId):
    """Remove a finished job (done, failed or cancelled): its record, audio and provenance."""
    _change_job(request, job_id, "remove jobs", request.app.state.service.jobs.remove)
    return Response(status_code=204)


def _change_job(request: Request, job_id: str, what: str, change):
    """``change(job_id)`` (:meth:`Jobs.cancel` or :meth:`Jobs.remove`) on a writable server: 403 when read-only,
    409 when the job's state refuses it, 404 when there is no such job; else its result."""
    _writable(request, what)
    try:
        result = change(job_id)
    except JobFinished as exc:
        raise HTTPException(409, str(exc)) from None
    if not result:
        raise HTTPException(404, f"no job {job_id}")
    return result


def _job(request: Request, job_id: str) -> dict:
    job = request.app.state.service.jobs.get(job_id)
    if job is None:
        raise HTTPException(404, f"no job {job_id}")
    return job


@router.get("/jobs/{job_id}", response_model=Job, responses=NO_JOB)
def get_job(request: Request, job_id: JobId):
    """A job's status (queued, running, done, failed, cancelled), progress (0-1) and stage; when done, the audio URL
    and the provenance; when failed, the error."""
    return _job(request, job_id)


@router.get("/jobs/{job_id}/audio", response_class=FileResponse, responses={
    **NO_JOB, 206: {"description": "the requested byte range"}, 409: {"model": Error, "description": "not done"},
    416: {"description": "the range lies outside the file"}})
def get_job_audio(request: Request, job_id: JobId):
    """The generated piece (WAV), with HTTP range requests."""
    job = _job(request, job_id)
    if job["status"] != "done":
        raise HTTPException(409, f"job {job_id} is {job['status']}; its audio exists once it is done")
    path = request.app.state.service.jobs.audio_path(job_id)
    if not path.is_file():
        raise HTTPException(404, f"the audio of job {job_id} is gone from the server's job area")
    return FileResponse(path, media_type="audio/wav", filename=f"mir-{job_id[:8]}.wav",
                        content_disposition_type="inline")
