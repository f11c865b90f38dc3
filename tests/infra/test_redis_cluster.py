"""Cluster plumbing against a real local Redis Cluster (three masters, tests/redis_cluster.py).

These run in every test run, on a cluster of this module's own (slots are moved
between masters here, which the session's shared cluster must not see):

* the heartbeat path's pipelined connection routes by slot, loads scripts on every
  master and follows a slot that moved (MOVED);
* the sharded pub/sub subscriber receives SPUBLISH on channels of every master,
  subscribes again after a node connection dies, and follows a channel whose slot
  moved to another master (Redis drops the subscription with a SUNSUBSCRIBE).
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import AsyncIterator, Iterator

import pytest
import redis.asyncio as aioredis

from gateway.infra.backoff import Backoff
from gateway.infra.pubsub_cluster import ClusterSubscriber
from gateway.infra.redis_clients import redis_client, slot_of
from gateway.infra.redis_cluster_pipe import ClusterPipe
from tests.redis_cluster import LocalCluster, kill_clients
from tests.servers import wait_until


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    local = LocalCluster().start()
    yield local
    local.stop()


@pytest.fixture
async def client(cluster: LocalCluster) -> AsyncIterator[aioredis.Redis]:
    c = redis_client(cluster.url, cluster=True)
    yield c
    await c.aclose()


async def owners(cluster: LocalCluster) -> dict[int, int]:
    """slot -> port of the master serving it."""
    node = aioredis.Redis(port=cluster.ports[0], decode_responses=True)
    try:
        reply = await node.execute_command("CLUSTER", "SLOTS")
    finally:
        await node.aclose()
    found: dict[int, int] = {}
    for start, end, master, *_ in reply:
        for slot in range(int(start), int(end) + 1):
            found[slot] = int(master[1])
    return found


async def move_slot(cluster: LocalCluster, slot: int, to_port: int) -> None:
    """Hand an (empty) slot to another master the way resharding does."""
    nodes = {p: aioredis.Redis(port=p, decode_responses=True) for p in cluster.ports}
    try:
        ids = {p: await n.execute_command("CLUSTER", "MYID") for p, n in nodes.items()}
        src_port = (await owners(cluster))[slot]
        src, dst = nodes[src_port], nodes[to_port]
        await dst.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", ids[src_port])
        await src.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", ids[to_port])
        assert await src.execute_command("CLUSTER", "COUNTKEYSINSLOT", slot) == 0
        for port in [
            to_port,
            src_port,
            *[p for p in cluster.ports if p not in (to_port, src_port)],
        ]:
            await nodes[port].execute_command("CLUSTER", "SETSLOT", slot, "NODE", ids[to_port])

        async def agreed() -> bool:
            return (await owners(cluster))[slot] == to_port

        await wait_until(agreed)
    finally:
        for n in nodes.values():
            await n.aclose()


async def names_per_master(cluster: LocalCluster, stem: str) -> dict[int, str]:
    """One name (key or channel) served by each master."""
    served = await owners(cluster)
    found: dict[int, str] = {}
    while len(found) < len(cluster.ports):
        name = f"{stem}:{secrets.token_hex(4)}"
        found.setdefault(served[slot_of(name)], name)
    return found


# --- the heartbeat path's pipelined connection ---------------------------------------


async def test_pipe_routes_by_slot_loads_scripts_everywhere_and_follows_moved(
    cluster: LocalCluster, client: aioredis.Redis
) -> None:
    pipe = ClusterPipe(cluster.url)
    try:
        keys = await names_per_master(cluster, "pipe")
        for port, key in keys.items():
            assert await pipe.call("SET", key, str(port)) == "OK"
            assert await client.get(key) == str(port)  # on the master that serves it
        assert await pipe.call("PING") == "PONG"  # every master

        # A script no master knows yet: NOSCRIPT, loaded on every master, run.
        source = f"return redis.call('INCR', KEYS[1]) -- {secrets.token_hex(4)}"
        sha = hashlib.sha1(source.encode()).hexdigest()
        for key in keys.values():
            counter = key + ":n"
            assert await pipe.evalsha(sha, source, [counter], []) == 1
        replies = await pipe.call_many([("EVALSHA", sha, 1, k + ":n") for k in keys.values()])
        assert replies == [2, 2, 2]

        # The slot of an unused key moves to another master: MOVED is followed.
        moving = f"moving:{secrets.token_hex(4)}"
        assert await pipe.call("GET", moving) is None
        before = pipe.refreshes
        source_port = (await owners(cluster))[slot_of(moving)]
        target = next(p for p in cluster.ports if p != source_port)
        await move_slot(cluster, slot_of(moving), target)
        assert await pipe.call("SET", moving, "here") == "OK"
        assert pipe.owner(moving) == ("127.0.0.1", target)
        assert pipe.refreshes > before
        direct = aioredis.Redis(port=target, decode_responses=True)
        try:
            assert await direct.get(moving) == "here"
        finally:
            await direct.aclose()
    finally:
        await pipe.close()


# --- sharded pub/sub -------------------------------------------------------------------


class Inbox:
    def __init__(self) -> None:
        self.messages: list[tuple[str, str]] = []

    def __call__(self, channel: str, payload: str) -> None:
        self.messages.append((channel, payload))

    def payloads(self, channel: str) -> list[str]:
        return [p for c, p in self.messages if c == channel]


async def test_sharded_subscriber_spans_masters_reconnects_and_follows_a_moved_slot(
    cluster: LocalCluster, client: aioredis.Redis
) -> None:
    name = f"cluster-sub-{secrets.token_hex(4)}"
    sub = ClusterSubscriber(
        cluster.url, name, ping_interval=0.5, backoff=Backoff(0.05, 0.2), refresh_interval=0.5
    )
    resubscribed: list[int] = []
    sub.on_resubscribed(resubscribed.append)
    await sub.start()
    try:
        channels = await names_per_master(cluster, "room")
        inbox = Inbox()
        for channel in channels.values():
            assert await sub.subscribe(channel, inbox, 5)
        assert sub.channels == set(channels.values())

        async def publish_all(tag: str) -> None:
            for channel in channels.values():
                await client.spublish(channel, tag)
            await wait_until(
                lambda: all(tag in inbox.payloads(c) for c in channels.values()), timeout=10
            )

        await publish_all("one")  # each channel's SPUBLISH reaches its own master only

        # Every per-master connection dies: each comes back and subscribes again.
        generation = sub.generation
        assert await kill_clients(client, name) == len(cluster.ports)
        await wait_until(
            lambda: (
                sub.generation > generation and all(sub.is_subscribed(c) for c in channels.values())
            ),
            timeout=10,
        )
        assert resubscribed
        await publish_all("two")

        # Resharding: one channel's slot goes to another master. Redis drops the
        # subscription there; the subscriber moves it and says it re-subscribed.
        port, moving = next(iter(channels.items()))
        target = next(p for p in cluster.ports if p != port)
        seen = len(resubscribed)
        await move_slot(cluster, slot_of(moving), target)
        await wait_until(lambda: sub.reroutes >= 1 and sub.is_subscribed(moving), timeout=10)
        assert len(resubscribed) > seen
        await publish_all("three")
        for channel in channels.values():
            assert inbox.payloads(channel) == ["one", "two", "three"]

        sub.unsubscribe(moving)
        assert not sub.is_subscribed(moving) and moving not in sub.channels
    finally:
        await sub.stop()
