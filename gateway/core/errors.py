"""One error type for everything a client can cause (rendered by gateway/http/errors.py).

Every error leaves the service as `{"code": ..., "message": ...}` with a stable
snake_case code, so clients can branch on `code` and show `message`.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import asyncpg
import redis.exceptions

from gateway.infra.db import DatabaseUnavailable

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
