"""The realtime hub: room sockets, their join/leave rules, and the starter that wires it.

`start_realtime` (first of the parts gateway/app/runtime.py starts) builds the
fanout and the cross-process membership store (`hub.members`, which the room
service counts `members_online` with), subscribes to `hooks.message_posted`,
`message_edited` and `message_deleted` (so every stored message, edit and delete,
whichever side made it, reaches the room's sockets), and returns
the hub: the WebSocket routes use it, and presence sends `room.presence` through
it (it is the core's RoomPresence port).

Room events (docs/realtime-rooms.md):

* `room.join {room_id, user_id}` goes to the room when a user who was in it on no
  connection of any process joins it; the joining socket always gets it (as the
  acknowledgement that it now receives the room's frames).
* `room.leave` likewise when the user's last connection leaves (or their process
  dies and its lease is reaped); an explicit `room.leave` frame is acknowledged to
  the leaving socket.

Every socket, room or presence, is admitted with `admit_socket`: it counts against
the user's `LIMIT_WEBSOCKETS_PER_USER` on all processes (close 4429 above it) and is
closed with 4401 when its token expires.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import signal
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine
from contextlib import AsyncExitStack
from types import FrameType
from typing import Any

import asyncpg
import redis.asyncio as aioredis

from gateway.core.events import CityHooks
from gateway.core.messages import Author, MessageService
from gateway.core.metrics import RATE_LIMITED
from gateway.core.models import Message, ReactionChange
from gateway.core.storage import rooms as rooms_sql
from gateway.infra.settings import Settings
from gateway.infra.tasks import TaskGroup
from gateway.realtime import wsproto
from gateway.realtime.fanout import RoomFanout
from gateway.realtime.presence_sockets import PresenceSockets
from gateway.realtime.room_members import RoomMembers
from gateway.realtime.sockets import CLOSE_GOING_AWAY, CLOSE_TOO_SLOW, ClientSocket, outgoing
from gateway.realtime.typing import TypingTracker
from gateway.realtime.wsproto import FrameError

log = logging.getLogger(__name__)

MAX_ROOMS_PER_SOCKET = 50


class Realtime:
    def __init__(
        self,
        *,
        room_exists: Callable[[str], Awaitable[bool]],
        messages: MessageService,
        fanout: RoomFanout,
        members: RoomMembers,
        queue_frames: int,
        sockets_per_user: int,
        typing: TypingTracker,
    ) -> None:
        self._room_exists = room_exists
        self.typing = typing
        self._messages = messages
        self.fanout = fanout
        self.members = members
        self._queue_frames = queue_frames
        self.sockets_per_user = sockets_per_user
        # Rooms are never deleted, so a room seen once exists for good.
        self._known_rooms: set[str] = set()
        self._drops = TaskGroup("realtime.drops", log)
        # Presence sockets of this process (the presence service delivers to them).
        self.presence_sockets = PresenceSockets()
        self.closing = False

    # --- sockets --------------------------------------------------------------------

    def open_socket(
        self,
        user_id: str,
        send: Callable[[dict[str, Any]], Coroutine[Any, Any, None]],
        close: Callable[[int, str], Awaitable[None]],
    ) -> ClientSocket:
        sock = ClientSocket(user_id, send, close, self._queue_frames)
        sock.start()
        return sock

    async def room_exists(self, room_id: str) -> bool:
        if room_id in self._known_rooms:
            return True
        if len(room_id) > 200 or not await self._room_exists(room_id):
            return False
        self._known_rooms.add(room_id)
        return True

    async def join(self, sock: ClientSocket, room_id: str) -> None:
        """Follow a room; the socket gets `room.join` for itself once frames flow."""
        user_id = sock.user_id
        if room_id in sock.rooms:
            sock.offer(outgoing(wsproto.room_join_frame(room_id, user_id)))
            return
        if len(sock.rooms) >= MAX_ROOMS_PER_SOCKET:
            raise FrameError("too_many_rooms", f"a socket follows at most {MAX_ROOMS_PER_SOCKET}")
        if not await self.room_exists(room_id):
            raise FrameError("room_not_found", f"room {room_id[:200]!r} does not exist")
        if sock.closing:
            return
        sock.rooms.add(room_id)
        local, subscribed = self.fanout.add(sock, room_id)
        recorded = self.members.join(room_id, user_id) if local == 1 else None
        await subscribed
        is_new = await recorded if recorded is not None else False
        frame = wsproto.room_join_frame(room_id, user_id)
        if room_id not in sock.rooms:
            return  # dropped or left meanwhile
        if local == 1 and is_new is not False:  # None: Redis could not tell; announce
            self.fanout.publish(room_id, frame)
        else:
            sock.offer(outgoing(frame))

    async def leave(self, sock: ClientSocket, room_id: str) -> None:
        if room_id not in sock.rooms:
            raise FrameError("not_in_room", f"this socket is not in room {room_id[:200]!r}")
        sock.offer(outgoing(wsproto.room_leave_frame(room_id, sock.user_id)))
        await self._leave(sock, room_id)

    async def disconnect(self, sock: ClientSocket) -> None:
        """The socket is gone: leave every room (announcing users who left) and stop."""
        sock.stop()
        for room_id in list(sock.rooms):
            await self._leave(sock, room_id)

    async def _leave(self, sock: ClientSocket, room_id: str) -> None:
        sock.rooms.discard(room_id)
        self.typing.stop_socket(sock, room_id)
        left = self.fanout.remove(sock, room_id)
        if left != 0:
            return  # other local sockets of this user remain (or it was not there)
        gone = await self.members.leave(room_id, sock.user_id)
        if gone is not False:
            self.fanout.publish(room_id, wsproto.room_leave_frame(room_id, sock.user_id))

    def drop_slow(self, sock: ClientSocket) -> None:
        """A socket fell `queue_frames` behind: out of every room now, closed with 1013."""
        if sock.closing:
            return
        log.info("dropping slow websocket of %s", sock.user_id)
        sock.close(CLOSE_TOO_SLOW, "client too slow")
        self._drops.spawn(self._leave_all(sock))

    async def _leave_all(self, sock: ClientSocket) -> None:
        for room_id in list(sock.rooms):
            await self._leave(sock, room_id)

    async def post(self, sock: ClientSocket, frame: wsproto.SendFrame) -> None:
        """`room.message.send`: the same service as REST; the hook fans the message out."""
        if frame.room_id not in sock.rooms:
            raise FrameError("not_in_room", f"join room {frame.room_id[:200]!r} before posting")
        result = await self._messages.post(
            frame.room_id,
            Author(user_id=sock.user_id),
            frame.body,
            client_msg_id=frame.client_msg_id,
            reply_to=frame.reply_to,
        )
        if not result.created:
            # A retry of a stored message: no one else hears it again, but the sender
            # gets the message it is waiting for.
            sock.offer(outgoing(wsproto.room_message_frame(result.message)))

    def set_typing(self, sock: ClientSocket, frame: wsproto.TypingFrame) -> None:
        """`room.typing` from a client: coalesced, then to the room and the bridge."""
        if frame.room_id not in sock.rooms:
            raise FrameError("not_in_room", f"join room {frame.room_id[:200]!r} before typing")
        self.typing.set(sock, frame.room_id, frame.typing)

    # --- frames from the rest of the service ----------------------------------------

    async def on_message_posted(self, message: Message) -> None:
        """After-commit hook: every stored message goes to its room's sockets."""
        self.fanout.publish(message.room_id, wsproto.room_message_frame(message))
        if message.author_user_id is not None:
            self.typing.stop_user(message.room_id, message.author_user_id)

    async def on_message_edited(self, message: Message) -> None:
        """After-commit hook: an edit (from any side) reaches the room's sockets."""
        self.fanout.publish(message.room_id, wsproto.room_message_edited_frame(message))

    async def on_message_deleted(self, message: Message) -> None:
        """After-commit hook: a delete (from any side) reaches the room's sockets."""
        self.fanout.publish(
            message.room_id, wsproto.room_message_deleted_frame(message.room_id, message.id)
        )

    async def on_reaction(self, change: ReactionChange) -> None:
        """After-commit hook: a reaction added or removed (from any side)."""
        self.fanout.publish(change.room_id, wsproto.room_reaction_frame(change))

    def publish_room_presence(self, room_id: str, user_id: str, status: str) -> None:
        """Send `room.presence {room_id, user_id, status}` to a room's sockets, all processes."""
        self.fanout.publish(room_id, wsproto.room_presence_frame(room_id, user_id, status))

    async def rooms_of_user(self, user_id: str) -> list[str]:
        """Rooms where the user has a socket on any process (for presence fanout)."""
        return await self.members.rooms_of_user(user_id)

    # MatrixRoomActivity (gateway.core.ports): what Matrix users do, from the bridge.
    def matrix_typing(self, room_id: str, matrix_user_id: str, typing: bool) -> None:
        frame = wsproto.room_typing_frame(room_id, typing, matrix_user_id=matrix_user_id)
        self.fanout.publish(room_id, frame)

    def matrix_presence(self, room_id: str, matrix_user_id: str, status: str) -> None:
        self.fanout.publish(room_id, wsproto.matrix_presence_frame(room_id, matrix_user_id, status))

    # ConnectedUsers (gateway.core.ports): who is in a room now, for its members list.
    async def users_in(self, room_id: str) -> list[str]:
        return await self.members.users_in(room_id)

    async def display_names(self, user_ids: list[str]) -> dict[str, str]:
        return await self.members.display_names(user_ids)

    def announce_gone(self, room_id: str, user_id: str) -> None:
        """A dead process's member was reaped: tell the room they left."""
        self.fanout.publish(room_id, wsproto.room_leave_frame(room_id, user_id))

    # --- shutdown -----------------------------------------------------------------------

    async def close_all(self, code: int = CLOSE_GOING_AWAY, timeout: float = 3.0) -> None:
        """Close every socket with `code`, waiting up to `timeout` for the close frames."""
        self.closing = True
        sockets = self.fanout.sockets()
        for sock in sockets:
            sock.close(code, "server shutting down")
        if sockets:
            await asyncio.wait_for(
                asyncio.gather(*(s.wait_done(timeout) for s in sockets)), timeout + 1
            )


