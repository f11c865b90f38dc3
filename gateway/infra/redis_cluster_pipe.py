"""The pipelined heartbeat connection (gateway.infra.redis_pipe) on a Redis Cluster.

`RedisPipe` speaks RESP to one node. On a cluster, `ClusterPipe` keeps one
`RedisPipe` per master and routes each command by its key's slot, from a slot map
read with `CLUSTER SLOTS`:

* `EVALSHA sha numkeys key ...` goes to the first key's node (every presence
  script call is single-slot: gateway/core/presence/keys.py); other keyed commands
  (`SET`, `SPUBLISH`, ...) to their first argument's node; `SCRIPT ...` and `PING`
  to every master (the script must be loaded on each).
* `MOVED slot host:port` (a slot moved, a failover) updates that slot, asks for a
  full map refresh and retries; `ASK` sends `ASKING` + the command to the target in
  one write (a slot being migrated); `TRYAGAIN`/`CLUSTERDOWN` retry after a moment.
* A lost connection fails the callers in flight with `ConnectionError` (as on one
  Redis: a heartbeat is never sent twice behind the caller's back) and makes the next
  call re-read the slot map, from any node that answers.

Commands of one event-loop iteration still leave in one write per node, so the
cost per heartbeat stays that of `RedisPipe` plus the routing (a CRC16 of the key
and two more coroutine frames); see docs/redis-cluster.md.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from redis.asyncio.connection import parse_url
from redis.exceptions import ConnectionError, NoScriptError, ResponseError

from gateway.infra.redis_clients import slot_of
from gateway.infra.redis_pipe import RedisPipe, Reply

Address = tuple[str, int]
_SLOTS = 16384
_BROADCAST = frozenset({"SCRIPT", "PING"})
_REDIRECTS = 5


class ClusterPipe:
    """`RedisPipe`'s interface over every master of a Redis Cluster."""

    def __init__(
        self, url: str, *, connect_timeout: float = 1.0, stall_seconds: float = 5.0
    ) -> None:
        self._url = url
        options = parse_url(url)
        self._seeds: list[Address] = [
            (str(options.get("host", "localhost")), int(options.get("port", 6379)))
        ]
        self._connect_timeout = connect_timeout
        self._stall = stall_seconds
        self._nodes: dict[Address, RedisPipe] = {}
        self._slots: list[Address] | None = None
        self._masters: list[Address] = []
        self._refreshing: asyncio.Future[None] | None = None
        self._map_stale = False  # re-read the slot map before the next routed command
        self.refreshes = 0  # slot map reads (tests and metrics)

    def submit(self, *args: Any) -> None:
        """Never sends: every cluster command is routed (and redirected) by `call`."""
        return None

    async def call(self, *args: Any) -> Reply:
        command = str(args[0]).upper()
        if command in _BROADCAST:
            await self._ensure_map()
            replies = await asyncio.gather(*(self._node(a).call(*args) for a in self._masters))
            return replies[0]
        key = _key_of(command, args)
        slot = slot_of(key) if key is not None else 0
        for _ in range(_REDIRECTS):
            target = await self._owner(slot)
            try:
                return await self._node(target).call(*args)
            except NoScriptError:
                raise
            except ResponseError as exc:
                kind, _, rest = str(exc).partition(" ")
                if kind == "MOVED":
                    moved_slot, address = _redirect(rest)
                    if self._slots is not None:
                        self._slots[moved_slot] = address
                    self._stale()
                elif kind == "ASK":
                    _, address = _redirect(rest)
                    replies = await self._node(address).call_many([("ASKING",), args])
                    return replies[1]
                elif kind in ("TRYAGAIN", "CLUSTERDOWN"):
                    self._stale()
                    await asyncio.sleep(0.05)
                else:
                    raise
            except ConnectionError:
                self._stale()
                raise
        raise ConnectionError("Redis Cluster kept redirecting")

    async def call_many(self, commands: list[tuple[Any, ...]]) -> list[Reply]:
        """Several commands (each node's share in one write); raises the first error."""
        if not commands:
            return []
        results = await asyncio.gather(
            *(self.call(*args) for args in commands), return_exceptions=True
        )
        for result in results:
            if isinstance(result, BaseException):
                raise result
        return list(results)

    async def evalsha(self, sha: str, source: str, keys: list[str], args: list[Any]) -> Reply:
        try:
            return await self.call("EVALSHA", sha, len(keys), *keys, *args)
        except NoScriptError:
            await self.call("SCRIPT", "LOAD", source)  # on every master
            return await self.call("EVALSHA", sha, len(keys), *keys, *args)

    async def close(self) -> None:
        nodes, self._nodes = list(self._nodes.values()), {}
        for node in nodes:
            await node.close()

    # --- the slot map ------------------------------------------------------------------

    async def refresh_map(self) -> None:
        """Read the slot map now (from any node that answers)."""
        await self._ensure_map(force=True)

    def owner(self, key: str) -> Address | None:
        """The master serving `key` (or shard channel) by the last map read; None before."""
        return None if self._slots is None else self._slots[slot_of(key)]

    @property
    def masters(self) -> list[Address]:
        return list(self._masters)

    def _node(self, address: Address) -> RedisPipe:
        node = self._nodes.get(address)
        if node is None:
            node = self._nodes[address] = RedisPipe(
                self._url,
                connect_timeout=self._connect_timeout,
                stall_seconds=self._stall,
                address=address,
            )
        return node

    def _stale(self) -> None:
        self._map_stale = True

    async def _owner(self, slot: int) -> Address:
        if self._slots is None or self._map_stale:
            await self._ensure_map(force=self._slots is not None)
        assert self._slots is not None
        return self._slots[slot]

    async def _ensure_map(self, force: bool = False) -> None:
        if self._slots is not None and not force:
            return
        # One refresh at a time; concurrent callers wait for it.
        if self._refreshing is None:
            self._refreshing = asyncio.ensure_future(self._refresh())
        refreshing = self._refreshing
        try:
            await asyncio.shield(refreshing)
        finally:
            if refreshing.done() and self._refreshing is refreshing:
                self._refreshing = None

    async def _refresh(self) -> None:
        candidates = list(dict.fromkeys([*self._masters, *self._seeds, *self._nodes]))
        error: Exception | None = None
        for address in candidates:
            try:
                reply = await self._node(address).call("CLUSTER", "SLOTS")
            except (ConnectionError, ResponseError, OSError) as exc:
                error = exc
                continue
            slots: list[Address] = [address] * _SLOTS
            masters: dict[Address, None] = {}
            for start, end, master, *_replicas in reply:
                owner = (str(master[0]) or address[0], int(master[1]))
                masters[owner] = None
                for slot in range(int(start), int(end) + 1):
                    slots[slot] = owner
            self._slots, self._masters = slots, list(masters)
            self._map_stale = False
            self.refreshes += 1
            for gone in [a for a in self._nodes if a not in masters and a not in self._seeds]:
                with contextlib.suppress(Exception):
                    await self._nodes.pop(gone).close()
            return
        raise ConnectionError(f"no Redis Cluster node answered CLUSTER SLOTS: {error!r}")


def _key_of(command: str, args: tuple[Any, ...]) -> str | None:
    if command in ("EVALSHA", "EVAL", "EVALSHA_RO", "EVAL_RO"):
        return str(args[3]) if int(args[2]) > 0 else None
    return str(args[1]) if len(args) > 1 else None


def _redirect(rest: str) -> tuple[int, Address]:
    slot, _, target = rest.partition(" ")
    host, _, port = target.rpartition(":")
    return int(slot), (host, int(port))


AnyPipe = RedisPipe | ClusterPipe


def command_pipe(url: str, *, cluster: bool, **options: Any) -> AnyPipe:
    """The pipelined connection for one Redis or a Redis Cluster."""
    return ClusterPipe(url, **options) if cluster else RedisPipe(url, **options)
