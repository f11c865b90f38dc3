"""One error type for everything a client can cause, rendered in one place.

Every error leaves the service as `{"code": ..., "message": ...}` with a stable
snake_case code, so clients can branch on `code` and show `message`.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import asyncpg
import redis.exceptions
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.responses import Response

from gateway.jsonio import JSONResponse

log = logging.getLogger(__name__)


class AppError(Exception):
    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        headers: dict[str, str] | None = None,
        details: Any = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers
        self.details = details

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details is not None:
            body["details"] = self.details
        return body


# Shorthands for the errors the rules raise most often.
def not_found(code: str, message: str) -> AppError:
    return AppError(404, code, message)


def unauthorized(message: str = "missing or invalid token") -> AppError:
    return AppError(401, "unauthorized", message, headers={"WWW-Authenticate": "Bearer"})


def forbidden(message: str) -> AppError:
    return AppError(403, "forbidden", message)


def unstorable_input() -> AppError:
    """Values PostgreSQL cannot hold (NUL characters, invalid text) in ids, paths or
    fields that no rule checked: the client's input, not our bug."""
    return AppError(422, "invalid_input", "input contains characters that cannot be stored")


# --- a dependency is down: 503 with Retry-After, never a 500 ---------------------
# How long a client is asked to wait before retrying; outages last seconds to minutes.
UNAVAILABLE_RETRY_AFTER_SECONDS = 2


class DatabaseUnavailable(ConnectionError):
    """PostgreSQL could not be reached when opening a connection (gateway/db.py).

    A ConnectionError (so an OSError), as the errors it replaces were: code that
    already catches those keeps working.
    """


def database_unavailable() -> AppError:
    return AppError(
        503,
        "database_unavailable",
        "the database is unavailable; try again shortly",
        headers={"Retry-After": str(UNAVAILABLE_RETRY_AFTER_SECONDS)},
    )


def redis_unavailable() -> AppError:
    return AppError(
        503,
        "redis_unavailable",
        "a required service is unavailable; try again shortly",
        headers={"Retry-After": str(UNAVAILABLE_RETRY_AFTER_SECONDS)},
    )


# What asyncpg raises when the server is gone or going, rather than for a query:
# class 08 (connection exceptions: refused, lost mid-operation, ...), the server
# shutting down or starting up (57P01-57P03), and out of connection slots (53300).
_PG_GONE: tuple[type[BaseException], ...] = (
    DatabaseUnavailable,
    asyncpg.PostgresConnectionError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
)
# asyncpg's InterfaceError is mostly API misuse (our bug); these messages are not.
_PG_CLOSED_MESSAGES = ("connection is closed", "pool is closing", "pool is closed")
_REDIS_GONE = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)


def _is_pg_gone(exc: BaseException) -> bool:
    if isinstance(exc, _PG_GONE):
        return True
    return isinstance(exc, asyncpg.InterfaceError) and str(exc).endswith(_PG_CLOSED_MESSAGES)


def unavailable_error(exc: BaseException) -> AppError | None:
    """The 503 for an exception caused by PostgreSQL or Redis being down, else None.

    Looks through explicit chaining (`raise X from exc`) and exception groups, so
    an outage surfacing inside a TaskGroup or a wrapper is still recognised.
    """
    seen = 0
    current: BaseException | None = exc
    while current is not None and seen < 8:
        if _is_pg_gone(current):
            return database_unavailable()
        if isinstance(current, _REDIS_GONE):
            return redis_unavailable()
        if isinstance(current, BaseExceptionGroup):
            for inner in current.exceptions:
                found = unavailable_error(inner)
                if found is not None:
                    return found
        current, seen = current.__cause__, seen + 1
    return None


# During an outage every request fails the same way: one WARNING per code per this
# many seconds says so; the rest go to DEBUG (the 503s are counted in the metrics).
_UNAVAILABLE_LOG_INTERVAL_SECONDS = 10.0
_last_logged: dict[str, float] = {}


def log_unavailable(error: AppError, what: str, exc: BaseException) -> None:
    """Log a 503 for a dependency outage without flooding the log."""
    now = time.monotonic()
    quiet = now - _last_logged.get(error.code, float("-inf")) < _UNAVAILABLE_LOG_INTERVAL_SECONDS
    if not quiet:
        _last_logged[error.code] = now
    log.log(
        logging.DEBUG if quiet else logging.WARNING,
        "%s: %s (%s: %s)",
        what,
        error.code,
        type(exc).__name__,
        exc,
    )


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
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, "error")
        return JSONResponse(
            {"code": code, "message": str(exc.detail)},
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
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


def _internal_error(request: Request, exc: Exception) -> JSONResponse:
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return JSONResponse({"code": "internal_error", "message": "internal error"}, status_code=500)
