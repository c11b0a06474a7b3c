"""`mir serve`: an HTTP API and a web page over one library (FastAPI + uvicorn).

A thin front end: every answer comes from the library's own functions (see :mod:`mir.api.deps`,
the one module that imports them). :func:`create_app` builds the app; :func:`serve` runs it.
"""
from .app import create_app
from .run import serve

__all__ = ["create_app", "serve"]
