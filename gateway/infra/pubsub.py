"""The process's Redis pub/sub subscriber: one connection, reconnected forever.

Like python-socketio's `AsyncPubSubManager`, the cross-process listening loop is
written once and every user of it only registers what it listens to: room
fanout subscribes a channel per room it serves, presence one channel for
`presence.update`. The subscriber

* holds one dedicated connection (a subscribed connection can do nothing else)
  and one reader task that dispatches each message to its channel's handler;
* tracks the wanted channels: `subscribe` returns once Redis confirmed the
  SUBSCRIBE on the live connection, so the caller knows that what is published
  from then on reaches it; `unsubscribe` never waits;
* PINGs when idle and tears down a connection that stays silent (a half-open TCP
  connection otherwise looks alive forever);
* when the connection breaks (Redis restarted, CLIENT KILL, network), reconnects
  with back-off and subscribes again to every wanted channel in one go; once Redis
  confirmed them all it calls the `on_resubscribed` callbacks: messages published while it was away are lost,
  and a user that cares (presence) re-reads the state it may have missed.

Handlers run on the reader task and must not block (they queue work and return);
one that raises is logged and the loop goes on. No pattern subscriptions: a
process never receives traffic it did not ask for.

On a Redis Cluster the same class, with `sharded=True`, holds the SSUBSCRIBE
connection to one master; gateway.infra.pubsub_cluster routes the channels between
them (`make_subscriber` picks the one the settings ask for).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Protocol

from redis.asyncio.connection import AbstractConnection, ConnectionPool
from redis.exceptions import MovedError, RedisError

from gateway.infra.backoff import Backoff
from gateway.infra.tasks import TaskGroup

log = logging.getLogger(__name__)

# (channel, payload)
Handler = Callable[[str, str], None]
# Called with the generation (2 = the first reconnection) after every re-subscription.
Resubscribed = Callable[[int], None]

# Channels per SUBSCRIBE command when re-subscribing everything.
_SUBSCRIBE_CHUNK = 1000


class Subscriber(Protocol):
    """What room fanout and presence use of the process's pub/sub connection(s)."""

    async def start(self) -> None: ...
    async def stop(self) -> None: ...
    def on_resubscribed(self, callback: Resubscribed) -> None: ...
    @property
    def channels(self) -> set[str]: ...
    def subscribe(self, channel: str, handler: Handler, timeout: float) -> asyncio.Task[bool]: ...
    def unsubscribe(self, channel: str) -> None: ...
    def is_subscribed(self, channel: str) -> bool: ...
    async def wait_subscribed(self, channel: str) -> None: ...


