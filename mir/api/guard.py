"""One ASGI middleware in front of every request: request id, token, body limit, access log.

- Request id: the client's ``X-Request-ID`` when it is short and plain, else a new one; it is in
  every response's ``X-Request-ID`` header, in error bodies and in the access log.
- Token: when set, every path except the public ones (``/health``, the page and its static files)
  needs ``Authorization: Bearer TOKEN``, the ``mir_token`` cookie or ``?token=TOKEN``; else 401.
- Body limit: a declared ``Content-Length`` over the limit is refused at once; otherwise the bytes
  are counted as they arrive and the request stops with 413 the moment they pass the limit.
- Access log: one JSON object per request on the ``mir.api.access`` logger.
"""
from __future__ import annotations

import hmac
import json
import logging
import re
import time
import uuid
from urllib.parse import parse_qs, unquote

ACCESS_LOG = logging.getLogger("mir.api.access")
LOG = logging.getLogger("mir.api")
PUBLIC = ("/health", "/", "/favicon.ico")
PUBLIC_PREFIX = "/static/"
COOKIE = "mir_token"
_RID = re.compile(r"[A-Za-z0-9._-]{1,64}")


class BodyTooLarge(Exception):
    def __init__(self, limit: int):
        super().__init__(f"request body over the upload limit of {limit} bytes ({limit / 2**20:g} MB)")
        self.limit = limit


def _json_response(status: int, detail: str, rid: str, extra_headers=()) -> tuple[dict, dict]:
    body = json.dumps({"detail": detail, "request_id": rid}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
               (b"x-request-id", rid.encode()), *extra_headers]
    return ({"type": "http.response.start", "status": status, "headers": headers},
            {"type": "http.response.body", "body": body})


def _token_of(scope) -> str | None:
    headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
    auth = headers.get("authorization", "")
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip()
    for part in headers.get("cookie", "").split(";"):
        name, _, value = part.strip().partition("=")
        if name == COOKIE and value:
            return unquote(value)
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    return query.get("token", [None])[0]


class Guard:
    def __init__(self, app, *, token: str | None, max_body: int):
        self.app = app
        self.token = token
        self.max_body = max_body

    def _allowed(self, scope) -> bool:
        path = scope["path"]
        if self.token is None or path in PUBLIC or path.startswith(PUBLIC_PREFIX):
            return True
        given = _token_of(scope)
        return given is not None and hmac.compare_digest(given.encode(), self.token.encode())

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start = time.perf_counter()
        incoming = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        rid = incoming if _RID.fullmatch(incoming) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = rid
        state = {"status": None, "bytes": 0, "received": 0}

        async def send_with_id(message):
            if message["type"] == "http.response.start":
                state["status"] = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-request-id", rid.encode())]
            elif message["type"] == "http.response.body":
                state["bytes"] += len(message.get("body", b""))
            await send(message)

        async def counted_receive():
            message = await receive()
            if message["type"] == "http.request":
                state["received"] += len(message.get("body", b""))
                if state["received"] > self.max_body:
                    raise BodyTooLarge(self.max_body)
            return message

        try:
            declared = dict(scope["headers"]).get(b"content-length")
            if not self._allowed(scope):
                for m in _json_response(401, "missing or wrong token: send 'Authorization: Bearer TOKEN'", rid,
                                        [(b"www-authenticate", b"Bearer")]):
                    await send_with_id(m)
            elif declared is not None and declared.isdigit() and int(declared) > self.max_body:
                for m in _json_response(413, str(BodyTooLarge(self.max_body)), rid, [(b"connection", b"close")]):
                    await send_with_id(m)
            else:
                try:
                    await self.app(scope, counted_receive, send_with_id)
                except BodyTooLarge as exc:
                    if state["status"] is not None:
                        raise
                    for m in _json_response(413, str(exc), rid, [(b"connection", b"close")]):
                        await send_with_id(m)
                except Exception:
                    LOG.exception("request %s %s %s failed", rid, scope["method"], scope["path"])
                    if state["status"] is not None:
                        raise
                    for m in _json_response(500, "internal error; the server log has the details", rid):
                        await send_with_id(m)
        finally:
            client = scope.get("client")
            ACCESS_LOG.info(json.dumps({
                "ts": round(time.time(), 3), "request_id": rid, "method": scope["method"], "path": scope["path"],
                "status": state["status"] or 500, "ms": round(1000 * (time.perf_counter() - start), 2),
                "bytes_out": state["bytes"], "bytes_in": state["received"], "client": client[0] if client else None,
            }))
