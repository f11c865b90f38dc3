"""Rendering of every error as `{"code": ..., "message": ...}`, in one place.

The error type itself and the outage classification live in gateway/core/errors.py.
"""

from __future__ import annotations

import logging
from typing import Any

import asyncpg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.routing import iter_route_contexts
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.responses import Response

from gateway.core.errors import (
    _PG_GONE,
    _REDIS_GONE,
    AppError,
    log_unavailable,
    unavailable_error,
    unstorable_input,
)
from gateway.http.responses import JSONResponse

log = logging.getLogger(__name__)


_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "rate_limited",
}


def _validation_details(exc: RequestValidationError) -> list[dict[str, Any]]:
    # Keep location and message; drop the echoed input, which may be a megabyte.
    return [
        {"loc": [str(p) for p in err.get("loc", ())], "msg": err.get("msg", "")}
        for err in exc.errors()
    ]


def _describe(details: list[dict[str, Any]]) -> str:
    if not details:
        return "invalid request"
    first = details[0]
    where = ".".join(p for p in first["loc"] if p not in ("body", "query", "path"))
    return f"{where}: {first['msg']}" if where else first["msg"]


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(AppError)
    async def _app_error(_: Request, exc: AppError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        details = _validation_details(exc)
        return JSONResponse(
            {"code": "validation_error", "message": _describe(details), "details": details},
            status_code=422,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, "error")
        headers = getattr(exc, "headers", None)
        if exc.status_code == 405:
            headers = {**(headers or {}), "Allow": allowed_methods(request)}
        return JSONResponse(
            {"code": code, "message": str(exc.detail)}, status_code=exc.status_code, headers=headers
        )

    @app.exception_handler(asyncpg.DataError)
    async def _data_error(_: Request, exc: asyncpg.DataError) -> JSONResponse:
        error = unstorable_input()
        return JSONResponse(error.body(), status_code=error.status)

    # Registered per class (not only under `Exception`): Starlette re-raises what the
    # `Exception` handler answered, and uvicorn then drops the keep-alive connection.
    async def _unavailable(request: Request, exc: Exception) -> JSONResponse:
        error = unavailable_error(exc)
        if error is None:  # an InterfaceError that is our bug, not an outage
            return _internal_error(request, exc)
        log_unavailable(error, f"{request.method} {request.url.path}", exc)
        return JSONResponse(error.body(), status_code=error.status, headers=error.headers)

    for exc_class in (*_PG_GONE, asyncpg.InterfaceError, *_REDIS_GONE):
        app.add_exception_handler(exc_class, _unavailable)

    @app.exception_handler(ClientDisconnect)
    async def _client_gone(_: Request, exc: ClientDisconnect) -> Response:
        # Nobody is listening; the metrics middleware records (and logs) a 499.
        return Response(status_code=499)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        if unavailable_error(exc) is not None:  # wrapped: inside a group or a cause
            return await _unavailable(request, exc)
        return _internal_error(request, exc)


def allowed_methods(request: Request) -> str:
    """`Allow` for a 405: the methods of every route at this path.

    Starlette puts only the first matching route's methods in `Allow`, and a path
    such as /city/rooms is served by two routes (GET and POST).
    """
    methods: set[str] = set()
    path = request.scope["path"]
    for route in iter_route_contexts(request.app.router.routes):
        regex = getattr(route, "path_regex", None)
        if route.methods and regex is not None and regex.match(path):
            methods.update(route.methods)
    return ", ".join(sorted(methods))


def _internal_error(request: Request, exc: Exception) -> JSONResponse:
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return JSONResponse({"code": "internal_error", "message": "internal error"}, status_code=500)
