"""The FastAPI application: :func:`create_app` serves one library (API, OpenAPI at ``/docs``, the page)."""
from __future__ import annotations

import shutil
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException

from . import deps, generation, queries, tracks
from .guard import Guard
from .jobs import Jobs
from .service import Service

STATIC = Path(__file__).resolve().parent / "static"
# library errors -> HTTP status (the first matching class wins)
STATUS = [(deps.TrackNotFoundError, 404), (deps.AudioError, 422), (deps.ParameterError, 422),
          (deps.CatalogError, 409), (deps.ModelError, 409), (deps.MirError, 400)]


def _error(request: Request, status: int, detail, headers=None) -> JSONResponse:
    rid = getattr(request.state, "request_id", None)
    return JSONResponse({"detail": detail, "request_id": rid}, status_code=status, headers=headers)


def create_app(lib_path, *, token: str | None = None, read_only: bool = False, max_upload_mb: float = 200,
               events: str | None = None, rec_method: str = "hybrid", model: str | None = None) -> FastAPI:
    """An app serving library ``lib_path``.

    token : when set, every endpoint but ``/health`` (and the page's static files) needs it
    read_only : never change the library (``POST /analyze?add=true`` and ``POST /generate`` answer 403)
    max_upload_mb : request bodies over this size answer 413 (checked while they stream in)
    events : listening events (CSV or Parquet, as ``mir recommend`` reads) for the recommendations
    rec_method : the recommender fitted on ``events`` (a ``mir recommend --method``)
    model : which tagging model's outputs to serve (model id or checkpoint; default: the latest)
    """
    service = Service(lib_path, model=model, events=events, rec_method=rec_method, read_only=read_only)
    service.jobs = Jobs(service.lib.root / "serve" / "jobs", generation.run_job(service), writable=not read_only)

    @asynccontextmanager
    async def lifespan(app):
        shutil.rmtree(service.tmp, ignore_errors=True)  # uploads left by a killed server
        service.jobs.recover()  # jobs a stopped server left running are failed
        service.start_recommender()
        yield

    app = FastAPI(title="mir", version=deps.__version__, lifespan=lifespan,
                  description=f"Music information retrieval over the library {service.lib.root.name!r}.")
    app.state.service = service
    app.include_router(tracks.router)
    app.include_router(queries.router)
    app.include_router(generation.router)

    @app.exception_handler(deps.MirError)
    async def mir_error(request: Request, exc: deps.MirError):
        status = next(code for cls, code in STATUS if isinstance(exc, cls))
        return _error(request, status, str(exc))

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException):
        return _error(request, exc.status_code, exc.detail, getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        return _error(request, 422, [{k: e[k] for k in ("loc", "msg", "type") if k in e} for e in exc.errors()])

    @app.get("/", include_in_schema=False)
    def page():
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.add_middleware(Guard, token=token, max_body=int(max_upload_mb * 2**20))
    return app
