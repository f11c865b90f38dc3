"""/ws/city/presence: heartbeats in, `presence.update` out (SPEC §7–8).

Each socket is a device (a tab) unless its frames name one with `device_id`; when
the socket closes, its devices go offline (the user follows after the grace, unless
another tab or a reconnect keeps them). Every presence socket on every process gets
each `presence.update` once: the announcing process publishes it on Redis and each
process delivers it to its own sockets (gateway.core.presence.service).

Like the room sockets, the connection is accepted before it is refused, so that a
browser can read the close code (4401 bad token).
"""

from __future__ import annotations

import logging
import secrets
from typing import Annotated, Literal

from fastapi import APIRouter, WebSocket
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, TypeAdapter

from gateway.core.auth import decode_user_token
from gateway.core.errors import AppError
from gateway.core.presence.metrics import PRESENCE_HEARTBEATS
from gateway.core.presence.service import PresenceService
from gateway.realtime import wsproto
from gateway.realtime.deps import ServicesDep
from gateway.realtime.hub import admit_socket
from gateway.realtime.sockets import ClientSocket, outgoing
from gateway.realtime.wsproto import FrameError, PingFrame

log = logging.getLogger(__name__)

router = APIRouter(tags=["websockets"])

# A socket is normally one tab; a few device ids per socket cover multiplexing
# clients. The user's devices over HTTP and sockets together are capped in Redis
# (LIMIT_PRESENCE_DEVICES); this bound stays as well, because it also bounds what a
# socket remembers to take offline when it closes, whatever that setting is.
MAX_DEVICES_PER_SOCKET = 16
_PONG = outgoing(wsproto.PONG_FRAME)
_HEARTBEATS = PRESENCE_HEARTBEATS.labels("ws")


class HeartbeatFrame(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True, frozen=True)

    event: Literal["presence.heartbeat"]
    # Optional; if present it must be the token's user (SPEC §4).
    user_id: StrictStr | None = None
    status: Literal["online", "away", "unavailable", "offline"] | None = None
    last_active_ago: Annotated[StrictInt, Field(ge=0)] | None = None  # ms; bool is refused
    device_id: Annotated[StrictStr, Field(min_length=1, max_length=128)] | None = None


PresenceClientFrame = Annotated[HeartbeatFrame | PingFrame, Field(discriminator="event")]
_FRAMES: TypeAdapter[HeartbeatFrame | PingFrame] = TypeAdapter(PresenceClientFrame)
_EVENTS = frozenset({"presence.heartbeat", "ping"})
_MAX_LAST_ACTIVE_AGO = 10**12


def parse_presence_frame(raw: str | bytes) -> HeartbeatFrame | PingFrame:
    return wsproto.validate(_FRAMES, wsproto.decode_object(raw), _EVENTS)


class _Device:
    """What one presence socket has told the engine about."""

    def __init__(self, user_id: str) -> None:
        self.user_id = user_id
        self.default_device = f"ws-{secrets.token_urlsafe(9)}"
        self.live: set[str] = set()


@router.websocket("/ws/city/presence")
async def presence_socket(websocket: WebSocket, rt: ServicesDep, token: str | None = None) -> None:
    service = rt.presence
    await websocket.accept()
    try:
        principal = decode_user_token(rt.settings.jwt_secret, token or "")
        user_id = principal.require_user()
    except AppError as exc:
        await websocket.close(wsproto.CLOSE_BAD_TOKEN, exc.message)
        return

    async def close(code: int, reason: str) -> None:
        await websocket.close(code, reason)

    # Counted with the user's room sockets (close 4429 over the cap); 4401 at token expiry.
    slot = await admit_socket(rt.realtime, user_id, principal.expires_at, close)
    if slot is None:
        return
    sock = ClientSocket(user_id, websocket.send, close, rt.settings.ws_send_queue_frames)
    sock.start()
    slot.watch(sock)
    rt.realtime.presence_sockets.add(sock)
    devices = _Device(user_id)
    try:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                break
            if sock.closing:
                continue  # dropped as too slow: ignore what it still sends
            raw = message.get("text")
            if raw is None:
                raw = message.get("bytes") or b""
            await _handle(service, sock, devices, raw)
    finally:
        slot.release()
        rt.realtime.presence_sockets.remove(sock)
        sock.stop()
        for device_id in devices.live:
            try:
                await service.device_offline(user_id, device_id)
            except AppError:
                # Redis is down: the device expires by its TTL once Redis is back.
                log.info("presence socket of %s closed while presence was unavailable", user_id)


async def _handle(
    service: PresenceService, sock: ClientSocket, devices: _Device, raw: str | bytes
) -> None:
    try:
        frame = parse_presence_frame(raw)
        if frame.user_id is not None and frame.user_id != sock.user_id:
            raise FrameError("forbidden", "user_id is not the token's user")
        if isinstance(frame, PingFrame):
            sock.offer(_PONG)
            return
        _HEARTBEATS.inc()
        device_id = frame.device_id or devices.default_device
        if frame.status == "offline":
            devices.live.discard(device_id)
            await service.device_offline(sock.user_id, device_id)
            return
        if device_id not in devices.live and len(devices.live) >= MAX_DEVICES_PER_SOCKET:
            raise FrameError(
                "too_many_devices", f"a socket carries at most {MAX_DEVICES_PER_SOCKET} devices"
            )
        ago = frame.last_active_ago
        new_device = device_id not in devices.live
        # Remembered before the call, so a socket closing meanwhile still takes it offline.
        devices.live.add(device_id)
        try:
            await service.heartbeat(
                sock.user_id,
                device_id,
                frame.status,
                None if ago is None else min(ago, _MAX_LAST_ACTIVE_AGO),
            )
        except AppError as exc:
            if new_device and exc.status == 429:
                devices.live.discard(device_id)  # refused: this socket added nothing
            raise
    except FrameError as exc:
        sock.offer(outgoing(wsproto.error_frame(exc.code, exc.message)))
    except AppError as exc:
        sock.offer(outgoing(wsproto.error_frame(exc.code, exc.message)))
    except Exception:
        # Nothing a client sends may drop the connection without a reason (SPEC §5).
        log.exception("presence frame from %s failed", sock.user_id)
        sock.offer(outgoing(wsproto.error_frame("unavailable", "the frame could not be handled")))
