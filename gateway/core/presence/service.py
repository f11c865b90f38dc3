"""Presence wired to the outside: the engine, announcing transitions, sockets, sweeper.

The engine (`gateway.core.presence.engine`) decides; this module tells. A transition comes out of
the engine in exactly one process (the one whose heartbeat, device offline or sweep
caused it), and only that process announces it:

* one `PUBLISH` of the `presence.update` frame on `{prefix}presence`; every process
  (the publisher too) delivers the payload it receives to its local presence sockets,
  so each socket gets each update once;
* `room.presence` to every room the user has a socket in (the realtime hub's fanout);
* `rt.hooks.emit_presence(...)` for the Matrix bridge and anyone else listening.

Announcing happens off the request path, in order, from one task per process: a
heartbeat answers after its single EVALSHA, and a slow listener (the bridge writes
to PostgreSQL) never delays a heartbeat or the next `presence.update`.

Heartbeats, device offlines and the PUBLISHes go over one pipelined connection
(`gateway.infra.redis_pipe`: ~25 µs of CPU per command instead of redis-py's ~300 µs);
reads and the sweeper use a redis-py client that fails fast (one reconnect attempt,
short timeouts). While Redis is down presence calls answer 503
`presence_unavailable` at once instead of sitting in a retry back-off, and the
sweeper and the subscription retry in the background until Redis is back.

Redis losing its data (a restart without persistence, a failover to an empty
replica) must not leave anyone stuck: each process remembers, bounded, whom it last
heard was online or away (`KnownUsers`, fed by the channel). A reconciler notices
the loss (an epoch key that vanished or changed) and re-declares those users
through the engine's `seed` (one process wins per user; a user whose tabs are still
open beats again within the TTL and nothing is announced, the others go offline
through the sweeper, announced once). After the subscription comes back (updates
published meanwhile were lost), each process re-reads the states its sockets may
have missed and sends them the differences.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import secrets
import time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Protocol

import orjson
import redis.asyncio as aioredis
from redis.asyncio.client import PubSub
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import NoScriptError, RedisError

from gateway.core.errors import AppError
from gateway.core.events import CityHooks
from gateway.core.presence.engine import (
    PresenceEngine,
    PresenceRefused,
    PresenceState,
    PresenceTransition,
    Status,
    outcome,
)
from gateway.infra.jsonio import dumps
from gateway.infra.metrics import RATE_LIMITED
from gateway.infra.redis_pipe import RedisPipe
from gateway.realtime.fanout import CLOSE_TOO_SLOW, ClientSocket, outgoing

if TYPE_CHECKING:
    from gateway.app.runtime import Runtime
    from gateway.infra.settings import Settings

log = logging.getLogger(__name__)

EXTENSION = "presence"
# How long one presence call may wait on Redis before it is answered 503.
REDIS_TIMEOUT_SECONDS = 2.0
# On shutdown: how long to wait for the sweeper's last round and the announcements.
_DRAIN_SECONDS = 3.0
# Rooms looked up at once when a sweep hands over many transitions.
_ROOM_LOOKUPS_AT_ONCE = 50
# Transitions announced per round (one pipelined burst of PUBLISHes).
_ANNOUNCE_BATCH = 500
# Users a process remembers as online/away, for re-declaring them after Redis lost
# its data (~150 bytes each); past it the oldest news is forgotten.
MAX_KNOWN_USERS = 100_000
# Users re-declared or re-read per round trip during a catch-up.
_CATCH_UP_BATCH = 500
_LIVE: dict[str, Status] = {"online": "online", "away": "away"}
_REFUSED_LABELS = {"too_many_devices": "presence_devices", "rate_limited": "heartbeats"}
_REFUSED_MESSAGES = {
    "too_many_devices": "this user has too many live presence devices",
    "rate_limited": "too many heartbeats from this device",
}


def presence_unavailable() -> AppError:
    return AppError(
        503, "presence_unavailable", "presence is unavailable (Redis cannot be reached)"
    )


def refused(exc: PresenceRefused) -> AppError:
    """429 for a heartbeat over a limit (SPEC §12), with Retry-After in seconds."""
    RATE_LIMITED.labels(_REFUSED_LABELS.get(exc.code, exc.code)).inc()
    return AppError(
        429,
        exc.code,
        _REFUSED_MESSAGES.get(exc.code, "presence heartbeat refused"),
        headers={"Retry-After": str(max(1, math.ceil(exc.retry_after_ms / 1000)))},
    )


def update_frame(user_id: str, status: str, last_active_ago: int) -> str:
    """`presence.update`, the frame every presence socket gets (and the channel payload)."""
    return dumps(
        {
            "event": "presence.update",
            "user_id": user_id,
            "status": status,
            "last_active_ago": last_active_ago,
        }
    ).decode()


class RoomPresence(Protocol):
    """What presence needs from the realtime hub (gateway.realtime.hub.Realtime)."""

    async def rooms_of_user(self, user_id: str) -> list[str]: ...

    def publish_room_presence(self, room_id: str, user_id: str, status: str) -> None: ...


class PresenceSockets:
    """This process's presence sockets; every `presence.update` goes to all of them."""

    def __init__(self) -> None:
        self._sockets: dict[ClientSocket, None] = {}

    def __len__(self) -> int:
        return len(self._sockets)

    def add(self, sock: ClientSocket) -> None:
        self._sockets[sock] = None

    def remove(self, sock: ClientSocket) -> None:
        self._sockets.pop(sock, None)

    def deliver(self, frame: str) -> None:
        """Queue the frame on every socket (never blocks); drop those too far behind."""
        message = outgoing(frame)
        slow = [sock for sock in self._sockets if not sock.offer(message)]
        for sock in slow:
            log.info("dropping slow presence websocket of %s", sock.user_id)
            sock.close(CLOSE_TOO_SLOW, "client too slow")
            self.remove(sock)

    def close_all(self, code: int, reason: str) -> list[ClientSocket]:
        sockets = list(self._sockets)
        for sock in sockets:
            sock.close(code, reason)
        return sockets


