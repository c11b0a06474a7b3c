"""Run the app with uvicorn: one process, or ``workers`` processes sharing the port."""
from __future__ import annotations

import ipaddress
import json
import logging
import os
import sys

ENV = "MIR_SERVE_OPTIONS"  # how worker processes receive create_app's arguments
KEEP_ALIVE_S = 75


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def _configure_process() -> None:
    """One torch and one FAISS thread per request thread (see README: Tagging speed); logs on stderr."""
    import faiss
    import torch

    torch.set_num_threads(1)
    faiss.omp_set_num_threads(1)
    _configure_logs()


def _configure_logs() -> None:
    """JSON access lines and server messages on stderr, as they are (the access log formats itself)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    for name in ("mir.api.access", "mir.api"):
        log = logging.getLogger(name)
        if not log.handlers:
            log.addHandler(handler)
        log.setLevel(logging.INFO)
        log.propagate = False


def app_from_env():
    """The app factory uvicorn's worker processes call (arguments come through ``MIR_SERVE_OPTIONS``)."""
    from .app import create_app

    _configure_process()
    options = json.loads(os.environ[ENV])
    return create_app(options.pop("lib_path"), **options)


def serve(lib_path, *, host: str = "127.0.0.1", port: int = 8000, workers: int = 1, token: str | None = None,
          read_only: bool = False, max_upload_mb: float = 200, events: str | None = None, rec_method: str = "hybrid",
          model: str | None = None) -> None:
    """Serve ``lib_path`` until interrupted (see :func:`mir.api.create_app` for the options)."""
    import uvicorn

    _configure_process()
    if token is None and not is_loopback(host):
        logging.getLogger("mir.api").warning(
            "serving on %s without a token: anyone who can reach it can read the library; set --token or MIR_TOKEN", host)
    options = dict(lib_path=os.fspath(lib_path), token=token, read_only=read_only, max_upload_mb=max_upload_mb,
                   events=None if events is None else os.fspath(events), rec_method=rec_method, model=model)
    # keep idle connections longer than clients do (httpx: 5 s, uvicorn's default too): equal timeouts race,
    # and a client then sends on a connection the server is closing
    common = dict(host=host, port=port, access_log=False, log_level="warning", server_header=False,
                  timeout_keep_alive=KEEP_ALIVE_S)
    if workers > 1:
        os.environ[ENV] = json.dumps(options)
        uvicorn.run("mir.api.run:app_from_env", factory=True, workers=workers, **common)
    else:
        from .app import create_app

        uvicorn.run(create_app(**options), **common)
