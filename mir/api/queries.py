"""``/similar``, ``/analyze``, ``/users/{user}/recommendations``, ``/playlists``, ``/health``, ``/stats``."""
from __future__ import annotations

import os
import re
import threading
import uuid
from functools import partial
from typing import Annotated

import anyio
from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request
from fastapi.responses import PlainTextResponse

from . import deps, uploads
from .plain import plain
from .schemas import (TRACK_ID, Analysis, Error, Health, Playlist, PlaylistRequest, Recommendations, SimilarResponse,
                      Stats)
from .tracks import _split

router = APIRouter(responses={422: {"model": Error, "description": "a parameter is malformed"}})
_ADDING = threading.Lock()  # one upload catalogued at a time (scan, analyze, tag, index update)
UPLOAD_ERRORS = {413: {"model": Error, "description": "over the upload limit"},
                 422: {"model": Error, "description": "not audio, or undecodable (the decoder's message)"}}


def _track_ids(svc, refs: list[str]) -> list[str]:
    bad = [r for r in refs if not re.fullmatch(TRACK_ID, r)]
    if bad:
        raise HTTPException(422, f"not a track id: {bad[0]!r} (give 4-64 hex characters)")
    return [str(svc.track(r)["track_id"]) for r in refs]


def similar_filters(
        genre: Annotated[list[str], Query(description="any of these genres; repeatable or comma-separated")] = [],  # noqa: B006
        with_tags: Annotated[list[str], Query(description="only tracks with all of these decided tags")] = [],  # noqa: B006
        bpm: Annotated[str | None, Query(max_length=40, description="tempo range, e.g. 90-120")] = None,
        key: Annotated[list[str], Query(description="key, e.g. 'A minor', Am or F#; repeatable")] = [],  # noqa: B006
        year: Annotated[str | None, Query(max_length=40, description="year range, e.g. 1990-1999")] = None,
        exclude_track: Annotated[list[str], Query(description="never return this track; repeatable")] = [],  # noqa: B006
        exclude_artist: Annotated[list[str], Query(description="never return this artist; repeatable")] = [],  # noqa: B006
        max_per_artist: Annotated[int | None, Query(ge=1, le=1000)] = None):
    """The filters of ``mir similar`` as query parameters."""
    return deps.Filters(genres=_split(genre), tags=_split(with_tags), bpm=bpm or None, keys=tuple(key),
                        year=year or None, exclude_tracks=tuple(exclude_track), exclude_artists=tuple(exclude_artist),
                        max_per_artist=max_per_artist)


K = Annotated[int, Query(ge=1, le=500, description="number of results")]


def _similar(svc, *, tracks=(), audio=None, tags=(), k=10, filters=None, include_seeds=False) -> dict:
    li = svc.index()
    results = deps.similar(li, tracks=list(tracks), audio=audio, tags=list(tags), k=k, filters=filters,
                           exclude_seeds=not include_seeds)
    return {"model_id": li.model_id, "seeds": {"tracks": list(tracks), "audio": audio is not None, "tags": list(tags)},
            "results": plain(results)}


@router.get("/similar", response_model=SimilarResponse, tags=["similar"],
            responses={404: {"model": Error}, 409: {"model": Error, "description": "no index, or a stale one"}})
def similar_get(request: Request,
                track: Annotated[list[str], Query(description="seed track; repeat for several seeds")] = [],  # noqa: B006
                tags: Annotated[list[str], Query(description="tags to match, e.g. piano,slow")] = [],  # noqa: B006
                k: K = 10, include_seeds: bool = False, filters: deps.Filters = Depends(similar_filters)):
    """Tracks near all the seed tracks and/or matching the tags, with an explanation each."""
    svc = request.app.state.service
    if not track and not _split(tags):
        raise HTTPException(422, "give at least one seed: track=ID (repeatable) or tags=a,b")
    return _similar(svc, tracks=_track_ids(svc, track), tags=_split(tags), k=k, filters=filters,
                    include_seeds=include_seeds)


async def _decoding(svc, work):
    """Run the analysis of an upload in a thread, at most ``svc.analyses`` at once: decoding and features
    take memory and CPU, so further uploads wait (on disk) instead of crowding out the light requests."""
    return await anyio.to_thread.run_sync(work, limiter=svc.analysis_limiter())


def _upload_error(exc: deps.AudioError, upload: uploads.Upload) -> HTTPException:
    return HTTPException(422, f"{upload.name}: {exc.problem}" + (f" ({exc.hint})" if exc.hint else ""))


@router.post("/similar", response_model=SimilarResponse, tags=["similar"],
             openapi_extra={"requestBody": uploads.REQUEST_BODY}, responses={**UPLOAD_ERRORS, 409: {"model": Error}})
async def similar_post(request: Request,
                       track: Annotated[list[str], Query(description="further seed tracks")] = [],  # noqa: B006
                       tags: Annotated[list[str], Query()] = [],  # noqa: B006
                       k: K = 10, include_seeds: bool = False, filters: deps.Filters = Depends(similar_filters)):
    """Tracks similar to an uploaded audio file (decoded and embedded with the library's model, not added)."""
    svc = request.app.state.service
    tracks = _track_ids(svc, track)
    upload = await uploads.receive(request, svc.tmp)
    try:
        return await _decoding(svc, partial(_similar, svc, tracks=tracks, audio=str(upload.path), tags=_split(tags), k=k,
                                            filters=filters, include_seeds=include_seeds))
    except deps.AudioError as exc:
        raise _upload_error(exc, upload) from None
    finally:
        uploads.discard(upload)


