"""Who is connected to which room, across every process (`members_online`).

Redis layout (every key under `settings.city_redis_prefix`):

    city:ws:procs          ZSET  process id -> lease expiry (ms, Redis server time)
    city:ws:proc:{pid}     SET   "room_id|user_id" held by that process
    city:ws:room:{room}    HASH  user_id -> number of processes holding the user there
    city:ws:user:{user}    HASH  room_id -> the same number, indexed by user
    city:ws:sockets:{user} ZSET  "pid|socket id" of every open socket of the user
                                 (room and presence), for the per-user socket cap

`members_online(room)` is `HLEN city:ws:room:{room}`: O(1) per room, one script
call for a whole page of rooms, independent of how many users are online.

A process records a (room, user) pair when the user's first local socket joins
the room and removes it when the last one leaves; every change goes through one
ordered, pipelined queue so that Redis sees them in the order they happened.
`WS_MEMBER_LEASE_SECONDS` (L) is a promise: a crashed process's users vanish
within L. So the lease written to Redis is 2/3 L and every process ticks every
L/12, renewing its own lease and reaping any process whose lease expired: a
process that dies right after renewing expires 2/3 L later and is reaped at most
L/12 after that (3/4 L in all; the rest is slack for a slow tick). A live process
misses 8 renewals before it loses its lease. Reaping is one atomic script that
pops the dead process's pairs and decrements the counts, so each pair is reaped
exactly once. A process that finds its own lease lost (Redis restarted, or it
was paused longer than the lease) writes its pairs and sockets again.

Sockets per user need no lease of their own: an entry belongs to a process, and
counting a user's sockets drops the entries of processes whose lease expired.

On a Redis Cluster every one of these keys carries the hash tag `{<prefix>ws}`
after the prefix (`<prefix>{<prefix>ws}city:ws:room:...`): the scripts update a
process's set, a room's hash and a user's hash in one atomic step (that is what
makes each pair count once and each reap happen once), so they must share a slot.
Membership therefore lives on one shard; it changes on joins and leaves, not per
message or heartbeat (docs/redis-cluster.md). A cluster pipeline cannot carry
EVALSHA, so there the queue is sent one call at a time, still in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from redis.commands.core import AsyncScript
from redis.exceptions import RedisError

from gateway.infra.redis_clients import hash_tag, is_cluster
from gateway.infra.tasks import TaskGroup
from gateway.realtime import room_members_scripts as scripts

log = logging.getLogger(__name__)

SEP = "|"  # neither room ids nor user ids contain it
_BATCH = 500
# Share of WS_MEMBER_LEASE_SECONDS written as the lease, and ticks (renew + reap) per
# setting: a dead process is gone after lease + one tick = 3/4 of the setting.
_LEASE_SHARE = 2 / 3
_TICKS_PER_LEASE_SETTING = 12
# A user's socket set outlives its last change by this long; each process writes its
# sockets again every quarter of it, so the set never expires under live sockets.
_SOCKETS_TTL_MS = 24 * 3600 * 1000
# A token's display name is kept this long after the user's last room socket opened.
_NAME_TTL_SECONDS = 7 * 24 * 3600


@dataclass(slots=True)
class _Op:
    script: AsyncScript
    keys: list[str]
    args: list[Any]
    future: asyncio.Future[Any] | None


class RoomMembers:
    """Distinct users per room across processes; implements ports.OnlineMembers."""

    def __init__(
        self,
        redis: aioredis.Redis,
        *,
        prefix: str,
        process_id: str,
        lease_seconds: float,
        local_members: Callable[[], list[tuple[str, str]]],
        local_counts: Callable[[list[str]], dict[str, int]],
        on_gone: Callable[[str, str], None],
    ) -> None:
        self._redis = redis
        self._cluster = is_cluster(redis)
        # One slot for every membership key on a cluster (see the module docstring).
        self._prefix = prefix + hash_tag(f"{prefix}ws") if self._cluster else prefix
        self.process_id = process_id
        self._lease_ms = int(lease_seconds * 1000 * _LEASE_SHARE)
        self._interval = lease_seconds / _TICKS_PER_LEASE_SETTING
        self._local_members = local_members
        self._local_counts = local_counts
        self._on_gone = on_gone
        self._procs_key = f"{self._prefix}city:ws:procs"
        self._proc_key = f"{self._prefix}city:ws:proc:{process_id}"
        self._join = redis.register_script(scripts.JOIN)
        self._leave = redis.register_script(scripts.LEAVE)
        self._renew = redis.register_script(scripts.RENEW)
        self._resync = redis.register_script(scripts.RESYNC)
        self._reap = redis.register_script(scripts.REAP)
        self._counts = redis.register_script(scripts.COUNTS)
        self._socket_open = redis.register_script(scripts.SOCKET_OPEN)
        self._socket_readd = redis.register_script(scripts.SOCKET_READD)
        self._socket_close = redis.register_script(scripts.SOCKET_CLOSE)
        # This process's open sockets: member "pid|socket id" -> user id.
        self._sockets: dict[str, str] = {}
        self._sockets_written = time.monotonic()
        self._ops: deque[_Op] = deque()
        self._wakeup = asyncio.Event()
        self._idle = asyncio.Event()
        self._kick = asyncio.Event()
        self._dirty = True  # nothing registered yet
        self._loops = TaskGroup("room_members", log)
        self._failures = 0

    def room_key(self, room_id: str) -> str:
        return f"{self._prefix}city:ws:room:{room_id}"

    def user_key(self, user_id: str) -> str:
        return f"{self._prefix}city:ws:user:{user_id}"

    def sockets_key(self, user_id: str) -> str:
        return f"{self._prefix}city:ws:sockets:{user_id}"

    # --- lifecycle ----------------------------------------------------------------

    async def start(self) -> None:
        self._loops.spawn(self._write_loop(), name="room_members.writer")
        self._loops.spawn(self._lease_loop(), name="room_members.lease")
        # Register before the first socket arrives (best effort: Redis may be down).
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.resync(), 5)

    async def stop(self) -> None:
        """Forget this process's pairs (its sockets are closed by now) and stop."""
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._drain_ops(), 2)
        try:
            await asyncio.wait_for(self._remove_process(self.process_id), 5)
        except Exception as exc:
            log.warning("could not remove room memberships on shutdown: %r", exc)
        await self.detach()

    async def detach(self) -> None:
        """Stop background work and leave the records (as a crashed process would)."""
        await self._loops.aclose()

    # --- changes (called in the order local state changes; never awaited inline) ---

    def join(self, room_id: str, user_id: str) -> asyncio.Future[bool | None]:
        """Record the user's first local socket in a room.

        Resolves to True if no process had the user in the room before, False if
        one did, None if Redis could not tell (unavailable).
        """
        return self._submit(
            self._join,
            [self._procs_key, self._proc_key],
            [self._prefix, self.process_id, room_id + SEP + user_id],
        )

    def leave(self, room_id: str, user_id: str) -> asyncio.Future[bool | None]:
        """Record the user's last local socket leaving; True if they left the room."""
        return self._submit(
            self._leave,
            [self._proc_key, self.room_key(room_id)],
            [self._prefix, room_id + SEP + user_id, user_id],
        )

    def _submit(self, script: AsyncScript, keys: list[str], args: list[Any]) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._ops.append(_Op(script, keys, args, future))
        self._idle.clear()
        self._wakeup.set()
        return future

    def resync(self) -> asyncio.Future[Any]:
        """Replace everything Redis holds for this process with its current members."""
        # The snapshot is taken now: every change enqueued before is part of it, every
        # change enqueued after applies on top of it.
        entries = [room + SEP + user for room, user in self._local_members()]
        return self._submit(
            self._resync,
            [self._procs_key, self._proc_key],
            [self._prefix, self.process_id, self._lease_ms, *entries],
        )

    # --- open sockets per user (room and presence sockets together) ---------------

    async def open_socket(self, user_id: str, limit: int) -> str | None:
        """Count a new socket of the user unless they have `limit` open on all processes.

        Returns the socket's id for `close_socket`, or None when over the limit. When
        Redis cannot tell, the socket is allowed (the cap protects capacity; Redis
        trouble must not lock everyone out) and counted once Redis is back.
        """
        member = f"{self.process_id}{SEP}{secrets.token_hex(6)}"
        added = await self._submit(
            self._socket_open,
            [self._procs_key, self.sockets_key(user_id)],
            [self.process_id, member, limit, _SOCKETS_TTL_MS],
        )
        if added == 0:
            return None
        if added is None:
            self._dirty = True  # write it (and everything else) again on the next tick
        self._sockets[member] = user_id
        return member

    def close_socket(self, socket_id: str) -> None:
        """The socket is closed: stop counting it (queued after its open, not awaited)."""
        user_id = self._sockets.pop(socket_id, None)
        if user_id is not None:
            self._submit(self._socket_close, [self.sockets_key(user_id)], [socket_id])

    def _readd_sockets(self) -> None:
        self._sockets_written = time.monotonic()
        for member, user_id in list(self._sockets.items()):
            self._submit(self._socket_readd, [self.sockets_key(user_id)], [member, _SOCKETS_TTL_MS])

    # --- reads ----------------------------------------------------------------------

    async def counts(self, room_ids: list[str]) -> dict[str, int]:
        result = dict.fromkeys(room_ids, 0)
        # Room ids never contain ","; anything else has no one connected.
        valid = [r for r in room_ids if r and "," not in r]
        if not valid:
            return result
        try:
            # KEYS[1] is not read: it routes the call to the members' slot on a cluster.
            joined = await self._counts(
                keys=[self._procs_key], args=[self.room_key(""), ",".join(valid)]
            )
        except Exception as exc:
            # Redis down: this process's own members are the best answer we have.
            log.warning("members_online from Redis failed, counting local only: %r", exc)
            return self._local_counts(room_ids)
        result.update(zip(valid, map(int, joined.split(",")), strict=True))
        return result

    async def users_in(self, room_id: str) -> list[str]:
        """Users connected to the room on any process (this process's alone without Redis)."""
        try:
            users = await self._redis.hkeys(self.room_key(room_id))
        except Exception as exc:
            log.warning("room members from Redis failed, listing local only: %r", exc)
            return sorted({u for r, u in self._local_members() if r == room_id})
        return sorted(u if isinstance(u, str) else u.decode() for u in users)

    def name_key(self, user_id: str) -> str:
        return f"{self._prefix}city:ws:name:{user_id}"

    async def remember_name(self, user_id: str, name: str) -> None:
        """The display name a user's token carried (for members lists); best effort."""
        try:
            await self._redis.set(self.name_key(user_id), name[:200], ex=_NAME_TTL_SECONDS)
        except Exception as exc:
            log.debug("remembering the name of %s failed: %r", user_id, exc)

    async def display_names(self, user_ids: list[str]) -> dict[str, str]:
        if not user_ids:
            return {}
        try:
            names = await self._redis.mget([self.name_key(u) for u in user_ids])
        except Exception as exc:
            log.warning("display names from Redis failed: %r", exc)
            return {}
        return {u: n for u, n in zip(user_ids, names, strict=True) if isinstance(n, str)}

    async def rooms_of_user(self, user_id: str) -> list[str]:
        """Rooms where the user has a socket on any process."""
        rooms = await self._redis.hkeys(self.user_key(user_id))
        return sorted(r if isinstance(r, str) else r.decode() for r in rooms)

    # --- background -------------------------------------------------------------------

    async def _drain_ops(self) -> None:
        await self._idle.wait()

    async def _write_loop(self) -> None:
        while True:
            if not self._ops:
                self._wakeup.clear()
                self._idle.set()
                await self._wakeup.wait()
            batch = [self._ops.popleft() for _ in range(min(len(self._ops), _BATCH))]
            try:
                results = await self._send(batch)
            except asyncio.CancelledError:
                for op in batch:
                    _resolve(op, None)
                raise
            except Exception as exc:
                self._failed(exc)
                for op in batch:
                    _resolve(op, None)
                continue
            for op, result in zip(batch, results, strict=True):
                if isinstance(result, Exception):
                    self._failed(result)
                    _resolve(op, None)
                elif op.script is self._join and result == -1:
                    self._dirty = True  # our lease was lost: re-register everything now
                    self._kick.set()
                    _resolve(op, None)
                elif op.script in (self._join, self._leave):
                    _resolve(op, result == 1)
                else:
                    _resolve(op, result)

    async def _send(self, batch: list[_Op]) -> list[Any]:
        if self._cluster:
            results: list[Any] = []
            for op in batch:
                try:
                    results.append(await op.script(keys=op.keys, args=op.args))
                except (RedisError, OSError) as exc:
                    results.append(exc)
            return results
        async with self._redis.pipeline(transaction=False) as pipe:
            for op in batch:
                await op.script(keys=op.keys, args=op.args, client=pipe)
            return list(await pipe.execute(raise_on_error=False))

    def _failed(self, exc: BaseException) -> None:
        self._dirty = True
        self._failures += 1
        if self._failures == 1 or self._failures % 100 == 0:
            log.warning("room membership update failed (%d times): %r", self._failures, exc)

    async def _lease_loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._kick.wait(), self._interval)
            self._kick.clear()
            try:
                await self._tick()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._failed(exc)

    async def _tick(self) -> None:
        lapsed = await self._submit(
            self._renew, [self._procs_key], [self.process_id, self._lease_ms]
        )
        if lapsed is None:
            return  # Redis unavailable; try again next tick
        if lapsed == 1 or self._dirty:
            self._dirty = False
            self._readd_sockets()
            if await self.resync() is None:
                self._dirty = True
            elif self._failures:
                log.info("room memberships re-registered after Redis trouble")
                self._failures = 0
        elif time.monotonic() - self._sockets_written > _SOCKETS_TTL_MS / 4000:
            self._readd_sockets()
        await self._reap_expired()

    async def _reap_expired(self) -> None:
        for _ in range(1000):  # bounded: each call pops up to _BATCH pairs
            out = await self._reap(keys=[self._procs_key], args=[self._prefix, "", _BATCH])
            if not out:
                return
            pid, gone = out[0], out[2:]
            if gone:
                log.info("reaped %d room memberships of dead process %s", len(gone), pid)
            self._announce(gone)

    async def _remove_process(self, pid: str) -> None:
        for _ in range(1000):
            out = await self._reap(keys=[self._procs_key], args=[self._prefix, pid, _BATCH])
            self._announce(out[2:])
            if int(out[1]) == 0:
                return

    def _announce(self, gone: list[str]) -> None:
        for entry in gone:
            room_id, _, user_id = entry.partition(SEP)
            try:
                self._on_gone(room_id, user_id)
            except Exception:
                log.exception("announcing a reaped member failed")


def _resolve(op: _Op, value: Any) -> None:
    if op.future is not None and not op.future.done():
        op.future.set_result(value)
