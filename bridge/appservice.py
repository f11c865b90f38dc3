"""The appservice API Synapse calls (Matrix spec, "Application Service API").

Only Synapse's `hs_token` is accepted — as `Authorization: Bearer` (Matrix 1.4+) or
the legacy `access_token` query parameter — compared in constant time: none is 401
M_UNAUTHORIZED, a wrong one 403 M_FORBIDDEN. Errors use Matrix's
`{"errcode", "error"}` shape, since Synapse is the client here. The routes are also
served without the `/_matrix/app/v1` prefix (the legacy paths of older homeservers).
"""

from __future__ import annotations

import hmac
import logging
from typing import Any

import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response

from bridge.service import EXTENSION, Bridge
from gateway.jsonio import JSONResponse

log = logging.getLogger(__name__)

router = APIRouter(tags=["matrix appservice"])
PREFIX = "/_matrix/app/v1"


def _error(status: int, errcode: str, message: str) -> JSONResponse:
    return JSONResponse({"errcode": errcode, "error": message}, status_code=status)


def _authorise(request: Request) -> Bridge | Response:
    """The bridge if the caller is Synapse; else the error response to send."""
    bridge: Bridge | None = request.app.state.runtime.extensions.get(EXTENSION)
    if bridge is None:
        return _error(404, "M_UNRECOGNIZED", "the Matrix bridge is not enabled")
    token: str | None = None
    header = request.headers.get("authorization")
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            token = value.strip()
    if token is None:
        token = request.query_params.get("access_token") or None
    if token is None:
        return _error(401, "M_UNAUTHORIZED", "missing hs_token")
    expected = bridge.settings.matrix_hs_token
    assert expected is not None
    if not hmac.compare_digest(token.encode(), expected.get_secret_value().encode()):
        return _error(403, "M_FORBIDDEN", "invalid hs_token")
    return bridge


async def _json_object(request: Request) -> dict[str, Any] | Response:
    raw = await request.body()
    try:
        body = orjson.loads(raw) if raw else {}
    except orjson.JSONDecodeError:
        return _error(400, "M_NOT_JSON", "body is not JSON")
    if not isinstance(body, dict):
        return _error(400, "M_BAD_JSON", "body must be a JSON object")
    return body


async def transaction(txn_id: str, request: Request) -> Response:
    bridge = _authorise(request)
    if isinstance(bridge, Response):
        return bridge
    body = await _json_object(request)
    if isinstance(body, Response):
        return body
    events = body.get("events", [])
    if not isinstance(events, list):
        return _error(400, "M_BAD_JSON", "events must be a list")
    # Ephemeral events (presence, typing, receipts) are not bridged to the city.
    # receive() commits every event before returning: only then is the 200 safe.
    stored = await bridge.inbox.receive(events)
    log.debug("appservice transaction %s: %d event(s)", txn_id, stored)
    return JSONResponse({})


async def query_user(user_id: str, request: Request) -> Response:
    bridge = _authorise(request)
    if isinstance(bridge, Response):
        return bridge
    names = bridge.names
    if user_id in (names.bot, names.secondme) or names.city_id_of_ghost(user_id) is not None:
        await bridge.ghosts.ensure(user_id)
        return JSONResponse({})
    return _error(404, "M_NOT_FOUND", "no such user in the city")


async def query_alias(alias: str, request: Request) -> Response:
    bridge = _authorise(request)
    if isinstance(bridge, Response):
        return bridge
    city_room_id = bridge.names.city_room_of_alias(alias)
    if city_room_id is None:
        return _error(404, "M_NOT_FOUND", "not a city room alias")
    # Creates the Matrix room (with this alias) if the city room exists: Synapse then
    # resolves the alias and the joining Element user just gets in.
    if await bridge.rooms.matrix_room_for(city_room_id) is None:
        return _error(404, "M_NOT_FOUND", "no such city room")
    return JSONResponse({})


async def ping(request: Request) -> Response:
    bridge = _authorise(request)
    if isinstance(bridge, Response):
        return bridge
    body = await _json_object(request)
    if isinstance(body, Response):
        return body
    return JSONResponse({})


for _prefix, _in_schema in ((PREFIX, True), ("", False)):
    router.add_api_route(
        f"{_prefix}/transactions/{{txn_id}}",
        transaction,
        methods=["PUT"],
        include_in_schema=_in_schema,
        summary="Synapse pushes a transaction of events",
    )
    router.add_api_route(
        f"{_prefix}/users/{{user_id}}",
        query_user,
        methods=["GET"],
        include_in_schema=_in_schema,
        summary="Synapse asks whether a user in our namespace exists",
    )
    router.add_api_route(
        f"{_prefix}/rooms/{{alias}}",
        query_alias,
        methods=["GET"],
        include_in_schema=_in_schema,
        summary="Synapse asks for a room alias in our namespace",
    )
router.add_api_route(f"{PREFIX}/ping", ping, methods=["POST"], summary="Synapse's ping")