@dataclass(slots=True)
class _Known:
    status: Status
    last_active_ago: int  # ms, as of `at`
    at: float  # time.monotonic() when heard
    seq: int  # KnownUsers.seq when heard


class KnownUsers:
    """Whom this process last heard was online or away (bounded, oldest news dropped).

    Fed by every `presence.update` from the channel (all processes' transitions) and
    by this process's own announcements (in case their PUBLISH failed).
    """

    def __init__(self, limit: int = MAX_KNOWN_USERS) -> None:
        self._limit = limit
        self._users: dict[str, _Known] = {}
        self.seq = 0  # bumped on every note: tells a catch-up what it raced with

    def __len__(self) -> int:
        return len(self._users)

    def get(self, user_id: str) -> _Known | None:
        return self._users.get(user_id)

    def note(self, user_id: str, status: str, last_active_ago: int) -> None:
        self.seq += 1
        users = self._users
        users.pop(user_id, None)  # re-inserted last: dict order is news order
        if status in _LIVE:
            if len(users) >= self._limit:
                del users[next(iter(users))]
            users[user_id] = _Known(_LIVE[status], last_active_ago, time.monotonic(), self.seq)

    def note_frame(self, payload: str) -> None:
        try:
            frame = orjson.loads(payload)
            self.note(frame["user_id"], frame["status"], int(frame["last_active_ago"]))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            log.warning("unreadable presence update on the channel")

    def snapshot(self) -> list[tuple[str, Status, int]]:
        """(user, status, last_active_ago now) of everyone remembered."""
        now = time.monotonic()
        return [
            (user_id, k.status, k.last_active_ago + round((now - k.at) * 1000))
            for user_id, k in self._users.items()
        ]


