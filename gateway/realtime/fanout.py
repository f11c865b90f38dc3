"""Room fanout: this process's sockets per room, and Redis pub/sub between processes.

How a frame travels (see docs/realtime-rooms.md):

* The process where something happened encodes the frame once and calls
  `RoomFanout.publish(room_id, frame)`: the frame is put on the queue of every
  local socket of the room right away, and queued for one `PUBLISH` on the room's
  channel, prefixed with this process's id.
* Every process subscribed to that channel delivers the payload to its own
  sockets, except the publishing process, which skips payloads carrying its own
  id: it already delivered them locally. So each socket gets each frame once,
  local delivery does not depend on Redis, and receivers never re-encode.
* A process subscribes to a room's channel while it has local sockets in the room
  (first socket in: SUBSCRIBE, last one out: UNSUBSCRIBE); no pattern
  subscriptions, so a process never receives traffic for rooms it does not serve.

Sockets are written to by one writer task each, from a bounded queue: delivering a
frame to a room is a loop of non-blocking appends, a slow client never stalls the
room, and one that falls `queue_frames` behind is closed with 1013.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Generator
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.connection import AbstractConnection, ConnectionPool
from redis.exceptions import RedisError

from gateway.infra import metrics

log = logging.getLogger(__name__)

# An ASGI `websocket.send` message, built once per frame and shared by every socket.
Outgoing = dict[str, Any]
SendMessage = Callable[[Outgoing], Coroutine[Any, Any, None]]
CloseSocket = Callable[[int, str], Awaitable[None]]

CLOSE_TOO_SLOW = 1013
CLOSE_GOING_AWAY = 1001
# Separates the publisher's process id from the frame in a channel payload.
ORIGIN_SEPARATOR = "|"


def outgoing(frame: str) -> Outgoing:
    return {"type": "websocket.send", "text": frame}


class ClientSocket:
    """The outgoing side of one WebSocket: a bounded queue drained by one writer task.

    `offer` never blocks. The writer is the only coroutine that writes to the
    socket, so frames leave in the order they were offered, and a client that does
    not read blocks only its own writer.
    """

    __slots__ = (
        "_close",
        "_inflight",
        "_limit",
        "_queue",
        "_send",
        "_wakeup",
        "_writer",
        "close_code",
        "close_reason",
        "done",
        "rooms",
        "user_id",
    )

    def __init__(self, user_id: str, send: SendMessage, close: CloseSocket, limit: int) -> None:
        self.user_id = user_id
        # Rooms this socket follows (kept by the realtime hub).
        self.rooms: set[str] = set()
        self._send = send
        self._close = close
        self._limit = limit
        self._queue: deque[Outgoing] = deque()
        self._wakeup: asyncio.Future[None] | None = None
        self._writer: asyncio.Task[None] | None = None
        # A send started by `offer` that suspended; the writer awaits the rest of it.
        self._inflight: _Resume | None = None
        self.close_code: int | None = None
        self.close_reason = ""
        # Set when the writer has stopped: the close frame went out or the peer is gone.
        self.done = False

    def start(self) -> None:
        self._writer = asyncio.get_running_loop().create_task(self._write_loop())

    @property
    def closing(self) -> bool:
        return self.close_code is not None or self.done

    def offer(self, message: Outgoing) -> bool:
        """Queue a frame; False only when the queue is full (the caller drops us)."""
        if self.close_code is not None or self.done:
            return True  # going away: frames are discarded, nothing to report
        wakeup = self._wakeup
        if wakeup is not None and not self._queue and self._inflight is None:
            # The writer is parked with nothing pending: write right here. An ASGI send
            # to a writable socket completes without suspending, which saves a task
            # switch per socket per frame; if it does suspend, the writer finishes it.
            self._write_now(message)
            return True
        if len(self._queue) >= self._limit:
            return False
        self._queue.append(message)
        if wakeup is not None and not wakeup.done():
            wakeup.set_result(None)
        return True

    def _write_now(self, message: Outgoing) -> None:
        coro = self._send(message)
        try:
            pending = coro.send(None)
        except StopIteration:
            return
        except Exception as exc:  # the peer is gone; the reader will notice too
            log.debug("websocket write for %s failed: %r", self.user_id, exc)
            self.done = True
            self._queue.clear()
            wakeup = self._wakeup
            if wakeup is not None and not wakeup.done():
                wakeup.set_result(None)
            return
        self._inflight = _Resume(coro, pending)
        wakeup = self._wakeup
        if wakeup is not None and not wakeup.done():
            wakeup.set_result(None)

    def close(self, code: int, reason: str = "") -> None:
        """Ask the writer to close the socket after the frame it is writing, if any."""
        if self.close_code is not None or self.done:
            return
        self.close_code = code
        self.close_reason = reason
        self._queue.clear()
        wakeup = self._wakeup
        if wakeup is not None and not wakeup.done():
            wakeup.set_result(None)

    async def wait_done(self, timeout: float) -> bool:
        writer = self._writer
        if writer is None or writer.done():
            return True
        done, _ = await asyncio.wait({writer}, timeout=timeout)
        return bool(done)

    def stop(self) -> None:
        """The connection is over: stop the writer without writing anything more."""
        self.done = True
        self._queue.clear()
        if self._writer is not None and not self._writer.done():
            self._writer.cancel()

    async def _write_loop(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                if self._inflight is not None:
                    await self._inflight
                    self._inflight = None
                if self.done:
                    return
                while self._queue and self.close_code is None:
                    await self._send(self._queue.popleft())
                if self.close_code is not None:
                    await self._close(self.close_code, self.close_reason)
                    return
                self._wakeup = loop.create_future()
                await self._wakeup
                self._wakeup = None
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the peer went away mid-write; the reader notices too
            log.debug("websocket writer for %s stopped: %r", self.user_id, exc)
        finally:
            self.done = True
            self._queue.clear()


class _Resume:
    """Awaits the rest of a coroutine that was started by hand and suspended.

    The coroutine yielded `pending` (a future, or None for a bare yield); awaiting
    this object hands that to the awaiting task and then keeps driving the
    coroutine exactly as the task itself would have.
    """

    __slots__ = ("_coro", "_pending")

    def __init__(self, coro: Coroutine[Any, Any, None], pending: Any) -> None:
        self._coro = coro
        self._pending = pending

    def __await__(self) -> Generator[Any, None, None]:
        pending = self._pending
        while True:
            try:
                yield pending
            except BaseException as exc:
                try:
                    pending = self._coro.throw(exc)
                except StopIteration:
                    return
                continue
            try:
                pending = self._coro.send(None)
            except StopIteration:
                return


@dataclass(slots=True)
class _LocalRoom:
    # Insertion-ordered set of the room's sockets on this process.
    sockets: dict[ClientSocket, None] = field(default_factory=dict)
    # user_id -> number of this process's sockets of that user in the room
    users: dict[str, int] = field(default_factory=dict)
    # Resolved once the room's channel subscription is confirmed (or given up on).
    subscribed: asyncio.Future[bool] | None = None


class RoomChannels:
    """This process's one Redis pub/sub connection, subscribed to the rooms it serves.

    `subscribe` returns once Redis confirmed the subscription, so a caller knows that
    frames published from then on reach it. When the connection breaks (Redis
    restarted, connection killed, network), the reader reconnects with backoff and
    subscribes again to every wanted channel; frames published meanwhile are lost
    (clients re-read history over REST when they need it).
    """

    def __init__(
        self,
        redis_url: str,
        client_name: str,
        on_message: Callable[[str, str], None],
        *,
        ping_interval: float = 5.0,
    ) -> None:
        self._pool = ConnectionPool.from_url(
            redis_url, decode_responses=True, client_name=client_name
        )
        self._on_message = on_message
        self._ping_interval = ping_interval
        self.wanted: set[str] = set()
        self._conn: AbstractConnection | None = None
        self._write_lock = asyncio.Lock()
        # Per channel, SUBSCRIBE commands sent and confirmations received on the
        # current connection; a waiter is released when its command is confirmed.
        self._sent: dict[str, int] = {}
        self._acked: dict[str, int] = {}
        self._waiters: dict[str, list[tuple[int, asyncio.Future[bool]]]] = {}
        self._last_seen = time.monotonic()
        self._task: asyncio.Task[None] | None = None
        self._pinger: asyncio.Task[None] | None = None
        self.connected = asyncio.Event()
        # Incremented on every successful (re)connection; tests and metrics read it.
        self.generation = 0

    async def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())
        self._pinger = asyncio.get_running_loop().create_task(self._ping_loop())

    async def stop(self) -> None:
        for task in (self._pinger, self._task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._release_waiters()
        if self._conn is not None:
            await self._conn.disconnect(nowait=True)
        await self._pool.aclose()

    async def subscribe(self, channel: str, timeout: float) -> bool:
        """Want `channel`; True once Redis confirmed it (False: Redis unavailable)."""
        self.wanted.add(channel)
        conn = self._conn
        if conn is None or not self.connected.is_set():
            return False  # the reader subscribes to everything wanted on reconnect
        waiter: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        try:
            async with self._write_lock:
                if conn is not self._conn:
                    return False
                await conn.send_command("SUBSCRIBE", channel, check_health=False)
                target = self._sent[channel] = self._sent.get(channel, 0) + 1
                self._waiters.setdefault(channel, []).append((target, waiter))
        except (RedisError, OSError) as exc:
            log.warning("subscribe %s failed: %r", channel, exc)
            return False
        try:
            return await asyncio.wait_for(asyncio.shield(waiter), timeout)
        except TimeoutError:
            return False

    async def unsubscribe(self, channel: str) -> None:
        self.wanted.discard(channel)
        conn = self._conn
        if conn is None or not self.connected.is_set():
            return
        try:
            async with self._write_lock:
                if conn is self._conn:
                    await conn.send_command("UNSUBSCRIBE", channel, check_health=False)
        except (RedisError, OSError) as exc:
            log.debug("unsubscribe %s failed: %r", channel, exc)

    async def _run(self) -> None:
        backoff = 0.1
        while True:
            conn: AbstractConnection = self._pool.make_connection()  # type: ignore[no-untyped-call]
            try:
                await conn.connect()  # type: ignore[no-untyped-call]
                async with self._write_lock:
                    self._conn = conn
                    self._sent.clear()
                    self._acked.clear()
                    channels = sorted(self.wanted)
                    for i in range(0, len(channels), 1000):
                        chunk = channels[i : i + 1000]
                        await conn.send_command("SUBSCRIBE", *chunk, check_health=False)
                        for channel in chunk:
                            self._sent[channel] = 1
                self._last_seen = time.monotonic()
                self.generation += 1
                self.connected.set()
                if self.generation > 1:
                    log.info("fanout subscription restored (%d rooms)", len(channels))
                backoff = 0.1
                await self._read(conn)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # any failure: drop the connection and start over
                if self.connected.is_set() or self.generation == 0:
                    log.warning("fanout subscription lost: %r; reconnecting", exc)
            self.connected.clear()
            self._conn = None
            self._release_waiters()
            with contextlib.suppress(Exception):
                await conn.disconnect(nowait=True)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 2.0)

    async def _read(self, conn: AbstractConnection) -> None:
        on_message = self._on_message
        while True:
            # push_request: with RESP3, pub/sub messages are "push" replies.
            reply = await conn.read_response(timeout=float("inf"), push_request=True)
            self._last_seen = time.monotonic()
            if not isinstance(reply, list) or not reply:
                continue
            kind = reply[0]
            if kind == "message":
                try:
                    on_message(reply[1], reply[2])
                except Exception:
                    log.exception("delivering a fanout frame failed")
            elif kind == "subscribe":
                self._confirmed(reply[1])

    def _confirmed(self, channel: str) -> None:
        acked = self._acked[channel] = self._acked.get(channel, 0) + 1
        waiters = self._waiters.get(channel)
        if not waiters:
            return
        keep = []
        for target, waiter in waiters:
            if target <= acked:
                if not waiter.done():
                    waiter.set_result(True)
            else:
                keep.append((target, waiter))
        if keep:
            self._waiters[channel] = keep
        else:
            del self._waiters[channel]

    def _release_waiters(self) -> None:
        for waiters in self._waiters.values():
            for _, waiter in waiters:
                if not waiter.done():
                    waiter.set_result(False)
        self._waiters.clear()

    async def _ping_loop(self) -> None:
        """PING the subscribed connection; one that stays silent is torn down."""
        while True:
            await asyncio.sleep(self._ping_interval)
            conn = self._conn
            if conn is None or not self.connected.is_set():
                continue
            if time.monotonic() - self._last_seen > 3 * self._ping_interval:
                log.warning("fanout subscription silent; reconnecting")
                with contextlib.suppress(Exception):
                    await conn.disconnect(nowait=True)
                continue
            try:
                async with self._write_lock:
                    if conn is self._conn:
                        await conn.send_command("PING", check_health=False)
            except (RedisError, OSError):
                pass  # the reader sees the broken connection and reconnects


class Publisher:
    """Sends channel payloads to Redis from one task, in order, pipelined.

    Callers never wait for Redis: a post that committed must not fail or stall
    because fanout is unavailable. While Redis is down the queue holds up to
    `limit` payloads (oldest dropped first) and is sent when Redis is back.
    """

    def __init__(self, redis: aioredis.Redis, limit: int = 10_000) -> None:
        self._redis = redis
        self._limit = limit
        self._queue: deque[tuple[str, str]] = deque()
        self._wakeup = asyncio.Event()
        self._idle = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.dropped = 0
        self.failures = 0

    async def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    def publish(self, channel: str, payload: str) -> None:
        if len(self._queue) >= self._limit:
            self._queue.popleft()
            self.dropped += 1
            if self.dropped % 1000 == 1:
                log.warning("fanout publish queue full; dropped %d frames so far", self.dropped)
        self._queue.append((channel, payload))
        self._idle.clear()
        self._wakeup.set()

    async def stop(self, flush_timeout: float = 2.0) -> None:
        if self._task is None:
            return
        if self.failures == 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._idle.wait(), flush_timeout)
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    async def _run(self) -> None:
        backoff = 0.1
        batch: list[tuple[str, str]] = []
        while True:
            if not batch:
                if not self._queue:
                    self._wakeup.clear()
                    self._idle.set()
                    await self._wakeup.wait()
                while self._queue and len(batch) < 500:
                    batch.append(self._queue.popleft())
            try:
                async with self._redis.pipeline(transaction=False) as pipe:
                    for channel, payload in batch:
                        pipe.publish(channel, payload)
                    await pipe.execute()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.failures += 1
                if self.failures == 1 or self.failures % 100 == 0:
                    log.warning("fanout publish failed (%d times): %r", self.failures, exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
                continue
            if self.failures:
                log.info("fanout publishing restored after %d failures", self.failures)
                self.failures = 0
            backoff = 0.1
            batch = []


class RoomFanout:
    """Local sockets per room plus the Redis channels that join the processes."""

    def __init__(
        self,
        *,
        redis: aioredis.Redis,
        redis_url: str,
        prefix: str,
        process_id: str,
        on_overflow: Callable[[ClientSocket], None],
        subscribe_timeout: float = 2.0,
    ) -> None:
        self.process_id = process_id
        self._channel_prefix = f"{prefix}city:room:"
        self._origin = process_id + ORIGIN_SEPARATOR
        self._rooms: dict[str, _LocalRoom] = {}
        self._pending: set[asyncio.Future[None]] = set()
        self._on_overflow = on_overflow
        self._subscribe_timeout = subscribe_timeout
        self.channels = RoomChannels(
            redis_url, f"{prefix}city-fanout-{process_id}", self._on_channel_message
        )
        self.publisher = Publisher(redis)

    async def start(self) -> None:
        await self.channels.start()
        await self.publisher.start()

    async def stop(self) -> None:
        await self.publisher.stop()
        await self.channels.stop()

    def channel(self, room_id: str) -> str:
        return self._channel_prefix + room_id

    # --- local membership -------------------------------------------------------

    def add(self, sock: ClientSocket, room_id: str) -> tuple[int, asyncio.Future[bool]]:
        """Put a socket in a room; (its user's local socket count, subscription ready)."""
        room = self._rooms.get(room_id)
        if room is None:
            room = self._rooms[room_id] = _LocalRoom()
            room.subscribed = asyncio.ensure_future(
                self.channels.subscribe(self.channel(room_id), self._subscribe_timeout)
            )
        room.sockets[sock] = None
        count = room.users[sock.user_id] = room.users.get(sock.user_id, 0) + 1
        assert room.subscribed is not None
        return count, room.subscribed

    def remove(self, sock: ClientSocket, room_id: str) -> int:
        """Take a socket out of a room; the user's remaining local sockets there."""
        room = self._rooms.get(room_id)
        if room is None or room.sockets.pop(sock, False) is False:
            return -1
        left = room.users[sock.user_id] - 1
        if left:
            room.users[sock.user_id] = left
        else:
            del room.users[sock.user_id]
        if not room.sockets:
            del self._rooms[room_id]
            self.channels.wanted.discard(self.channel(room_id))
            task = asyncio.ensure_future(self.channels.unsubscribe(self.channel(room_id)))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)
        return left

    def local_counts(self, room_ids: list[str]) -> dict[str, int]:
        return {rid: len(r.users) if (r := self._rooms.get(rid)) else 0 for rid in room_ids}

    def local_members(self) -> list[tuple[str, str]]:
        return [(rid, uid) for rid, room in self._rooms.items() for uid in room.users]

    def sockets(self) -> list[ClientSocket]:
        seen: dict[ClientSocket, None] = {}
        for room in self._rooms.values():
            seen.update(room.sockets)
        return list(seen)

    # --- delivery -----------------------------------------------------------------

    def publish(self, room_id: str, frame: str) -> None:
        """Deliver to this process's sockets now; to the other processes via Redis."""
        self.deliver(room_id, frame)
        self.publisher.publish(self.channel(room_id), self._origin + frame)

    def deliver(self, room_id: str, frame: str) -> None:
        room = self._rooms.get(room_id)
        if room is None:
            return
        message = outgoing(frame)
        slow: list[ClientSocket] | None = None
        for sock in room.sockets:
            if not sock.offer(message):
                if slow is None:
                    slow = []
                slow.append(sock)
        metrics.FANOUT_FRAMES.inc(len(room.sockets))
        if slow:
            metrics.FANOUT_DROPPED_CLIENTS.inc(len(slow))
            for sock in slow:
                self._on_overflow(sock)

    def _on_channel_message(self, channel: str, payload: str) -> None:
        origin, sep, frame = payload.partition(ORIGIN_SEPARATOR)
        if not sep or origin == self.process_id:
            return  # our own frame (already delivered locally) or not ours to read
        self.deliver(channel[len(self._channel_prefix) :], frame)
