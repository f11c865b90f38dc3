"""Request id, metrics and the access log for every HTTP request and WebSocket."""

from __future__ import annotations

import logging
import re
import secrets
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.http.metrics import HTTP_DURATION, HTTP_REQUESTS, WS_CONNECTIONS, WS_OPENED
from gateway.infra.logs import REQUEST_ID, USER_ID

log = logging.getLogger(__name__)
access_log = logging.getLogger("gateway.access")


# --- the middleware ----------------------------------------------------------------
_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:@/+=-]{1,128}$")
_UNMATCHED = "<unmatched>"
# Probes and scrapes are frequent and uninteresting in the access log.
_QUIET_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


def _route_label(scope: Scope) -> str:
    """The route template (`/city/rooms/{room_id}`), never the raw path: bounded labels."""
    path: object = getattr(scope.get("route"), "path", None)
    return path if isinstance(path, str) else _UNMATCHED


def _request_id(scope: Scope) -> str:
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            candidate: str = bytes(value).decode("latin-1")
            if _REQUEST_ID_RE.match(candidate):
                return candidate
            break
    return secrets.token_hex(8)


# Methods outside this set are labelled "OTHER": a client picks the method, and a
# label must not take arbitrary values.
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# Not an HTTP status: nginx's "client closed the request" (the client went away
# before the answer), kept out of the 5xx that alerts watch.
CLIENT_CLOSED_REQUEST = 499


def _logged_path(scope: Scope) -> str:
    """The path as the client sent it (percent-encoded, never the query string)."""
    raw = scope.get("raw_path")
    return raw.decode("latin-1") if isinstance(raw, bytes) else str(scope["path"])


class MetricsMiddleware:
    """Request id, metrics and the access log for every HTTP request and WebSocket.

    Pure ASGI (no per-request task, no body buffering): it wraps `send` to see the
    status and adds `X-Request-ID` to the response headers. The request id (from the
    client's `X-Request-ID` when sane, else generated) is put in a contextvar that
    the logging filter copies into every record logged while handling the request.

    A request whose client went away before it was answered is recorded as 499, not
    as the 500 (or whatever the app tried to send into the closed connection). An
    exception that reaches here after the response was completely sent (Starlette
    re-raises after rendering a 500, already logged by gateway/http/errors.py) stops here:
    passed on, it would make uvicorn drop the keep-alive connection for no reason.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "websocket":
            await self._websocket(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        request_id = _request_id(scope)
        REQUEST_ID.set(request_id)
        USER_ID.set(None)
        header = (b"x-request-id", request_id.encode("latin-1"))
        status = 500
        started = time.perf_counter()
        disconnected = responded = complete = False

        async def receive_wrapper() -> Message:
            nonlocal disconnected
            message = await receive()
            if message["type"] == "http.disconnect" and not responded:
                disconnected = True
            return message

        async def send_wrapper(message: Message) -> None:
            nonlocal status, responded, complete
            if message["type"] == "http.response.start":
                responded = True
                status = CLIENT_CLOSED_REQUEST if disconnected else message["status"]
                message["headers"] = [*message.get("headers", ()), header]
            elif message["type"] == "http.response.body" and not message.get("more_body"):
                complete = True
            await send(message)

        try:
            await self.app(scope, receive_wrapper, send_wrapper)
        except Exception:
            if not complete:
                raise  # a half-sent response: only closing the connection ends it
            log.debug("exception after a complete response (logged where raised)")
        finally:
            if disconnected and not responded:
                status = CLIENT_CLOSED_REQUEST
            elapsed = time.perf_counter() - started
            method = scope["method"]
            label = method if method in _METHODS else "OTHER"
            route = _route_label(scope)
            HTTP_REQUESTS.labels(label, route, str(status)).inc()
            HTTP_DURATION.labels(label, route).observe(elapsed)
            if scope["path"] not in _QUIET_PATHS and access_log.isEnabledFor(logging.INFO):
                # LogHygiene (gateway/infra/logs.py) escapes control characters in the line.
                access_log.info(
                    "%s %s %d %.1fms",
                    method,
                    _logged_path(scope),
                    status,
                    elapsed * 1000,
                    extra={"status": status, "duration_ms": round(elapsed * 1000, 2)},
                )

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        REQUEST_ID.set(_request_id(scope))
        USER_ID.set(None)
        accepted = False
        route = _UNMATCHED

        async def send_wrapper(message: Message) -> None:
            nonlocal accepted, route
            if message["type"] == "websocket.accept" and not accepted:
                accepted = True
                route = _route_label(scope)
                WS_CONNECTIONS.labels(route).inc()
                WS_OPENED.labels(route).inc()
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            if accepted:
                WS_CONNECTIONS.labels(route).dec()