class PresenceChannel:
    """This process's subscription to `{prefix}presence`, re-established forever.

    Its own connection (pub/sub holds one), its own reconnect loop with back-off, and a
    PING when idle so that a silently dead connection is noticed. `confirmed` is set
    while Redis has confirmed the subscription on the live connection: updates
    published from then on reach this process. Updates published while the
    connection is down are lost; presence is state, the next transition corrects it.
    """

    def __init__(
        self,
        redis_url: str,
        channel: str,
        on_message: Callable[[str], None],
        *,
        ping_seconds: float = 5.0,
        on_subscribed: Callable[[int], None] | None = None,
    ) -> None:
        self._url = redis_url
        self.channel = channel
        self._on_message = on_message
        # Called with `generation` each time Redis confirms the subscription.
        self._on_subscribed = on_subscribed
        self._ping_seconds = ping_seconds
        self.confirmed = asyncio.Event()
        self.generation = 0  # successful subscriptions so far (1 = first, 2+ = recovered)

    async def run(self) -> None:
        backoff = 0.1
        failing = False
        while True:
            client = aioredis.from_url(
                self._url,
                decode_responses=True,
                retry=Retry(NoBackoff(), 0),  # reconnecting is this loop's job
                socket_connect_timeout=1.0,
            )
            pubsub = client.pubsub()
            generation = self.generation
            try:
                await pubsub.subscribe(self.channel)
                await self._read(pubsub)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # Once per outage (Redis may stay away for a while), not once per retry.
                if not failing or self.generation != generation:
                    log.warning("presence subscription lost: %r; reconnecting", exc)
                failing = True
            finally:
                self.confirmed.clear()
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
                with contextlib.suppress(Exception):
                    await client.aclose()
            if self.generation != generation:
                backoff = 0.1  # it worked for a while: retry promptly
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 2.0)

    async def _read(self, pubsub: PubSub) -> None:
        silent = 0
        while True:
            message = await pubsub.get_message(timeout=self._ping_seconds)
            if message is None:
                silent += 1
                if silent >= 3:
                    raise ConnectionError("presence subscription silent")
                await pubsub.ping()  # any answer counts as a sign of life
                continue
            silent = 0
            kind = message["type"]
            if kind == "message":
                try:
                    self._on_message(message["data"])
                except Exception:
                    log.exception("delivering a presence update failed")
            elif kind == "subscribe" and message["channel"] == self.channel:
                self.generation += 1
                self.confirmed.set()
                if self.generation > 1:
                    log.info("presence subscription restored")
                if self._on_subscribed is not None:
                    self._on_subscribed(self.generation)