def _analyze(svc, upload: uploads.Upload, add: bool, similar: int) -> dict:
    model_id = svc.model_id()
    out = deps.analyze_file(svc.lib, model_id, upload.path)
    out.update(file=upload.name, size=upload.size, bpm=out.pop("tempo"), added=None, similar=None)
    if similar:
        out["similar"] = _similar(svc, audio=str(upload.path), k=similar)["results"]
    if add:
        svc.uploads.mkdir(parents=True, exist_ok=True)
        kept = svc.uploads / f"{uuid.uuid4().hex[:12]}-{upload.name}"
        with _ADDING:
            os.replace(upload.path, kept)
            out["added"] = deps.add_file(svc.lib, model_id, kept)
        svc.forget()
    return plain(out)


@router.post("/analyze", response_model=Analysis, tags=["analyze"], openapi_extra={"requestBody": uploads.REQUEST_BODY},
             responses={**UPLOAD_ERRORS, 403: {"model": Error, "description": "add=true on a read-only server"}})
async def analyze(request: Request,
                  add: Annotated[bool, Query(description="also add the file to the library")] = False,
                  similar: Annotated[int, Query(ge=0, le=100, description="also return this many similar tracks")] = 0):
    """Tags, genre, BPM, key and embedding of an uploaded audio file (decoded in the library's temp area)."""
    svc = request.app.state.service
    if add and svc.read_only:
        raise HTTPException(403, "this server is read-only (--read-only): uploads are analysed but never added")
    upload = await uploads.receive(request, svc.tmp)
    try:
        return await _decoding(svc, partial(_analyze, svc, upload, add, similar))
    except deps.AudioError as exc:
        raise _upload_error(exc, upload) from None
    finally:
        uploads.discard(upload)


@router.get("/users/{user}/recommendations", response_model=Recommendations, tags=["recommend"],
            responses={404: {"model": Error, "description": "the server has no events (--events)"},
                       503: {"model": Error, "description": "the recommender is being fitted, or failed"}})
def recommendations(request: Request, user: Annotated[str, Path(min_length=1, max_length=200)], k: K = 10):
    """Top-k tracks for a user from the recommender fitted on the server's events (played tracks left out)."""
    svc = request.app.state.service
    state = svc.recommender_state
    if state["state"] == "off":
        raise HTTPException(404, "this server has no listening events; start it with `mir serve LIB --events FILE`")
    model = svc.recommender()
    if model is None:
        raise HTTPException(503, f"the recommender is {state['state']}: {state['detail']}",
                            headers={"Retry-After": "5"})
    frame = model.recommend([user], k)
    meta = svc.meta()
    recs = []
    for r in frame.itertuples(index=False):
        row = meta.loc[r.track_id] if r.track_id in meta.index else {}
        recs.append({"rank": int(r.rank), "track_id": str(r.track_id), "score": plain(r.score),
                     "title": plain(row.get("title")), "artist": plain(row.get("artist"))})
    return {"user": user, "known_user": bool(user in set(model.users_)), "method": svc.rec_method,
            "recommendations": recs}


@router.post("/playlists", response_model=Playlist, tags=["recommend"],
             responses={200: {"content": {"audio/x-mpegurl": {}}}, 404: {"model": Error}})
def playlists(request: Request, body: PlaylistRequest):
    """A playlist continuing the seeds, or a path from one seed ``to`` another track; JSON or M3U."""
    svc = request.app.state.service
    seeds = _track_ids(svc, body.seeds)
    tracks = svc.trackset()
    if body.to is not None:
        if len(seeds) != 1:
            raise HTTPException(422, "'to' walks from one seed to another track; give exactly one seed")
        pl = deps.path_between(tracks, seeds[0], _track_ids(svc, [body.to])[0], body.length)
    else:
        pl = deps.continue_from(tracks, seeds, body.length, flow=body.flow)
    if body.format == "m3u":
        return PlainTextResponse(deps.m3u_text(pl, tracks), media_type="audio/x-mpegurl")
    return plain(deps.playlist_doc(pl, tracks))


@router.get("/health", response_model=Health, tags=["server"])
def health():
    """Liveness; answers without a token."""
    return {"status": "ok", "version": deps.__version__}


@router.get("/stats", response_model=Stats, tags=["server"])
def stats(request: Request):
    """Library counts and analysis progress, tagged models, the index state, the recommender state."""
    svc = request.app.state.service
    info = svc.cached("info", svc.lib.info)
    try:
        model_id = svc.model_id()
        status = deps.index_status(svc.lib, model_id)
        index = {k: status[k] for k in ("exists", "stale", "added", "removed")}
        manifest = status["manifest"] or {}
        index.update(type=manifest.get("index_type"), count=manifest.get("count"))
    except deps.CatalogError:
        model_id, index = None, None
    return plain({"library": info, "model_id": model_id, "tagged_models": deps.tagged_models(svc.lib),
                  "index": index, "read_only": svc.read_only, "recommender": svc.recommender_state})
