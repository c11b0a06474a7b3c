"""``/tracks``: search the catalogue, one track's details, its audio (with ranges) and spectrogram."""
from __future__ import annotations

import mimetypes
import os
import stat
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query, Request
from fastapi.responses import FileResponse, Response

from . import deps
from .plain import plain
from .render import spectrogram_png
from .schemas import TRACK_ID, TRACK_ID_DOC, Error, TrackDetail, TrackPage

router = APIRouter(tags=["tracks"], responses={422: {"model": Error, "description": "a parameter is malformed"}})
TrackId = Annotated[str, Path(pattern=TRACK_ID, description=TRACK_ID_DOC)]
NOT_FOUND = {404: {"model": Error, "description": "no such track, or its file is gone"}}
SUMMARY = ("title", "artist", "album", "genre", "genre_pred", "year", "key", "mode")
DESCRIPTORS = ("tempo", "key", "mode", "key_confidence", "loudness", "rhythm", "chroma")
SPECTROGRAMS_KEPT = 64


def _split(values: list[str] | str | None) -> list[str]:
    values = [values] if isinstance(values, str) else (values or [])
    return [x.strip() for v in values for x in v.split(",") if x.strip()]


def _row(request: Request, track_id: str):
    """The catalogue row of a track reference (never a path: the route only admits hex ids)."""
    return request.app.state.service.track(track_id)


@router.get("/tracks", response_model=TrackPage)
def list_tracks(request: Request,
                q: Annotated[str | None, Query(max_length=200, description="text in title, artist, album or file name")] = None,
                genre: Annotated[list[str], Query(description="any of these predicted genres; repeatable or comma-separated")] = [],  # noqa: B006
                file_genre: Annotated[list[str], Query(description="any of these genres in the files' own metadata")] = [],  # noqa: B006
                tag: Annotated[list[str], Query(description="all of these decided tags; repeatable or comma-separated")] = [],  # noqa: B006
                bpm: Annotated[str | None, Query(max_length=40, description="tempo range, e.g. 90-120, 90- or -120")] = None,
                key: Annotated[list[str], Query(description="key, e.g. 'A minor', Am or F# (any mode); repeatable")] = [],  # noqa: B006
                limit: Annotated[int, Query(ge=1, le=500)] = 50,
                offset: Annotated[int, Query(ge=0, le=10**9)] = 0):
    """Tracks of the library passing the filters (the filters of ``mir similar``), in track-id order."""
    svc = request.app.state.service
    meta = svc.meta()
    filters = deps.Filters(genres=_split(genre), file_genres=_split(file_genre), tags=_split(tag), bpm=bpm or None,
                           keys=tuple(key))
    frame = meta[filters.mask(meta)]
    if q:
        needle = q.casefold()
        names = frame["path"].fillna("").map(lambda p: os.path.basename(str(p)))
        text = names.str.casefold()
        for col in ("title", "artist", "album"):
            if col in frame:
                text = text + "\n" + frame[col].fillna("").astype(str).str.casefold()
        frame = frame[text.str.contains(needle, regex=False).to_numpy()]
    page = frame.iloc[offset:offset + limit]
    tracks = []
    for track_id, row in page.iterrows():
        item = {c: plain(row.get(c)) for c in SUMMARY}
        item.update(track_id=str(track_id), bpm=plain(row.get("tempo")), tags=plain(row.get("tags")) or [])
        tracks.append(item)
    return {"total": len(frame), "offset": offset, "limit": limit, "model_id": meta.attrs.get("model_id"),
            "tracks": tracks}


@router.get("/tracks/{track_id}", response_model=TrackDetail, responses=NOT_FOUND)
def get_track(request: Request, track_id: TrackId):
    """Metadata, descriptors, tags with probabilities and the predicted genre of one track."""
    svc = request.app.state.service
    row = _row(request, track_id)
    desc = svc.cached("descriptors", lambda: svc.lib.descriptors().set_index("hash"))
    out = {c: plain(row.get(c)) for c in TrackDetail.model_fields if c in row.index}
    out["year"] = None if out.get("year") is None else str(out["year"])
    out["descriptors"] = ({c: plain(desc.loc[row["hash"]].get(c)) for c in DESCRIPTORS}
                          if row["hash"] in desc.index else {})
    try:
        model_id = svc.model_id()
    except deps.CatalogError:
        model_id = None
    tags = svc.track_tags(row["hash"], model_id) if model_id else None
    if tags:
        out.update(model_id=model_id, tags=tags["tags"], tag_probs=tags["tag_probs"], genre_pred=tags["genre"],
                   genre_probs=tags["genre_probs"], music=tags["music"])
    return out


def catalogued_file(svc, row) -> str:
    """The track's file, only if it is still the regular file that was scanned at that path."""
    path = str(row["path"])
    if row["status"] != "ok":
        raise HTTPException(404, f"track {row['track_id']} is missing from disk; run `mir scan` on its folder")
    files = svc.cached("files", lambda: {r.path: (r.size, r.mtime_ns) for r in svc.lib.files().itertuples()})
    try:
        st = os.lstat(path)
    except OSError:
        raise HTTPException(404, f"the file of track {row['track_id']} is gone; run `mir scan` on its folder") from None
    if not stat.S_ISREG(st.st_mode) or os.path.realpath(path) != path or files.get(path) != (st.st_size, st.st_mtime_ns):
        raise HTTPException(409, f"the file of track {row['track_id']} changed since it was scanned "
                                 "(replaced, or now a link); run `mir scan` on its folder")
    return path


@router.get("/tracks/{track_id}/audio", response_class=FileResponse, responses={
    **NOT_FOUND, 206: {"description": "the requested byte range"},
    416: {"description": "the range lies outside the file"}, 409: {"model": Error}})
def get_audio(request: Request, track_id: TrackId):
    """The track's file as it is on disk, with HTTP range requests (so a player can seek)."""
    svc = request.app.state.service
    path = catalogued_file(svc, _row(request, track_id))
    return FileResponse(path, media_type=mimetypes.guess_type(path)[0] or "application/octet-stream")


@router.get("/tracks/{track_id}/spectrogram.png", response_class=Response,
            responses={**NOT_FOUND, 200: {"content": {"image/png": {}}}})
def get_spectrogram(request: Request, track_id: TrackId):
    """The track's cached log-mel spectrogram (from ``mir analyze``), drawn as a PNG."""
    svc = request.app.state.service
    row = _row(request, track_id)
    pngs = svc.cached("spectrograms", dict)
    png = pngs.get(row["hash"])
    if png is None:
        try:
            S = svc.lib.logmel(str(row["track_id"]), mmap=True)
        except deps.CatalogError as exc:
            raise HTTPException(404, str(exc)) from None
        cfg = deps.get_config().analysis
        png = spectrogram_png(S, sr=cfg.sample_rate, hop_length=cfg.hop_length,
                              title=" - ".join(str(x) for x in (row.get("artist"), row.get("title")) if plain(x)))
        if len(pngs) >= SPECTROGRAMS_KEPT:
            pngs.pop(next(iter(pngs)))
        pngs[row["hash"]] = png
    return Response(png, media_type="image/png", headers={"Cache-Control": "private, max-age=3600"})