class PresenceService:
    """Heartbeats in, transitions announced once; reach it as `rt.extensions["presence"]`."""

    def __init__(
        self,
        engine: PresenceEngine,
        pipe: RedisPipe,
        hooks: CityHooks,
        *,
        channel: str,
        matrix_user_id: Callable[[str], str | None],
        rooms: RoomPresence | None = None,
    ) -> None:
        self.engine = engine
        self._pipe = pipe
        self._hooks = hooks
        self.channel = channel
        self.matrix_user_id = matrix_user_id
        self._rooms = rooms
        self.sockets = PresenceSockets()
        # Transitions this process got, waiting to be announced (in order).
        self._pending: deque[PresenceTransition] = deque()
        self._wakeup = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        # Transitions handed to the hooks by this process (metrics count them by hook).
        self.announced = 0
        self.publish_failures = 0
        # Redis-loss convergence (see the module docstring).
        self.known = KnownUsers()
        self.epoch_key = f"{channel}:epoch"
        self._epoch: str | None = None
        self._recheck = asyncio.Event()
        self._resubscribed = False
        self._synced = False  # the start-up snapshot of who is online was taken
        self.losses_seen = 0  # Redis data losses this process detected
        self.catch_ups = 0  # catch-ups that ran (startup snapshot included)
        # Called after this process re-declared users following a Redis data loss
        # (e.g. for the Matrix bridge to compare what it told Synapse with
        # `statuses()`); a failing listener is logged.
        self.loss_listeners: list[Callable[[], Awaitable[None]]] = []

    # --- the rules' entry points (each raises 503 presence_unavailable) -----------------

    # heartbeat and device_offline hand back _run's coroutine instead of awaiting it:
    # every coroutine frame between the request and the Redis reply is re-entered on
    # resumption, and this is the hottest path.

    def heartbeat(
        self,
        user_id: str,
        device_id: str | None,
        status: str | None = None,
        last_active_ago: int | None = None,
    ) -> Coroutine[Any, Any, PresenceState]:
        """A device is alive (`status` online/away/unavailable); the user's state after it."""
        # Raises ValueError for a status the caller should have refused.
        keys, args = self.engine.heartbeat_call(user_id, device_id, status, last_active_ago)
        return self._run(user_id, keys, args)

    def device_offline(
        self, user_id: str, device_id: str | None
    ) -> Coroutine[Any, Any, PresenceState]:
        """A device said goodbye; the user follows after the grace unless one comes back."""
        keys, args = self.engine.device_offline_call(user_id, device_id)
        return self._run(user_id, keys, args)

    async def _run(self, user_id: str, keys: list[str], args: list[Any]) -> PresenceState:
        # The engine's script over the pipelined connection: the hot path's one EVALSHA.
        # The pipe bounds the wait (REDIS_TIMEOUT_SECONDS without an answer fails it).
        engine = self.engine
        pipe = self._pipe
        try:
            future = pipe.submit("EVALSHA", engine.script_sha, len(keys), *keys, *args)
            if future is None:  # not connected yet (start, or Redis came back)
                reply = await pipe.evalsha(engine.script_sha, engine.script_source, keys, args)
            else:
                try:
                    reply = await future
                except NoScriptError:  # Redis restarted: load the script once more
                    reply = await pipe.evalsha(engine.script_sha, engine.script_source, keys, args)
        except (RedisError, OSError) as exc:
            raise _unavailable(exc) from None
        try:
            state, transition = outcome(user_id, reply)
        except PresenceRefused as exc:
            raise refused(exc) from None
        if transition is not None:
            self.announce([transition])
        return state

    async def statuses(self, user_ids: Sequence[str]) -> list[PresenceState]:
        try:
            async with asyncio.timeout(REDIS_TIMEOUT_SECONDS):
                return await self.engine.get_statuses(user_ids)
        except (RedisError, OSError, TimeoutError) as exc:
            raise _unavailable(exc) from None

    async def count_online(self) -> int:
        try:
            async with asyncio.timeout(REDIS_TIMEOUT_SECONDS):
                return await self.engine.count_online()
        except (RedisError, OSError, TimeoutError) as exc:
            raise _unavailable(exc) from None

    # --- announcing ---------------------------------------------------------------------

    def announce(self, transitions: list[PresenceTransition]) -> None:
        """Queue transitions this process got from the engine; never blocks."""
        self._pending.extend(transitions)
        self._idle.clear()
        self._wakeup.set()

    async def announce_swept(self, transitions: list[PresenceTransition]) -> None:
        """The sweeper's sink."""
        self.announce(transitions)

    async def run_announcer(self) -> None:
        """Announce queued transitions in order, a batch at a time, until cancelled."""
        while True:
            if not self._pending:
                self._idle.set()
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            pending = self._pending
            batch = [pending.popleft() for _ in range(min(len(pending), _ANNOUNCE_BATCH))]
            try:
                await self._announce_batch(batch)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("announcing %d presence transitions failed", len(batch))

    async def drain(self, timeout: float) -> bool:
        """Wait until everything queued has been announced (True) or `timeout` passes."""
        try:
            async with asyncio.timeout(timeout):
                while self._pending or not self._idle.is_set():
                    await self._idle.wait()
        except TimeoutError:
            return False
        return True

    async def _announce_batch(self, batch: list[PresenceTransition]) -> None:
        # 1. presence.update: one PUBLISH per transition, all in one round trip. A
        #    failure loses these frames (Redis is down: the states they describe are
        #    likely gone with it); retrying a half-done pipeline could send some twice.
        published = True
        try:
            async with asyncio.timeout(REDIS_TIMEOUT_SECONDS):
                await self._pipe.call_many(
                    [
                        (
                            "PUBLISH",
                            self.channel,
                            update_frame(t.user_id, t.status, t.last_active_ago),
                        )
                        for t in batch
                    ]
                )
        except (RedisError, OSError, TimeoutError) as exc:
            published = False
            self.publish_failures += 1
            log.warning("publishing %d presence updates failed: %r", len(batch), exc)
        # 2. room.presence to the rooms the user is connected to, on every process.
        #    Skipped when Redis just failed: the lookups need it too, and waiting for
        #    them would hold back the hooks below.
        if self._rooms is not None and published:
            await self._room_presence(self._rooms, batch)
        # 3. The bridge and other listeners, in order, exactly once cluster-wide.
        for t in batch:
            self.known.note(t.user_id, t.status, t.last_active_ago)
            await self._hooks.emit_presence(t.user_id, t.previous, t.status, t.last_active_ago)
            self.announced += 1

    async def _room_presence(self, hub: RoomPresence, batch: list[PresenceTransition]) -> None:
        async def rooms_of(user_id: str) -> list[str]:
            try:
                async with asyncio.timeout(REDIS_TIMEOUT_SECONDS):
                    return await hub.rooms_of_user(user_id)
            except Exception as exc:
                log.warning("rooms of %s for room.presence unavailable: %r", user_id, exc)
                return []

        for start in range(0, len(batch), _ROOM_LOOKUPS_AT_ONCE):
            chunk = batch[start : start + _ROOM_LOOKUPS_AT_ONCE]
            found = await asyncio.gather(*(rooms_of(t.user_id) for t in chunk))
            for t, room_ids in zip(chunk, found, strict=True):
                for room_id in room_ids:
                    hub.publish_room_presence(room_id, t.user_id, t.status)

    # --- from the channel -----------------------------------------------------------------

    def on_channel_message(self, payload: str) -> None:
        self.sockets.deliver(payload)
        self.known.note_frame(payload)

    # --- converging after Redis lost data or updates --------------------------------------

    def on_subscribed(self, generation: int) -> None:
        """The channel's callback: after a re-subscription, catch the sockets up."""
        if generation > 1:
            self._resubscribed = True
            self._recheck.set()

    async def run_reconciler(self, interval_seconds: float) -> None:
        """Watch for Redis data loss and re-subscriptions; converge after either."""
        failing = False
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._recheck.wait(), interval_seconds)
            self._recheck.clear()
            try:
                await self.reconcile()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if not failing:
                    log.warning("presence reconciliation failed: %r; retrying", exc)
                failing = True
            else:
                failing = False

    async def reconcile(self) -> None:
        """One round: detect a data loss (re-declare known users), then catch up."""
        lost = await self._check_epoch()
        resubscribed, self._resubscribed = self._resubscribed, False
        try:
            if lost:
                self.losses_seen += 1
                log.warning(
                    "Redis lost the presence state; re-declaring %d known users", len(self.known)
                )
                await self._reseed()
                for listener in list(self.loss_listeners):
                    try:
                        await listener()
                    except Exception:
                        log.exception("presence loss listener %r failed", listener)
            if not self._synced:
                # First contact with Redis: learn who is online (to re-declare them
                # should Redis lose its data later); the sockets are new, tell them nothing.
                await self.catch_up(deliver=False)
                self._synced = True
            elif lost or resubscribed:
                await self.catch_up(deliver=True)
        except BaseException:
            self._resubscribed = self._resubscribed or resubscribed  # try again
            raise

    async def _check_epoch(self) -> bool:
        """True if Redis lost its data since the last check (the epoch key changed).

        `SET NX GET` in one step: the first process after a loss writes a new epoch,
        every other process reads it, and each sees it differs from the one it knew.
        """
        candidate = secrets.token_hex(8)
        async with asyncio.timeout(REDIS_TIMEOUT_SECONDS):
            found = await self._pipe.call("SET", self.epoch_key, candidate, "NX", "GET")
        epoch = candidate if found is None else str(found)
        lost = self._epoch is not None and epoch != self._epoch
        self._epoch = epoch
        return lost

    async def _reseed(self) -> None:
        engine = self.engine
        known = self.known.snapshot()
        async with asyncio.timeout(REDIS_TIMEOUT_SECONDS):
            await self._pipe.call("SCRIPT", "LOAD", engine.script_source)
        for start in range(0, len(known), _CATCH_UP_BATCH):
            calls = []
            for user_id, status, ago in known[start : start + _CATCH_UP_BATCH]:
                keys, args = engine.seed_call(user_id, status, ago, engine.ttl_ms)
                calls.append(("EVALSHA", engine.script_sha, len(keys), *keys, *args))
            async with asyncio.timeout(REDIS_TIMEOUT_SECONDS):
                replies = await self._pipe.call_many(calls)
            for (user_id, *_), reply in zip(known[start:], replies, strict=False):
                _, transition = outcome(user_id, reply)
                if transition is not None:  # not expected; announced if it happens
                    self.announce([transition])

    async def catch_up(self, *, deliver: bool) -> None:
        """Compare what this process knows with Redis; tell the sockets what changed.

        Covers the users remembered and everyone online now, so a transition whose
        `presence.update` this process missed (published while it was not
        subscribed) reaches its sockets. An update that arrives from the channel
        during the catch-up is newer than what was read here, and wins.
        """
        started = self.known.seq
        users = dict.fromkeys(user_id for user_id, _, _ in self.known.snapshot())
        async with asyncio.timeout(REDIS_TIMEOUT_SECONDS * 5):
            for user_id in await self.engine.online_users(MAX_KNOWN_USERS):
                users[user_id] = None
        ordered = list(users)
        for start in range(0, len(ordered), _CATCH_UP_BATCH):
            async with asyncio.timeout(REDIS_TIMEOUT_SECONDS):
                states = await self.engine.get_statuses(ordered[start : start + _CATCH_UP_BATCH])
            for state in states:
                known = self.known.get(state.user_id)
                if known is not None and known.seq > started:
                    continue  # the channel told us something newer meanwhile
                if state.status == (known.status if known else "offline"):
                    continue
                self.known.note(state.user_id, state.status, state.last_active_ago)
                if deliver:
                    self.sockets.deliver(
                        update_frame(state.user_id, state.status, state.last_active_ago)
                    )
        self.catch_ups += 1


