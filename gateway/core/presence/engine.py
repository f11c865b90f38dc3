"""Presence engine: whether each user is online, away or offline, kept in Redis.

A user is the sum of their devices (tabs), so the state is derived, never set, and it
is derived inside one Lua script (``scripts.lua``) per operation. The script
compares against the user's previously *declared* state in the same atomic step and
reports the transition, so with any number of gateway processes exactly one caller
learns about each transition, and only that caller publishes it. The engine itself
publishes nothing: it returns transitions to whoever wires it to the sockets.

Nothing in Redis expires "by itself" in a way we rely on: keyspace notifications are
lossy, so a deadline ZSET records when each user's state may next change (a device
expiry, or the end of an offline grace) and any process may :meth:`sweep` it. Time is
always Redis's ``TIME``; gateway clocks never enter a decision.

A heartbeat costs the same whatever the number of devices or users (SPEC §12): the
script keeps a count of the user's online devices instead of walking them, and the
per-user device cap and per-device heartbeat budget are checked in that same call
(a refused call raises :class:`PresenceRefused` and changes nothing).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING, Any, cast

import redis.asyncio as aioredis

from gateway.core.presence.keys import PresenceKeys
from gateway.core.presence.types import (
    PresenceRefused,
    PresenceState,
    PresenceTransition,
    Status,
    TransitionSink,
    outcome,
    parse_status,
)
from gateway.infra.redis_clients import is_cluster

if TYPE_CHECKING:
    from gateway.infra.settings import Settings

log = logging.getLogger(__name__)

DEFAULT_DEVICE = "default"
# Heartbeat statuses meaning "away"; Matrix calls it "unavailable".
_AWAY_STATUSES = frozenset({"away", "unavailable"})
# How long a sweeper owns the users it claimed; if it dies mid-sweep another process
# picks them up after this, still well inside the "offline within TTL + 5 s" budget.
_CLAIM_LEASE_MS = 2_000
# On a Redis Cluster: per-user script calls a sweep keeps in flight at once (a
# cluster pipeline cannot carry EVALSHA, so they go as concurrent calls).
_CLUSTER_SETTLE_CONCURRENCY = 64


@cache
def _script_source() -> str:
    return (
        resources.files("gateway.core.presence").joinpath("scripts.lua").read_text(encoding="utf-8")
    )


def _ms(seconds: float) -> int:
    return round(seconds * 1000)


class PresenceEngine:
    """Device heartbeats in, user-level transitions out; state lives only in Redis."""

    def __init__(
        self,
        redis: aioredis.Redis,
        *,
        prefix: str,
        ttl_seconds: float,
        away_after_seconds: float,
        offline_grace_seconds: float,
        retention_seconds: float = 86_400,
        max_devices: int | None = None,
        heartbeats_per_second: float | None = None,
        heartbeat_burst: int = 1,
        cluster_buckets: int = 16,
    ) -> None:
        """``max_devices`` caps a user's live devices; ``heartbeats_per_second`` with
        ``heartbeat_burst`` is each device's heartbeat budget. None: no limit.
        ``cluster_buckets``: how many hash-tagged buckets users are spread over when
        ``redis`` is a Redis Cluster client (gateway/core/presence/keys.py)."""
        if ttl_seconds <= 0 or away_after_seconds <= 0:
            raise ValueError("ttl_seconds and away_after_seconds must be positive")
        if offline_grace_seconds < 0 or retention_seconds < 0:
            raise ValueError("offline_grace_seconds and retention_seconds must be >= 0")
        if max_devices is not None and max_devices < 1:
            raise ValueError("max_devices must be >= 1 (or None)")
        if heartbeats_per_second is not None and heartbeats_per_second <= 0:
            raise ValueError("heartbeats_per_second must be positive (or None)")
        if heartbeat_burst < 1:
            raise ValueError("heartbeat_burst must be >= 1")
        self._redis = redis
        self._ttl_ms = _ms(ttl_seconds)
        self._away_after_ms = _ms(away_after_seconds)
        self._grace_ms = _ms(offline_grace_seconds)
        # How long an offline user's last activity is remembered for get_statuses.
        self._retention_ms = _ms(retention_seconds)
        self._max_devices = max_devices or 0  # 0: no cap (the script's convention)
        # GCRA: one heartbeat per interval, and burst-1 intervals of credit.
        self._beat_interval_ms = 0.0
        self._beat_tolerance_ms = 0.0
        if heartbeats_per_second is not None:
            self._beat_interval_ms = 1000 / heartbeats_per_second
            self._beat_tolerance_ms = self._beat_interval_ms * (heartbeat_burst - 1)
        self.keys = PresenceKeys(prefix, cluster_buckets if is_cluster(redis) else None)
        self._script = redis.register_script(_script_source())

    @classmethod
    def from_settings(cls, redis: aioredis.Redis, settings: Settings) -> PresenceEngine:
        return cls(
            redis,
            prefix=settings.city_redis_prefix,
            ttl_seconds=settings.presence_ttl_seconds,
            away_after_seconds=settings.presence_away_after_seconds,
            offline_grace_seconds=settings.presence_offline_grace_seconds,
            max_devices=settings.limit_presence_devices,
            heartbeats_per_second=settings.limit_heartbeats_per_second,
            heartbeat_burst=settings.limit_heartbeats_burst,
            cluster_buckets=settings.presence_cluster_buckets,
        )

    def spec_key(self, user_id: str) -> str:
        """The SPEC's ``presence:user:{user_id}`` key (with the configured prefix; on
        a cluster with the user's bucket tag, ``presence:{b<k>}:user:{user_id}``)."""
        return self.keys.spec(user_id)

    def _keys(self, user_id: str) -> list[str]:
        return self.keys.user(user_id)

    def _device_keys(self, user_id: str, device: str) -> list[str]:
        keys = self.keys.user(user_id)
        if self._beat_interval_ms:
            keys.append(self.keys.rate(user_id, device))
        return keys

    @property
    def ttl_ms(self) -> int:
        return self._ttl_ms

    @property
    def script_sha(self) -> str:
        return self._script.sha

    @property
    def script_source(self) -> str:
        return _script_source()

    def heartbeat_call(
        self,
        user_id: str,
        device_id: str | None,
        status: str | None = None,
        last_active_ago: int | None = None,
    ) -> tuple[list[str], list[Any]]:
        """KEYS and ARGV of the script for :meth:`heartbeat`.

        For a caller that runs the script over its own connection (the hot HTTP path
        pipelines EVALSHAs); :func:`outcome` reads the reply.
        """
        if status is None or status == "online":
            away = 0
        elif status in _AWAY_STATUSES:
            away = 1
        else:
            raise ValueError(f"heartbeat status must be online or away, not {status!r}")
        lag = -1 if last_active_ago is None else max(0, int(last_active_ago))
        device = DEFAULT_DEVICE if device_id is None else device_id
        args: list[Any] = [
            "beat",
            user_id,
            self._retention_ms,
            device,
            away,
            lag,
            self._ttl_ms,
            self._away_after_ms,
            self._max_devices,
            self._beat_interval_ms,
            self._beat_tolerance_ms,
        ]
        return self._device_keys(user_id, device), args

    def device_offline_call(
        self, user_id: str, device_id: str | None
    ) -> tuple[list[str], list[Any]]:
        """KEYS and ARGV of the script for :meth:`device_offline`."""
        device = DEFAULT_DEVICE if device_id is None else device_id
        args: list[Any] = [
            "gone",
            user_id,
            self._retention_ms,
            device,
            self._grace_ms,
            self._beat_interval_ms,
            self._beat_tolerance_ms,
        ]
        return self._device_keys(user_id, device), args

    def seed_call(
        self, user_id: str, status: Status, last_active_ago: int, window_ms: int
    ) -> tuple[list[str], list[Any]]:
        """KEYS and ARGV of the script for :meth:`seed`."""
        if status == "offline":
            raise ValueError("only an online or away user is re-declared")
        args: list[Any] = [
            "seed",
            user_id,
            self._retention_ms,
            status,
            max(0, int(last_active_ago)),
            max(1, int(window_ms)),
        ]
        return self._keys(user_id), args

    async def heartbeat(
        self,
        user_id: str,
        device_id: str | None,
        status: str | None = None,
        last_active_ago: int | None = None,
    ) -> tuple[PresenceState, PresenceTransition | None]:
        """Record that a device is alive; one EVALSHA, as this is the hottest path.

        ``status`` is ``online`` (or None) or ``away``/``unavailable``; going offline
        is :meth:`device_offline`, so a stray "offline" here is an error, not a guess.
        """
        keys, args = self.heartbeat_call(user_id, device_id, status, last_active_ago)
        return outcome(user_id, await self._script(keys=keys, args=args))

    async def device_offline(
        self, user_id: str, device_id: str | None
    ) -> tuple[PresenceState, PresenceTransition | None]:
        """Drop a device now (beacon, socket closed); the user follows after the grace.

        While the grace runs the user keeps their declared state (and the returned
        state says so); :meth:`sweep` declares offline when it ends, unless a heartbeat
        came first. With a zero grace the transition is returned right here.
        """
        keys, args = self.device_offline_call(user_id, device_id)
        return outcome(user_id, await self._script(keys=keys, args=args))

    async def seed(
        self, user_id: str, status: Status, last_active_ago: int, window_ms: int | None = None
    ) -> PresenceState:
        """After Redis lost its data: re-declare a user last seen online/away.

        Only if Redis knows nothing about the user (a heartbeat since, or another
        process's seed, wins). The user keeps ``status`` for ``window_ms`` (default: the
        device TTL, so every tab still open has beaten by then) and then goes offline
        through :meth:`sweep`, which hands the transition to exactly one caller; a
        heartbeat inside the window cancels it, like a reconnect inside the grace.
        """
        window = self._ttl_ms if window_ms is None else window_ms
        keys, args = self.seed_call(user_id, status, last_active_ago, window)
        state, _ = outcome(user_id, await self._script(keys=keys, args=args))
        return state

    async def online_users(self, limit: int) -> list[str]:
        """Up to ``limit`` users online or away (SSCAN: for rare catch-ups, not hot paths)."""
        users: list[str] = []
        for online in self.keys.online():
            async for user_id in self._redis.sscan_iter(online, count=1000):
                users.append(user_id)
                if len(users) >= limit:
                    return users
        return users

    async def sweep(self, limit: int = 500) -> list[PresenceTransition]:
        """Settle users whose deadline passed; each transition goes to one caller only.

        Claiming (moving the users' deadlines forward by a lease) keeps concurrent
        sweepers from doing the same work; exactly-once itself comes from the settle
        step comparing and writing the declared state atomically.
        """
        # One "due" per bucket (one on a single Redis), each a single-slot call.
        found = await asyncio.gather(
            *(
                self._script(keys=[deadlines], args=["due", limit, _CLAIM_LEASE_MS])
                for deadlines in self.keys.deadlines()
            )
        )
        due = [user_id for users in found for user_id in cast("list[str]", users)]
        if not due:
            return []
        if self.keys.clustered:
            replies = await self._settle_each(due)
        else:
            # The "due" call just made sure the script is loaded, so plain EVALSHA is
            # safe (a SCRIPT FLUSH in between only delays these users by one lease).
            async with self._redis.pipeline(transaction=False) as pipe:
                for user_id in due:
                    keys = self._keys(user_id)
                    pipe.evalsha(
                        self._script.sha, len(keys), *keys, "settle", user_id, self._retention_ms
                    )
                replies = await pipe.execute()
        transitions = []
        for user_id, reply in zip(due, replies, strict=True):
            _, transition = outcome(user_id, reply)
            if transition is not None:
                transitions.append(transition)
        return transitions

    async def _settle_each(self, due: list[str]) -> list[Any]:
        """Cluster: the settle calls concurrently (each routed to its bucket's node)."""
        gate = asyncio.Semaphore(_CLUSTER_SETTLE_CONCURRENCY)

        async def settle(user_id: str) -> Any:
            async with gate:
                return await self._script(
                    keys=self._keys(user_id), args=["settle", user_id, self._retention_ms]
                )

        return list(await asyncio.gather(*(settle(user_id) for user_id in due)))

    async def get_statuses(self, user_ids: Sequence[str]) -> list[PresenceState]:
        """Declared state of each user, in order, in one round trip; unknown = offline.

        On a cluster: one round trip per master holding some of them, plus TIME.
        """
        if not user_ids:
            return []
        if self.keys.clustered:
            # A cluster pipeline carries keyed commands only: TIME goes on its own.
            async with self._redis.pipeline(transaction=False) as pipe:
                for user_id in user_ids:
                    pipe.hmget(self.keys.state(user_id), "state", "active")
                server_time, rows = await asyncio.gather(self._redis.time(), pipe.execute())
        else:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.time()
                for user_id in user_ids:
                    pipe.hmget(self.keys.state(user_id), "state", "active")
                server_time, *rows = await pipe.execute()
        seconds, micros = server_time
        now = int(seconds) * 1000 + int(micros) // 1000
        states = []
        for user_id, (state, active) in zip(user_ids, rows, strict=True):
            ago = max(0, now - int(active)) if active is not None else 0
            states.append(PresenceState(user_id, parse_status(state or "offline"), ago))
        return states

    async def count_online(self) -> int:
        """Users online or away: SCARD of a set kept by the scripts, O(1) at any size.

        On a cluster, the sum of the buckets' SCARDs (a fixed number of them).
        """
        if not self.keys.clustered:
            return int(await self._redis.scard(self.keys.online()[0]))
        async with self._redis.pipeline(transaction=False) as pipe:
            for online in self.keys.online():
                pipe.scard(online)
            return sum(int(n) for n in await pipe.execute())

    async def run_sweeper(
        self,
        on_transitions: TransitionSink,
        *,
        interval_seconds: float,
        limit: int = 500,
        stop: asyncio.Event | None = None,
    ) -> None:
        """Sweep until cancelled (or ``stop`` is set), handing transitions to the caller.

        A failed sweep or callback is logged and retried on the next tick: a Redis
        hiccup must not end the only thing that declares users offline. Setting
        ``stop`` ends the loop between sweeps, so no claimed and settled transition is
        lost to a cancellation in the middle of one (graceful shutdown).
        """
        failing = False
        while stop is None or not stop.is_set():
            transitions: list[PresenceTransition] = []
            try:
                transitions = await self.sweep(limit)
            except asyncio.CancelledError:
                raise
            except Exception:
                # Once per outage, not once per tick: Redis may be down for minutes.
                if not failing:
                    log.exception("presence sweep failed; retrying every tick")
                failing = True
            else:
                if failing:
                    log.info("presence sweeping works again")
                failing = False
            if transitions:
                try:
                    await on_transitions(transitions)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("handing over presence transitions failed")
            # A full batch means more are due: go again without waiting.
            if len(transitions) < limit:
                if stop is None:
                    await asyncio.sleep(interval_seconds)
                else:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), interval_seconds)


__all__ = [
    "DEFAULT_DEVICE",
    "PresenceEngine",
    "PresenceRefused",
    "PresenceState",
    "PresenceTransition",
    "Status",
    "TransitionSink",
    "outcome",
]
