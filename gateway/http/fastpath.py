"""The busiest POST routes, answered before FastAPI's stack.

Measured on one process (bench/heartbeat.py, bench/messages.py): FastAPI's
middleware, routing and dependency layers cost more CPU than a presence heartbeat
itself and about as much as the message insert, and every coroutine layer is
re-entered when a request resumes after its Redis or PostgreSQL reply. So
`create_app` installs `FastPaths` just inside the metrics middleware (request id,
access log and `city_http_*` still apply). It answers a `POST` to one of its routes
when the body has a declared, in-limit Content-Length; anything else (a chunked or
oversized body, other paths and methods) goes down the normal stack, where each
route's documented FastAPI twin calls the same handler and gives the same answers.
Errors are rendered exactly as the app's handlers render them.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import asyncpg
import orjson
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.core.errors import AppError, log_unavailable, unavailable_error, unstorable_input
from gateway.http.deps import Services

log = logging.getLogger(__name__)

# (runtime, path groups, content type, authorization header, raw body) -> (status, body)
Handler = Callable[
    [Services, tuple[str, ...], str | None, str | None, bytes],
    Awaitable[tuple[int, dict[str, Any]]],
]
_JSON_HEADER = (b"content-type", b"application/json")


@dataclass(frozen=True)
class FastRoute:
    template: str  # the route as documented, e.g. "/city/rooms/{room_id}/messages"
    pattern: re.Pattern[str]  # matches the whole path; groups are the path parameters
    handler: Handler
    # What the metrics middleware labels requests by (`scope["route"].path`).
    label: SimpleNamespace = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "label", SimpleNamespace(path=self.template))


class FastPaths:
    def __init__(self, app: ASGIApp, routes: list[FastRoute], max_bytes: int) -> None:
        self.app = app
        self.routes = routes
        self.max_bytes = max_bytes

    def _match(self, path: str) -> tuple[FastRoute, tuple[str, ...]] | None:
        for route in self.routes:
            found = route.pattern.fullmatch(path)
            if found is not None:
                return route, found.groups()
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        matched = (
            self._match(scope["path"])
            if scope["type"] == "http" and scope["method"] == "POST"
            else None
        )
        if matched is None:
            await self.app(scope, receive, send)
            return
        content_type = authorization = None
        length = -1
        for name, value in scope["headers"]:
            if name == b"content-length":
                length = int(value) if value.isdigit() else -1
            elif name == b"content-type":
                content_type = value.decode("latin-1")
            elif name == b"authorization":
                authorization = value.decode("latin-1")
        if not 0 <= length <= self.max_bytes:
            await self.app(scope, receive, send)
            return
        route, params = matched
        scope["route"] = route.label
        chunks = []
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        raw = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        headers = [_JSON_HEADER]
        error: AppError | None = None
        try:
            runtime = scope["app"].state.runtime
            status, answer = await route.handler(runtime, params, content_type, authorization, raw)
            payload = orjson.dumps(answer)
        except AppError as caught:
            error = caught
        except asyncpg.DataError:
            error = unstorable_input()
        except Exception as caught:
            # PostgreSQL or Redis down: 503 with Retry-After, as the FastAPI routes answer.
            error = unavailable_error(caught)
            if error is not None:
                log_unavailable(error, f"POST {scope['path']}", caught)
            else:
                log.exception("unhandled error on POST %s", scope["path"])
                status = 500
                payload = orjson.dumps({"code": "internal_error", "message": "internal error"})
        if error is not None:
            status, payload = error.status, orjson.dumps(error.body())
            headers += [(k.lower().encode(), v.encode()) for k, v in (error.headers or {}).items()]
        headers.append((b"content-length", b"%d" % len(payload)))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})
