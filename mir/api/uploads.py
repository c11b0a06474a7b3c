"""Uploaded audio, streamed straight into the library's temp area.

Accepted bodies: ``multipart/form-data`` with the file in the field ``file`` (a browser's
FormData, ``curl -F file=@song.flac``), or the raw bytes with any other content type
(``curl --data-binary @song.flac -H 'Content-Type: audio/flac'``; ``?filename=`` names it).
The body is never held in memory: chunks go to ``LIB/tmp/serve/<random>.<ext>`` as they arrive
(the :class:`~mir.api.guard.Guard` stops it at the size limit). The name the client gives is used
only for its extension (when it is a known audio one) and in messages, never as a path.
"""
from __future__ import annotations

import contextlib
import os
import re
import uuid
from dataclasses import dataclass
from pathlib import Path

from fastapi import HTTPException, Request
from python_multipart.multipart import MultipartParser, parse_options_header

from .deps import AUDIO_EXTENSIONS
from .guard import BodyTooLarge

FIELD = "file"
# what the OpenAPI schema says the upload endpoints take
REQUEST_BODY = {
    "required": True,
    "content": {
        "multipart/form-data": {"schema": {"type": "object", "required": [FIELD],
                                           "properties": {FIELD: {"type": "string", "format": "binary"}}}},
        "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
    },
}


@dataclass
class Upload:
    path: Path  # the temp file (under LIB/tmp/serve)
    name: str  # the client's file name, for messages only
    size: int


def _safe_name(name: str | None) -> str:
    name = (name or "upload").replace("\\", "/").rsplit("/", 1)[-1]
    return re.sub(r"[^\w .()+-]", "_", name)[:120] or "upload"


def _suffix(name: str) -> str:
    ext = name.rsplit(".", 1)[-1].lower() if "." in name else ""
    return f".{ext}" if ext in AUDIO_EXTENSIONS else ""


async def receive(request: Request, folder: Path) -> Upload:
    """Stream the request body's audio into a new file under ``folder``; 422 when there is none."""
    folder.mkdir(parents=True, exist_ok=True)
    ctype, params = parse_options_header(request.headers.get("content-type"))
    if ctype == b"multipart/form-data":
        return await _multipart(request, folder, params.get(b"boundary"))
    name = _safe_name(request.query_params.get("filename"))
    path = folder / f"{uuid.uuid4().hex}{_suffix(name)}"
    size = 0
    with _removed_on_error(path), open(path, "wb") as fh:
        async for chunk in request.stream():
            fh.write(chunk)
            size += len(chunk)
    if size == 0:
        path.unlink(missing_ok=True)
        raise HTTPException(422, "the request body is empty: send the audio file (multipart field 'file' or raw bytes)")
    return Upload(path, name, size)


@contextlib.contextmanager
def _removed_on_error(path: Path):
    try:
        yield
    except BaseException:
        path.unlink(missing_ok=True)
        raise


async def _multipart(request: Request, folder: Path, boundary: bytes | None) -> Upload:
    if not boundary:
        raise HTTPException(422, "multipart body without a boundary")
    part: dict = {}
    found: dict = {}
    header = {"field": b"", "value": b""}

    def on_part_begin():
        part.clear()
        part["headers"] = {}

    def on_header_field(data, start, end):
        header["field"] += data[start:end]

    def on_header_value(data, start, end):
        header["value"] += data[start:end]

    def on_header_end():
        part["headers"][header["field"].decode("latin-1").lower()] = header["value"]
        header["field"] = header["value"] = b""

    def on_headers_finished():
        _, disp = parse_options_header(part["headers"].get("content-disposition"))
        if disp.get(b"name", b"").decode("latin-1") == FIELD and "fh" not in found:
            name = _safe_name(disp.get(b"filename", b"upload").decode("utf-8", "replace"))
            found.update(name=name, path=folder / f"{uuid.uuid4().hex}{_suffix(name)}", size=0)
            found["fh"] = open(found["path"], "wb")
            part["target"] = True

    def on_part_data(data, start, end):
        if part.get("target"):
            found["fh"].write(data[start:end])
            found["size"] += end - start

    def on_part_end():
        if part.get("target"):
            found["fh"].close()
            part["target"] = False

    parser = MultipartParser(boundary, {
        "on_part_begin": on_part_begin, "on_header_field": on_header_field, "on_header_value": on_header_value,
        "on_header_end": on_header_end, "on_headers_finished": on_headers_finished, "on_part_data": on_part_data,
        "on_part_end": on_part_end})
    try:
        async for chunk in request.stream():
            parser.write(chunk)
        parser.finalize()
    except BaseException as exc:
        if "path" in found:
            found["fh"].close()
            found["path"].unlink(missing_ok=True)
        if isinstance(exc, BodyTooLarge) or not isinstance(exc, Exception):
            raise
        raise HTTPException(422, f"malformed multipart body: {exc}") from None
    if "path" not in found:
        raise HTTPException(422, f"the multipart body has no field {FIELD!r} with the audio file")
    found["fh"].close()
    if found["size"] == 0:
        found["path"].unlink(missing_ok=True)
        raise HTTPException(422, f"the uploaded file {found['name']!r} is empty")
    return Upload(found["path"], found["name"], found["size"])


def discard(upload: Upload | None) -> None:
    if upload is not None:
        with contextlib.suppress(OSError):
            os.unlink(upload.path)
