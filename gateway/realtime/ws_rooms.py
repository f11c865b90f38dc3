"""/ws/city/rooms/{room_id}: a room's live frames (SPEC §7).

The socket is accepted first so that refusals carry a close code a browser can
read (4401 bad token, 4404 unknown room, 4429 too many sockets of the user);
before `accept` ASGI servers can only answer 403. The socket closes with 4401 when
its token expires. Client frames are handled one at a time, in order; a bad frame
gets an `error` frame and the connection stays.
"""

from __future__ import annotations

import logging
from typing import Any

import asyncpg
from fastapi import APIRouter, WebSocket

from gateway.core.auth import decode_user_token
from gateway.core.errors import AppError, unstorable_input
from gateway.realtime import wsproto
from gateway.realtime.deps import ServicesDep
from gateway.realtime.hub import Realtime, admit_socket
from gateway.realtime.sockets import ClientSocket, outgoing
from gateway.realtime.wsproto import (
    FrameError,
    JoinFrame,
    LeaveFrame,
    PingFrame,
    SendFrame,
    TypingFrame,
)

log = logging.getLogger(__name__)

router = APIRouter(tags=["websockets"])

_PONG = outgoing(wsproto.PONG_FRAME)


@router.websocket("/ws/city/rooms/{room_id}")
async def room_socket(
    websocket: WebSocket, room_id: str, rt: ServicesDep, token: str | None = None
) -> None:
    hub = rt.realtime
    await websocket.accept()
    if hub.closing:
        await websocket.close(wsproto.CLOSE_UNAVAILABLE, "realtime is not available")
        return
    try:
        principal = decode_user_token(rt.settings.jwt_secret, token or "")
        user_id = principal.require_user()
    except AppError as exc:
        await websocket.close(wsproto.CLOSE_BAD_TOKEN, exc.message)
        return
    if not await hub.room_exists(room_id):
        await websocket.close(wsproto.CLOSE_UNKNOWN_ROOM, "room not found")
        return

    async def close(code: int, reason: str) -> None:
        await websocket.close(code, reason)

    slot = await admit_socket(hub, user_id, principal.expires_at, close)
    if slot is None:
        return  # closed with 4429
    if principal.name is not None:
        await hub.members.remember_name(user_id, principal.name)
    sock = hub.open_socket(user_id, websocket.send, close)
    slot.watch(sock)
    try:
        await hub.join(sock, room_id)
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                break
            if sock.closing:
                continue  # dropped (too slow) or shutting down: ignore what it sends
            raw = message.get("text")
            if raw is None:
                raw = message.get("bytes") or b""
            await _handle(hub, sock, raw)
    finally:
        slot.release()
        await hub.disconnect(sock)


async def _handle(hub: Realtime, sock: ClientSocket, raw: str | bytes) -> None:
    try:
        frame = wsproto.parse_room_frame(raw)
        if frame.user_id is not None and frame.user_id != sock.user_id:
            raise FrameError("forbidden", "user_id is not the token's user")
        if isinstance(frame, PingFrame):
            sock.offer(_PONG)
        elif isinstance(frame, SendFrame):
            await hub.post(sock, frame)
        elif isinstance(frame, JoinFrame):
            await hub.join(sock, frame.room_id)
        elif isinstance(frame, LeaveFrame):
            await hub.leave(sock, frame.room_id)
        elif isinstance(frame, TypingFrame):
            hub.set_typing(sock, frame)
    except FrameError as exc:
        _error(sock, exc.code, exc.message)
    except AppError as exc:
        _error(sock, exc.code, exc.message)
    except asyncpg.DataError:
        # Values PostgreSQL cannot hold (NUL, bad text) are the client's input, as
        # REST's 422 `invalid_input` says; not a failure worth a traceback.
        error = unstorable_input()
        _error(sock, error.code, error.message)
    except Exception:
        # A database or Redis failure must not drop the connection (SPEC §5).
        log.exception("websocket frame from %s failed", sock.user_id)
        _error(sock, "unavailable", "the service could not handle this frame; try again")


def _error(sock: ClientSocket, code: str, message: str) -> None:
    frame: dict[str, Any] = outgoing(wsproto.error_frame(code, message))
    sock.offer(frame)
