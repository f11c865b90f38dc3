"""The one reconnecting pub/sub subscriber (gateway/infra/pubsub.py), against real Redis."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from gateway.infra.backoff import Backoff
from gateway.infra.pubsub import RedisSubscriber
from tests.conftest import REDIS_PREFIX, REDIS_URL
from tests.servers import wait_until


class Inbox:
    def __init__(self) -> None:
        self.messages: list[tuple[str, str]] = []

    def __call__(self, channel: str, payload: str) -> None:
        self.messages.append((channel, payload))

    def payloads(self, channel: str) -> list[str]:
        return [p for c, p in self.messages if c == channel]


@pytest.fixture
def name() -> str:
    return f"{REDIS_PREFIX}pubsub-test-{secrets.token_hex(4)}"


@pytest.fixture
async def subscriber(name: str) -> AsyncIterator[RedisSubscriber]:
    sub = RedisSubscriber(REDIS_URL, name, ping_interval=0.5, backoff=Backoff(0.05, 0.2))
    await sub.start()
    await asyncio.wait_for(sub.connected.wait(), 5)
    yield sub
    await sub.stop()


def channel(tag: str) -> str:
    return f"{REDIS_PREFIX}pubsub:{tag}:{secrets.token_hex(4)}"


async def test_subscribe_dispatches_per_channel(
    subscriber: RedisSubscriber, redis_client: aioredis.Redis
) -> None:
    a, b = channel("a"), channel("b")
    inbox_a, inbox_b = Inbox(), Inbox()
    assert await subscriber.subscribe(a, inbox_a, 5)
    assert await subscriber.subscribe(b, inbox_b, 5)
    assert subscriber.is_subscribed(a) and subscriber.channels == {a, b}

    await redis_client.publish(a, "one")
    await redis_client.publish(b, "two")
    await wait_until(lambda: inbox_a.messages and inbox_b.messages)
    assert inbox_a.messages == [(a, "one")]
    assert inbox_b.messages == [(b, "two")]

    subscriber.unsubscribe(a)
    assert not subscriber.is_subscribed(a)
    await wait_until(lambda: _numsub(redis_client, a), timeout=5)
    await redis_client.publish(a, "after")
    await redis_client.publish(b, "three")
    await wait_until(lambda: len(inbox_b.messages) == 2)
    assert inbox_a.payloads(a) == ["one"]


async def _numsub(redis_client: aioredis.Redis, name: str) -> bool:
    [(_, count)] = await redis_client.pubsub_numsub(name)
    return bool(count == 0)


async def test_unsubscribe_right_after_subscribe_wins(
    subscriber: RedisSubscriber, redis_client: aioredis.Redis
) -> None:
    a = channel("quick")
    inbox = Inbox()
    pending = subscriber.subscribe(a, inbox, 5)
    subscriber.unsubscribe(a)
    assert await pending is False
    await redis_client.publish(a, "nobody")
    await asyncio.sleep(0.2)
    assert inbox.messages == [] and subscriber.channels == set()


async def test_a_failing_handler_does_not_stop_the_loop(
    subscriber: RedisSubscriber, redis_client: aioredis.Redis
) -> None:
    bad, good = channel("bad"), channel("good")
    inbox = Inbox()

    def broken(_channel: str, _payload: str) -> None:
        raise RuntimeError("boom")

    assert await subscriber.subscribe(bad, broken, 5)
    assert await subscriber.subscribe(good, inbox, 5)
    await redis_client.publish(bad, "x")
    await redis_client.publish(good, "y")
    await wait_until(lambda: inbox.messages == [(good, "y")])


async def test_resubscribes_after_client_kill(
    subscriber: RedisSubscriber, redis_client: aioredis.Redis, name: str
) -> None:
    a, b = channel("a"), channel("b")
    inbox = Inbox()
    resubscribed: list[int] = []
    subscriber.on_resubscribed(resubscribed.append)
    assert await subscriber.subscribe(a, inbox, 5)
    assert await subscriber.subscribe(b, inbox, 5)
    generation = subscriber.generation

    ids = [c["id"] for c in await redis_client.client_list() if c.get("name") == name]
    assert len(ids) == 1  # one connection for every channel
    await redis_client.execute_command("CLIENT", "KILL", "ID", ids[0])
    await wait_until(lambda: resubscribed, timeout=10)
    # The callback runs once Redis confirmed every channel again, so what is published
    # from then on arrives.
    assert resubscribed == [generation + 1]
    assert subscriber.is_subscribed(a) and subscriber.is_subscribed(b)
    await redis_client.publish(a, "after-a")
    await redis_client.publish(b, "after-b")
    await wait_until(lambda: len(inbox.messages) == 2)
    assert sorted(inbox.messages) == sorted([(a, "after-a"), (b, "after-b")])


async def test_wait_subscribed_waits_for_the_connection(
    redis_client: aioredis.Redis, name: str
) -> None:
    sub = RedisSubscriber(REDIS_URL, name, backoff=Backoff(0.05, 0.2))
    a = channel("early")
    inbox = Inbox()
    try:
        # Wanted before the subscriber runs: subscribed on its first connection.
        assert await sub.subscribe(a, inbox, 1) is False
        await sub.start()
        await asyncio.wait_for(sub.wait_subscribed(a), 5)
        await redis_client.publish(a, "hello")
        await wait_until(lambda: inbox.messages == [(a, "hello")])
    finally:
        await sub.stop()


async def test_unreachable_redis_then_stop(name: str) -> None:
    sub = RedisSubscriber(
        "redis://127.0.0.1:1/0", name, backoff=Backoff(0.01, 0.05), connect_timeout=0.2
    )
    await sub.start()
    inbox = Inbox()
    assert await sub.subscribe(channel("x"), inbox, 0.2) is False
    await asyncio.sleep(0.2)
    assert not sub.connected.is_set() and sub.generation == 0
    await asyncio.wait_for(sub.stop(), 2)
