"""Annotated dependencies read from app state; they work for REST and WebSockets."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends
from starlette.requests import HTTPConnection

from gateway.app.runtime import Runtime
from gateway.core.auth import Principal, authenticate, bearer_from_header


# Dependencies are `async def` on purpose: FastAPI runs plain `def` dependencies in
# a thread pool, which costs more than the work they do.
async def get_runtime(conn: HTTPConnection) -> Runtime:
    runtime: Runtime = conn.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


async def current_user(conn: HTTPConnection, rt: RuntimeDep) -> Principal:
    """The caller's user JWT from `Authorization: Bearer` (401 otherwise)."""
    token = bearer_from_header(conn.headers.get("authorization"))
    return authenticate(
        token, jwt_secret=rt.settings.jwt_secret, internal_token=None, allow_service=False
    )


CurrentUser = Annotated[Principal, Depends(current_user)]
