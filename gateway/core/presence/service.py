"""Presence wired to the outside: the engine, announcing transitions, sockets, sweeper.

The engine (`gateway.core.presence.engine`) decides; this module tells. A
transition comes out of the engine in exactly one process (the one whose
heartbeat, device offline or sweep caused it), and only that process announces it:

* one `PUBLISH` of the `presence.update` frame on `{prefix}presence`; every process
  (the publisher too) delivers the payload it receives to its local presence sockets,
  so each socket gets each update once;
* `room.presence` to every room the user has a socket in (the realtime hub's fanout);
* `hooks.emit_presence(...)` for the Matrix bridge and anyone else listening.

Announcing happens off the request path, in order, from one task per process: a
heartbeat answers after its single EVALSHA, and a slow listener (the bridge writes
to PostgreSQL) never delays a heartbeat or the next `presence.update`.

Heartbeats, device offlines and the PUBLISHes go over one pipelined connection
(`gateway.infra.redis_pipe`: ~25 µs of CPU per command instead of redis-py's ~300 µs);
reads and the sweeper use a redis-py client that fails fast (one reconnect attempt,
short timeouts). While Redis is down presence calls answer 503
`presence_unavailable` at once instead of sitting in a retry back-off, and the
sweeper and the subscription retry in the background until Redis is back.

Redis losing its data, or this process missing updates while its subscription was
down, is converged by `PresenceRecovery` (gateway.core.presence.recovery), from
what each process remembers (`KnownUsers`, fed by the channel). The subscription
is the process's one pub/sub connection (gateway.infra.pubsub); the sockets are
the realtime edge's, reached through the `PresenceDelivery` port.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections import deque
from collections.abc import Coroutine, Sequence
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING, Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import NoScriptError, RedisError

from gateway.core.errors import AppError
from gateway.core.events import CityHooks
from gateway.core.ports import MatrixIdentity, PresenceDelivery, ReadyCheck, RoomPresence
from gateway.core.presence.answers import (
    REDIS_TIMEOUT_SECONDS,
    presence_unavailable,
    refused,
    update_frame,
)
from gateway.core.presence.engine import (
    PresenceEngine,
    PresenceRefused,
    PresenceState,
    PresenceTransition,
    outcome,
)
from gateway.core.presence.known import KnownUsers
from gateway.core.presence.recovery import PresenceRecovery
from gateway.infra.pubsub import Subscriber
from gateway.infra.pubsub_cluster import make_subscriber
from gateway.infra.redis_clients import redis_client
from gateway.infra.redis_cluster_pipe import AnyPipe, command_pipe

if TYPE_CHECKING:
    from gateway.infra.settings import Settings

log = logging.getLogger(__name__)

# On shutdown: how long to wait for the sweeper's last round and the announcements.
_DRAIN_SECONDS = 3.0
# Rooms looked up at once when a sweep hands over many transitions.
_ROOM_LOOKUPS_AT_ONCE = 50
# Transitions announced per round (one pipelined burst of PUBLISHes).
_ANNOUNCE_BATCH = 500


class PresenceService:
    """Heartbeats in, transitions announced once (the runtime's `presence`)."""

    def __init__(
        self,
        engine: PresenceEngine,
        pipe: AnyPipe,
        hooks: CityHooks,
        *,
        channel: str,
        identity: MatrixIdentity,
        sockets: PresenceDelivery,
        rooms: RoomPresence | None = None,
    ) -> None:
        self.engine = engine
        self._pipe = pipe
        self._hooks = hooks
        self.channel = channel
        # Sharded pub/sub on a cluster (the channel's master only), PUBLISH otherwise.
        self._publish = "SPUBLISH" if engine.keys.clustered else "PUBLISH"
        # The user's Matrix id in presence answers (None without a bridge).
        self.matrix_user_id = identity.matrix_user_id
        self._rooms = rooms
        # This process's presence sockets (the realtime edge holds them).
        self._sockets = sockets
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
        self.recovery = PresenceRecovery(
            engine, pipe, self.known, sockets, self.announce, epoch_keys=engine.keys.epochs()
        )

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
                            self._publish,
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

    def on_channel_message(self, channel: str, payload: str) -> None:
        self._sockets.deliver(payload)
        self.known.note_frame(payload)


def _unavailable(exc: BaseException) -> AppError:
    log.warning("presence call failed: %r", exc)
    return presence_unavailable()


def presence_redis(settings: Settings) -> aioredis.Redis:
    """A client that gives up quickly: one reconnect (a restarted Redis), no back-off."""
    return redis_client(
        settings.redis_url,
        cluster=settings.redis_cluster,
        retry=Retry(NoBackoff(), 1),
        socket_connect_timeout=1.0,
        socket_timeout=REDIS_TIMEOUT_SECONDS,
        health_check_interval=10,
    )


def build_presence(
    settings: Settings,
    hooks: CityHooks,
    *,
    rooms: RoomPresence,
    sockets: PresenceDelivery,
    identity: MatrixIdentity,
    stack: AsyncExitStack,
) -> PresenceService:
    """The service and its Redis clients; nothing runs until `start_presence`.

    Built early so that other parts (the bridge) can be given it; started last.
    """
    redis = presence_redis(settings)
    stack.push_async_callback(redis.aclose)
    pipe = command_pipe(
        settings.redis_url,
        cluster=settings.redis_cluster,
        connect_timeout=1.0,
        stall_seconds=REDIS_TIMEOUT_SECONDS,
    )
    stack.push_async_callback(pipe.close)
    return PresenceService(
        PresenceEngine.from_settings(redis, settings),
        pipe,
        hooks,
        channel=f"{settings.city_redis_prefix}presence",
        identity=identity,
        sockets=sockets,
        rooms=rooms,
    )


async def start_presence(
    service: PresenceService,
    settings: Settings,
    stack: AsyncExitStack,
    *,
    subscriber: Subscriber | None = None,
) -> ReadyCheck:
    """Starter: announcer, channel subscription, sweeper, reconciler; returns the ready check.

    Started after every hook listener: on shutdown it stops first and drains its
    transitions while the listeners still run. `subscriber` is the process's shared
    pub/sub connection (started by its owner); without one presence runs its own.
    """
    pipe = service._pipe
    loop = asyncio.get_running_loop()

    if subscriber is None:
        subscriber = make_subscriber(
            settings.redis_url,
            f"{settings.city_redis_prefix}city-presence-{secrets.token_hex(8)}",
            cluster=settings.redis_cluster,
            connect_timeout=1.0,
        )
        await subscriber.start()
        stack.push_async_callback(subscriber.stop)
    subscriber.on_resubscribed(service.recovery.on_subscribed)
    subscriber.subscribe(service.channel, service.on_channel_message, REDIS_TIMEOUT_SECONDS)
    stack.callback(subscriber.unsubscribe, service.channel)

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
        await asyncio.wait_for(subscriber.wait_subscribed(service.channel), 2.0)
    except TimeoutError:
        log.warning("presence channel not subscribed yet (Redis unavailable); retrying")
    else:
        # The epoch later checks compare with, and who is online now. If this fails
        # (or Redis is down), the reconciler does it as soon as Redis answers.
        try:
            await service.recovery.reconcile()
        except Exception as exc:
            log.warning("presence start-up snapshot failed: %r", exc)

    reconciler = loop.create_task(
        service.recovery.run_reconciler(settings.presence_sweep_interval_seconds),
        name="presence.reconciler",
    )
    stack.push_async_callback(_cancel, reconciler)

    async def presence_ready() -> None:
        if not subscriber.is_subscribed(service.channel):
            raise RuntimeError("presence channel not subscribed")
        async with asyncio.timeout(REDIS_TIMEOUT_SECONDS):
            await pipe.call("PING")

    return presence_ready


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task