CloseFn = Callable[[int, str], Awaitable[None]]


class SocketSlot:
    """One admitted socket: counted in the user's cap, closed when its token expires."""

    def __init__(
        self, members: RoomMembers | None, socket_id: str | None, expires_at: float | None
    ) -> None:
        self._members = members
        self._socket_id = socket_id
        self._expires_at = expires_at
        self._timer: asyncio.TimerHandle | None = None

    def watch(self, sock: ClientSocket) -> None:
        """Close `sock` with 4401 at the token's `exp` (SPEC §12).

        Closing through the socket's writer marks it closing at once, so frames that
        still arrive are ignored; the route's clean-up then runs as for any close.
        """
        if self._expires_at is None:
            return
        delay = max(0.0, self._expires_at - time.time())
        self._timer = asyncio.get_running_loop().call_later(
            delay, sock.close, wsproto.CLOSE_BAD_TOKEN, "token expired"
        )

    def release(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._members is not None and self._socket_id is not None:
            self._members.close_socket(self._socket_id)
            self._socket_id = None


async def admit_socket(
    hub: Realtime, user_id: str, expires_at: float | None, close: CloseFn
) -> SocketSlot | None:
    """Admit an accepted socket, or close it with 4429 when the user has too many.

    Room and presence sockets count together, across processes (Redis; see
    gateway.realtime.room_members). The caller must `release()` the slot when the socket ends.
    """
    members = hub.members
    limit = hub.sockets_per_user
    socket_id = await members.open_socket(user_id, limit)
    if socket_id is None:
        RATE_LIMITED.labels("websockets").inc()
        await close(wsproto.CLOSE_TOO_MANY_SOCKETS, f"at most {limit} open sockets per user")
        return None
    return SocketSlot(members, socket_id, expires_at)


async def start_realtime(
    settings: Settings,
    *,
    db: asyncpg.Pool,
    redis: aioredis.Redis,
    messages: MessageService,
    hooks: CityHooks,
    stack: AsyncExitStack,
) -> Realtime:
    """Starter: fanout, room membership and the hub; first of the parts to start."""
    process_id = secrets.token_hex(8)

    async def room_exists(room_id: str) -> bool:
        try:
            return await rooms_sql.get_room(db, room_id) is not None
        except asyncpg.DataError:  # an id PostgreSQL cannot hold
            return False

    hub: Realtime  # the callbacks below run only once the hub exists
    fanout = RoomFanout(
        redis=redis,
        redis_url=settings.redis_url,
        prefix=settings.city_redis_prefix,
        process_id=process_id,
        on_overflow=lambda sock: hub.drop_slow(sock),
    )
    members = RoomMembers(
        redis,
        prefix=settings.city_redis_prefix,
        process_id=process_id,
        lease_seconds=settings.ws_member_lease_seconds,
        local_members=fanout.local_members,
        local_counts=fanout.local_counts,
        on_gone=lambda room_id, user_id: hub.announce_gone(room_id, user_id),
    )
    hub = Realtime(
        room_exists=room_exists,
        messages=messages,
        fanout=fanout,
        members=members,
        queue_frames=settings.ws_send_queue_frames,
        sockets_per_user=settings.limit_websockets_per_user,
        typing=TypingTracker(fanout, hooks),
    )
    await fanout.start()
    stack.push_async_callback(fanout.stop)
    await members.start()
    stack.push_async_callback(members.stop)
    stack.push_async_callback(hub.typing.aclose)
    hooks.message_posted.append(hub.on_message_posted)
    hooks.message_edited.append(hub.on_message_edited)
    hooks.message_deleted.append(hub.on_message_deleted)
    hooks.reaction_changed.append(hub.on_reaction)
    restore = _close_sockets_before_exit(hub)
    stack.callback(restore)
    # Runs first on shutdown: sockets still open get 1001 before memberships go.
    stack.push_async_callback(_close_remaining, hub)
    return hub


async def _close_remaining(hub: Realtime) -> None:
    try:
        await hub.close_all(CLOSE_GOING_AWAY, timeout=2.0)
    except Exception as exc:
        log.warning("closing websockets on shutdown: %r", exc)


def _close_sockets_before_exit(hub: Realtime) -> Callable[[], None]:
    """Close sockets with 1001 when SIGTERM/SIGINT arrives, before uvicorn's shutdown.

    uvicorn's own shutdown closes open WebSockets with 1012 before the app's
    lifespan ends, so closing them in the lifespan is too late. We wrap the signal
    handlers uvicorn installed: on the first signal the sockets get 1001, then
    uvicorn's handler runs as before. Returns the function that puts them back.
    """
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    loop = asyncio.get_running_loop()
    installed: dict[int, Any] = {}
    tasks = TaskGroup("realtime.signals", log)

    def wrap(signum: int, previous: Callable[[int, FrameType | None], Any]) -> Any:
        def handler(sig: int, frame: FrameType | None) -> None:
            if hub.closing:
                previous(sig, frame)
                return
            hub.closing = True

            async def close_then_exit() -> None:
                with contextlib.suppress(Exception):
                    await hub.close_all(CLOSE_GOING_AWAY, timeout=3.0)
                previous(sig, None)

            def begin() -> None:
                tasks.spawn(close_then_exit())

            loop.call_soon_threadsafe(begin)

        return handler

    for signum in (signal.SIGINT, signal.SIGTERM):
        previous = signal.getsignal(signum)
        owner = getattr(previous, "__self__", None)
        if not callable(previous) or type(owner).__module__ != "uvicorn.server":
            continue  # uvicorn is not managing signals here (tests, other servers)
        handler = wrap(signum, previous)
        signal.signal(signum, handler)
        installed[signum] = (handler, previous)

    def restore() -> None:
        for signum, (handler, previous) in installed.items():
            if signal.getsignal(signum) is handler:
                signal.signal(signum, previous)

    return restore