def _unavailable(exc: BaseException) -> AppError:
    log.warning("presence call failed: %r", exc)
    return presence_unavailable()


def presence_of(rt: Runtime) -> PresenceService:
    service = rt.extensions.get(EXTENSION)
    if not isinstance(service, PresenceService):
        raise presence_unavailable()
    return service


def ghost_namer(settings: Settings) -> Callable[[str], str | None]:
    """user id -> the ghost's Matrix id when the bridge is configured, else None."""
    if not settings.matrix_enabled or not settings.matrix_server_name:
        return lambda _user_id: None
    # The bridge owns the escaping; this is its pure function, nothing stateful.
    from bridge.naming import escape_localpart

    prefix, server = settings.matrix_ghost_prefix, settings.matrix_server_name

    @lru_cache(maxsize=65_536)
    def name(user_id: str) -> str:
        return f"@{prefix}{escape_localpart(user_id)}:{server}"

    return name


def presence_redis(settings: Settings) -> aioredis.Redis:
    """A client that gives up quickly: one reconnect (a restarted Redis), no back-off."""
    return aioredis.from_url(
        settings.redis_url,
        decode_responses=True,
        retry=Retry(NoBackoff(), 1),
        socket_connect_timeout=1.0,
        socket_timeout=REDIS_TIMEOUT_SECONDS,
        health_check_interval=10,
    )


