"""The process's pub/sub on a Redis Cluster: sharded channels, one connection per master.

Redis 7 sharded pub/sub: `SPUBLISH channel` reaches only the master (and replicas)
serving the channel's slot, and `SSUBSCRIBE` must be sent to that master; plain
PUBLISH would be copied to every node of the cluster. `ClusterSubscriber` has the
interface of `RedisSubscriber` (gateway.infra.pubsub) and

* keeps one `RedisSubscriber(sharded=True)` per master that serves a wanted channel
  (each with its own reconnection, PING watchdog and re-subscription);
* routes every channel to the master of its slot, from the slot map read with
  `CLUSTER SLOTS` (gateway.infra.redis_cluster_pipe.ClusterPipe);
* re-reads the map every `refresh_interval`, and at once when a node connection
  drops or a node says a channel is not (any more) its own (MOVED, a server-side
  SUNSUBSCRIBE after a slot migration); channels whose master changed (failover,
  resharding) are moved to the new master, and the `on_resubscribed` callbacks run,
  as after a reconnection: what was published meanwhile is lost, and presence
  re-reads what it may have missed.

A room's channel is hash-tagged by room id (gateway.realtime.fanout), so all of a
room's traffic lives on one shard; presence has one channel (one shard).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from gateway.infra.backoff import Backoff
from gateway.infra.pubsub import Handler, RedisSubscriber, Resubscribed, Subscriber
from gateway.infra.redis_cluster_pipe import Address, ClusterPipe
from gateway.infra.tasks import TaskGroup

log = logging.getLogger(__name__)


class ClusterSubscriber:
    """`RedisSubscriber`'s interface over the masters of a Redis Cluster."""

    def __init__(
        self,
        redis_url: str,
        client_name: str,
        *,
        ping_interval: float = 5.0,
        backoff: Backoff | None = None,
        connect_timeout: float | None = None,
        refresh_interval: float = 5.0,
    ) -> None:
        self._url = redis_url
        self._client_name = client_name
        self._node_options: dict[str, Any] = {
            "ping_interval": ping_interval,
            "connect_timeout": connect_timeout,
        }
        self._backoff = backoff
        self._map = ClusterPipe(redis_url, connect_timeout=connect_timeout or 1.0)
        self._refresh_interval = refresh_interval
        self._nodes: dict[Address, RedisSubscriber] = {}
        self._handlers: dict[str, Handler] = {}
        self._timeouts: dict[str, float] = {}
        self._where: dict[str, Address] = {}  # channel -> master it is subscribed on
        self._callbacks: list[Resubscribed] = []
        self._wake = asyncio.Event()
        self._loops = TaskGroup("pubsub.cluster", log)
        # 1 once started; +1 after every re-subscription (a node's, or moved channels).
        self.generation = 0
        self.reroutes = 0  # channels moved to another master (tests, metrics)

    async def start(self) -> None:
        try:
            await self._map.refresh_map()
        except Exception as exc:  # the refresh loop keeps trying
            log.warning("Redis Cluster slot map unavailable: %r", exc)
        self.generation = 1
        self._loops.spawn(self._refresh_loop(), name="pubsub.cluster.refresh")

    async def stop(self) -> None:
        await self._loops.aclose()
        nodes, self._nodes = list(self._nodes.values()), {}
        for node in nodes:
            await node.stop()
        await self._map.close()

    def on_resubscribed(self, callback: Resubscribed) -> None:
        self._callbacks.append(callback)

    @property
    def channels(self) -> set[str]:
        return set(self._handlers)

    def subscribe(self, channel: str, handler: Handler, timeout: float) -> asyncio.Task[bool]:
        self._handlers[channel] = handler
        self._timeouts[channel] = timeout
        owner = self._map.owner(channel)
        if owner is None:  # no slot map yet: subscribed when it comes
            self._wake.set()
            return asyncio.ensure_future(self._wait_bool(channel, timeout))
        self._where[channel] = owner
        node = self._node(owner)
        task = node.subscribe(channel, handler, timeout)
        if node.connected.is_set():
            return task
        # A master this process had no connection to yet: confirmed once it connects.
        return asyncio.ensure_future(self._wait_bool(channel, timeout))

    def unsubscribe(self, channel: str) -> None:
        self._handlers.pop(channel, None)
        self._timeouts.pop(channel, None)
        owner = self._where.pop(channel, None)
        if owner is not None and owner in self._nodes:
            self._nodes[owner].unsubscribe(channel)

    def is_subscribed(self, channel: str) -> bool:
        owner = self._where.get(channel)
        node = self._nodes.get(owner) if owner is not None else None
        return node is not None and node.is_subscribed(channel)

    async def wait_subscribed(self, channel: str) -> None:
        # The channel may move between masters while we wait: look again each time.
        while not self.is_subscribed(channel):
            owner = self._where.get(channel)
            node = self._nodes.get(owner) if owner is not None else None
            if node is None:
                await asyncio.sleep(0.05)
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(node.wait_subscribed(channel), 0.5)

    async def _wait_bool(self, channel: str, timeout: float) -> bool:
        try:
            await asyncio.wait_for(self.wait_subscribed(channel), timeout)
        except TimeoutError:
            return False
        return True

    # --- nodes and routing ----------------------------------------------------------------

    def _node(self, address: Address) -> RedisSubscriber:
        node = self._nodes.get(address)
        if node is None:
            node = RedisSubscriber(
                self._url,
                f"{self._client_name}-{address[1]}",
                backoff=Backoff(0.1, 2.0) if self._backoff is None else self._backoff,
                sharded=True,
                address=address,
                on_trouble=self._wake.set,
                **self._node_options,
            )
            node.on_resubscribed(self._node_resubscribed)
            self._nodes[address] = node
            self._loops.spawn(node.start(), name="pubsub.cluster.node")
        return node

    def _node_resubscribed(self, generation: int) -> None:
        if generation > 1:
            self._resubscribed()

    def _resubscribed(self) -> None:
        self.generation += 1
        for callback in list(self._callbacks):
            try:
                callback(self.generation)
            except Exception:
                log.exception("pub/sub resubscribed callback %r failed", callback)

    async def _refresh_loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._refresh_interval)
            self._wake.clear()
            try:
                await self._map.refresh_map()
            except Exception as exc:
                log.warning("Redis Cluster slot map refresh failed: %r", exc)
                await asyncio.sleep(0.5)
                continue
            moved = self._reroute()
            if moved:
                self.reroutes += moved
                log.info("moved %d pub/sub channels to their new masters", moved)
                self._resubscribed()
            await self._retire_idle_nodes()
            await asyncio.sleep(0.1)  # a burst of troubles costs one refresh

    def _reroute(self) -> int:
        """Subscribe each wanted channel on its master by the map; count those moved."""
        moved = 0
        for channel, handler in list(self._handlers.items()):
            owner = self._map.owner(channel)
            if owner is None:
                continue
            where = self._where.get(channel)
            timeout = self._timeouts.get(channel, 2.0)
            if where != owner:
                if where is not None and where in self._nodes:
                    self._nodes[where].unsubscribe(channel)
                self._where[channel] = owner
                self._node(owner).subscribe(channel, handler, timeout)
                moved += where is not None
            else:
                node = self._node(owner)
                if node.connected.is_set() and not node.is_subscribed(channel):
                    # Dropped by the server (its slot left and came back): ask again.
                    node.subscribe(channel, handler, timeout)
                    moved += 1
        return moved

    async def _retire_idle_nodes(self) -> None:
        masters = set(self._map.masters)
        for address in [a for a, n in self._nodes.items() if a not in masters and not n.channels]:
            node = self._nodes.pop(address)
            with contextlib.suppress(Exception):
                await node.stop()


def make_subscriber(
    redis_url: str, client_name: str, *, cluster: bool, **options: Any
) -> Subscriber:
    """The process's pub/sub: one connection, or one per master of a cluster."""
    if cluster:
        return ClusterSubscriber(redis_url, client_name, **options)
    return RedisSubscriber(redis_url, client_name, **options)