class RedisSubscriber:
    """One reconnecting pub/sub connection serving any number of channels."""

    def __init__(
        self,
        redis_url: str,
        client_name: str,
        *,
        ping_interval: float = 5.0,
        backoff: Backoff | None = None,
        connect_timeout: float | None = None,
        sharded: bool = False,
        address: tuple[str, int] | None = None,
        on_trouble: Callable[[], None] | None = None,
    ) -> None:
        """`sharded`: SSUBSCRIBE (a cluster master's shard channels) instead of
        SUBSCRIBE; `address`: that master instead of the URL's host and port;
        `on_trouble` is called when the connection drops or Redis says a channel is
        not (or no longer) served here (MOVED, a server-side SUNSUBSCRIBE)."""
        self._pool = ConnectionPool.from_url(
            redis_url,
            decode_responses=True,
            client_name=client_name,
            socket_connect_timeout=connect_timeout,
        )
        if address is not None:  # the URL's options win in from_url; override after
            self._pool.connection_kwargs.update(host=address[0], port=address[1])
            self._pool.connection_kwargs.pop("db", None)
        self._cmd_sub, self._cmd_unsub = "SUBSCRIBE", "UNSUBSCRIBE"
        self._kind_message, self._kind_sub, self._kind_unsub = "message", "subscribe", ""
        if sharded:
            self._cmd_sub, self._cmd_unsub = "SSUBSCRIBE", "SUNSUBSCRIBE"
            self._kind_message, self._kind_sub = "smessage", "ssubscribe"
            self._kind_unsub = "sunsubscribe"
        self._on_trouble = on_trouble
        self._ping_interval = ping_interval
        self._backoff = backoff or Backoff(0.1, 2.0)
        self._handlers: dict[str, Handler] = {}
        self._on_resubscribed: list[Resubscribed] = []
        self._conn: AbstractConnection | None = None
        self._write_lock = asyncio.Lock()
        # Per channel, SUBSCRIBE commands sent and confirmations received on the
        # current connection; a waiter is released when its command is confirmed.
        self._sent: dict[str, int] = {}
        self._acked: dict[str, int] = {}
        self._waiters: dict[str, list[tuple[int, asyncio.Future[bool]]]] = {}
        # Futures waiting for a channel to be confirmed on any connection.
        self._watchers: dict[str, list[asyncio.Future[None]]] = {}
        # Channels of a reconnection's SUBSCRIBE not confirmed yet; when the last one
        # is, the `on_resubscribed` callbacks run.
        self._resubscribing: set[str] | None = None
        self._last_seen = time.monotonic()
        self._loops = TaskGroup("pubsub", log)
        self._commands = TaskGroup("pubsub.commands", log)
        self.connected = asyncio.Event()
        # Incremented on every successful (re)connection; tests and metrics read it.
        self.generation = 0

    # --- lifecycle --------------------------------------------------------------------

    async def start(self) -> None:
        self._loops.spawn(self._run(), name="pubsub.reader")
        self._loops.spawn(self._ping_loop(), name="pubsub.pinger")

    async def stop(self) -> None:
        await self._loops.aclose()
        await self._commands.aclose()
        self._release_waiters()
        if self._conn is not None:
            await self._conn.disconnect(nowait=True)
        await self._pool.aclose()

    def on_resubscribed(self, callback: Resubscribed) -> None:
        """Call `callback(generation)` after every reconnection's re-subscription."""
        self._on_resubscribed.append(callback)

    # --- channels -----------------------------------------------------------------------

    @property
    def channels(self) -> set[str]:
        """The channels wanted now (subscribed, or to be on the next connection)."""
        return set(self._handlers)

    def subscribe(self, channel: str, handler: Handler, timeout: float) -> asyncio.Task[bool]:
        """Want `channel`; the task resolves True once Redis confirmed it.

        False when Redis is unavailable or did not confirm within `timeout` (the
        channel stays wanted: it is subscribed on the next connection). The handler
        is registered at once, so a later `unsubscribe` always wins.
        """
        self._handlers[channel] = handler
        return asyncio.ensure_future(self._subscribe(channel, timeout))

    def unsubscribe(self, channel: str) -> None:
        """Stop wanting `channel` now; the UNSUBSCRIBE goes out in the background."""
        if self._handlers.pop(channel, None) is None:
            return
        self._commands.spawn(self._unsubscribe(channel), name="pubsub.unsubscribe")

    def is_subscribed(self, channel: str) -> bool:
        """Redis confirmed `channel` on the live connection."""
        return (
            self.connected.is_set()
            and channel in self._handlers
            and self._acked.get(channel, 0) > 0
        )

    async def wait_subscribed(self, channel: str) -> None:
        """Return once `channel` is confirmed on the live connection (waits across outages)."""
        while not self.is_subscribed(channel):
            watcher: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._watchers.setdefault(channel, []).append(watcher)
            await watcher

    async def _subscribe(self, channel: str, timeout: float) -> bool:
        conn = self._conn
        if conn is None or not self.connected.is_set():
            return False  # the reader subscribes to everything wanted on reconnect
        waiter: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        try:
            async with self._write_lock:
                if conn is not self._conn:
                    return False
                if channel not in self._handlers:
                    return False  # unsubscribed meanwhile
                await conn.send_command(self._cmd_sub, channel, check_health=False)
                target = self._sent[channel] = self._sent.get(channel, 0) + 1
                self._waiters.setdefault(channel, []).append((target, waiter))
        except (RedisError, OSError) as exc:
            log.warning("subscribe %s failed: %r", channel, exc)
            return False
        try:
            return await asyncio.wait_for(asyncio.shield(waiter), timeout)
        except TimeoutError:
            return False

    async def _unsubscribe(self, channel: str) -> None:
        conn = self._conn
        if conn is None or not self.connected.is_set():
            return
        try:
            async with self._write_lock:
                if conn is self._conn and channel not in self._handlers:
                    await conn.send_command(self._cmd_unsub, channel, check_health=False)
        except (RedisError, OSError) as exc:
            log.debug("unsubscribe %s failed: %r", channel, exc)

    # --- the reader -----------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            conn: AbstractConnection = self._pool.make_connection()  # type: ignore[no-untyped-call]
            try:
                await conn.connect()  # type: ignore[no-untyped-call]
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    # redis-py's connect() can swallow a cancellation (stop() during the
                    # handshake): honour it, or stop() would wait on this task forever.
                    raise asyncio.CancelledError
                async with self._write_lock:
                    self._conn = conn
                    self._sent.clear()
                    self._acked.clear()
                    channels = sorted(self._handlers)
                    # SSUBSCRIBE takes channels of one slot only (else CROSSSLOT, and
                    # this loop would reconnect forever): one channel per command there.
                    step = 1 if self._cmd_sub == "SSUBSCRIBE" else _SUBSCRIBE_CHUNK
                    for i in range(0, len(channels), step):
                        chunk = channels[i : i + step]
                        await conn.send_command(self._cmd_sub, *chunk, check_health=False)
                        for channel in chunk:
                            self._sent[channel] = 1
                self._last_seen = time.monotonic()
                self.generation += 1
                self.connected.set()
                if self.generation > 1:
                    log.info("pub/sub connection restored (%d channels)", len(channels))
                    self._resubscribing = set(channels)
                    if not channels:
                        self._resubscribed()
                self._backoff.reset()
                await self._read(conn)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # any failure: drop the connection and start over
                if self.connected.is_set() or self.generation == 0:
                    log.warning("pub/sub subscription lost: %r; reconnecting", exc)
            self.connected.clear()
            self._resubscribing = None
            self._conn = None
            self._release_waiters()
            with contextlib.suppress(Exception):
                await conn.disconnect(nowait=True)
            self._trouble()
            await self._backoff.sleep()

    def _trouble(self) -> None:
        if self._on_trouble is not None:
            try:
                self._on_trouble()
            except Exception:
                log.exception("pub/sub trouble callback failed")

    def _resubscribed(self) -> None:
        self._resubscribing = None
        for callback in list(self._on_resubscribed):
            try:
                callback(self.generation)
            except Exception:
                log.exception("pub/sub resubscribed callback %r failed", callback)

    async def _read(self, conn: AbstractConnection) -> None:
        handlers = self._handlers
        message = self._kind_message
        while True:
            # push_request: with RESP3, pub/sub messages are "push" replies.
            try:
                reply = await conn.read_response(timeout=float("inf"), push_request=True)
            except MovedError:
                # A cluster node refusing an SSUBSCRIBE for a slot it does not serve:
                # the connection is fine, the router must look again.
                self._last_seen = time.monotonic()
                self._trouble()
                continue
            self._last_seen = time.monotonic()
            if not isinstance(reply, list) or not reply:
                continue
            kind = reply[0]
            if kind == message:
                handler = handlers.get(reply[1])
                if handler is None:
                    continue  # unsubscribed; Redis has not seen the UNSUBSCRIBE yet
                try:
                    handler(reply[1], reply[2])
                except Exception:
                    log.exception("handling a message on %s failed", reply[1])
            elif kind == self._kind_sub:
                self._confirmed(reply[1])
            elif kind == self._kind_unsub and reply[1] in handlers:
                # Redis dropped a shard channel we still want (its slot moved away).
                self._acked[reply[1]] = self._sent[reply[1]] = 0
                self._trouble()

    def _confirmed(self, channel: str) -> None:
        acked = self._acked[channel] = self._acked.get(channel, 0) + 1
        if self._resubscribing is not None:
            self._resubscribing.discard(channel)
            if not self._resubscribing:
                self._resubscribed()
        for watcher in self._watchers.pop(channel, ()):
            if not watcher.done():
                watcher.set_result(None)
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
                log.warning("pub/sub subscription silent; reconnecting")
                with contextlib.suppress(Exception):
                    await conn.disconnect(nowait=True)
                continue
            try:
                async with self._write_lock:
                    if conn is self._conn:
                        await conn.send_command("PING", check_health=False)
            except (RedisError, OSError):
                pass  # the reader sees the broken connection and reconnects
