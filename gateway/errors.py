"""One error type for everything a client can cause, rendered in one place.

Every error leaves the service as `{"code": ..., "message": ...}` with a stable
snake_case code, so clients can branch on `code` and show `message`.
"""

from __future__ import annotations

import logging
from typing import Any

import asyncpg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

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

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return JSONResponse(
            {"code": "internal_error", "message": "internal error"}, status_code=500
        )
