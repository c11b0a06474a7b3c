"""`mir serve`: the HTTP API and the web page over one library."""
from __future__ import annotations

import os
import sys

from ..errors import ParameterError


def cmd_serve(args) -> int:
    from ..api import serve
    from ..catalog import Library

    if args.workers < 1 or args.max_upload_mb <= 0 or not 0 < args.port < 65536:
        raise ParameterError("--workers must be >= 1, --max-upload-mb > 0 and --port in 1-65535")
    Library(args.library)  # fail here, with the CLI's message, when LIB is not a library
    where = f"http://{args.host if ':' not in args.host else f'[{args.host}]'}:{args.port}/"
    print(f"mir serve: {args.library} at {where} (API docs at {where}docs)"
          + ("; token required" if args.token else ""), file=sys.stderr)
    serve(args.library, host=args.host, port=args.port, workers=args.workers, token=args.token or None,
          read_only=args.read_only, max_upload_mb=args.max_upload_mb, events=args.events, rec_method=args.method,
          model=args.model)
    return 0


def register(sub) -> None:
    p = sub.add_parser("serve", help="serve a library over HTTP: JSON API, OpenAPI docs and a web page")
    p.add_argument("library", metavar="LIB")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument("--token", default=os.environ.get("MIR_TOKEN"), metavar="TOKEN",
                   help="require this token on every endpoint but /health (default: $MIR_TOKEN; none = open)")
    p.add_argument("--read-only", action="store_true", help="never change the library (uploads are not added)")
    p.add_argument("--max-upload-mb", type=float, default=200, metavar="MB", help="largest request body (default 200)")
    p.add_argument("--workers", type=int, default=1, metavar="N", help="server processes (default 1)")
    p.add_argument("--events", default=None, metavar="FILE",
                   help="listening events (CSV or Parquet, as for `mir recommend`) for /users/{user}/recommendations")
    p.add_argument("--method", default="hybrid", metavar="METHOD",
                   help="recommender fitted on --events (a `mir recommend --method`; default hybrid)")
    p.add_argument("--model", default=None, metavar="MODEL",
                   help="tagging model whose tags and index to serve (default: the one that tagged most recently)")
    p.set_defaults(func=cmd_serve)