async def start_presence(rt: Runtime, stack: AsyncExitStack) -> None:
    """Starter: engine, announcer, channel subscription, sweeper; after `start_realtime`."""
    settings = rt.settings
    redis = presence_redis(settings)
    stack.push_async_callback(redis.aclose)
    pipe = RedisPipe(settings.redis_url, connect_timeout=1.0, stall_seconds=REDIS_TIMEOUT_SECONDS)
    stack.push_async_callback(pipe.close)
    hub: RoomPresence | None = rt.extensions.get("realtime")
    service = PresenceService(
        PresenceEngine.from_settings(redis, settings),
        pipe,
        rt.hooks,
        channel=f"{settings.city_redis_prefix}presence",
        matrix_user_id=ghost_namer(settings),
        rooms=hub,
    )
    loop = asyncio.get_running_loop()

    subscription = PresenceChannel(
        settings.redis_url,
        service.channel,
        service.on_channel_message,
        on_subscribed=service.on_subscribed,
    )
    listener = loop.create_task(subscription.run(), name="presence.subscription")
    stack.push_async_callback(_cancel, listener)

    announcer = loop.create_task(service.run_announcer(), name="presence.announcer")
    stack.push_async_callback(_cancel, announcer)

    stop_sweeping = asyncio.Event()
    sweeper = loop.create_task(
        service.engine.run_sweeper(
            service.announce_swept,
            interval_seconds=settings.presence_sweep_interval_seconds,
            stop=stop_sweeping,
        ),
        name="presence.sweeper",
    )

    async def stop() -> None:
        # Let the sweeper finish its round (a transition it settled must be
        # announced), then announce everything still queued, then stop.
        stop_sweeping.set()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(asyncio.shield(sweeper), _DRAIN_SECONDS)
        await _cancel(sweeper)
        if not await service.drain(_DRAIN_SECONDS):
            log.warning("shutting down with presence transitions not announced")

    stack.push_async_callback(stop)

    # Subscribed before the first request when Redis is up; if it is not, the
    # subscription follows in the background as soon as Redis answers.
    try:
        await asyncio.wait_for(subscription.confirmed.wait(), 2.0)
    except TimeoutError:
        log.warning("presence channel not subscribed yet (Redis unavailable); retrying")
    else:
        # The epoch later checks compare with, and who is online now. If this fails
        # (or Redis is down), the reconciler does it as soon as Redis answers.
        try:
            await service.reconcile()
        except Exception as exc:
            log.warning("presence start-up snapshot failed: %r", exc)

    reconciler = loop.create_task(
        service.run_reconciler(settings.presence_sweep_interval_seconds),
        name="presence.reconciler",
    )
    stack.push_async_callback(_cancel, reconciler)

    async def presence_ready() -> None:
        if not subscription.confirmed.is_set():
            raise RuntimeError("presence channel not subscribed")
        async with asyncio.timeout(REDIS_TIMEOUT_SECONDS):
            await pipe.call("PING")

    rt.ready_checks["presence"] = presence_ready
    rt.extensions[EXTENSION] = service


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task
