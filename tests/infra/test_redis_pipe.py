"""The pipelined Redis connection used by the heartbeat hot path, against real Redis."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError, NoScriptError, ResponseError

from gateway.infra.redis_pipe import RedisPipe, encode_command, parse_reply
from tests.conftest import REDIS_URL


@pytest.fixture
async def pipe() -> AsyncIterator[RedisPipe]:
    p = RedisPipe(REDIS_URL)
    yield p
    await p.close()


@pytest.fixture
async def key(redis_client: aioredis.Redis) -> AsyncIterator[str]:
    name = f"pipetest:{uuid.uuid4().hex}"
    yield name
    await redis_client.delete(name, name + ":list")


async def test_reply_types(pipe: RedisPipe, key: str) -> None:
    assert await pipe.call("PING") == "PONG"
    assert await pipe.call("SET", key, "ünï 🙂") == "OK"
    assert await pipe.call("GET", key) == "ünï 🙂"
    assert await pipe.call("GET", key + ":missing") is None
    assert await pipe.call("RPUSH", key + ":list", "a", 2, 3.5) == 3
    assert await pipe.call("LRANGE", key + ":list", 0, -1) == ["a", "2", "3.5"]
    script = "return {1, 'two', {3, false}, redis.call('GET', KEYS[1])}"
    assert await pipe.call("EVAL", script, 1, key) == [1, "two", [3, None], "ünï 🙂"]
    with pytest.raises(ResponseError, match="WRONGTYPE"):
        await pipe.call("LPUSH", key, "x")
    assert await pipe.call("PING") == "PONG"  # the connection survived the error


async def test_concurrent_callers_get_their_own_replies(pipe: RedisPipe, key: str) -> None:
    async def echo(i: int) -> str:
        reply: str = await pipe.call("ECHO", f"reply-{i}")
        return reply

    results = await asyncio.gather(*(echo(i) for i in range(2000)))
    assert results == [f"reply-{i}" for i in range(2000)]
    replies = await pipe.call_many([("INCR", key) for _ in range(100)])
    assert replies == list(range(1, 101))


async def test_evalsha_loads_a_missing_script(pipe: RedisPipe) -> None:
    # A script Redis has never seen looks like any script after a Redis restart.
    source = f"return 'loaded {uuid.uuid4().hex}'"
    sha = hashlib.sha1(source.encode()).hexdigest()
    with pytest.raises(NoScriptError):
        await pipe.call("EVALSHA", sha, 0)
    assert await pipe.evalsha(sha, source, [], []) == source[8:-1]
    assert await pipe.call("EVALSHA", sha, 0) == source[8:-1]


async def test_a_cancelled_caller_does_not_shift_replies(pipe: RedisPipe) -> None:
    slow = asyncio.create_task(pipe.call("BLPOP", f"pipetest:{uuid.uuid4().hex}", 0.3))
    fast = asyncio.create_task(pipe.call("ECHO", "after"))
    await asyncio.sleep(0)
    slow.cancel()
    assert await fast == "after"
    assert await pipe.call("ECHO", "later") == "later"


async def test_reconnects_after_the_connection_is_killed(
    pipe: RedisPipe, redis_client: aioredis.Redis
) -> None:
    name = f"pipe-{uuid.uuid4().hex}"
    await pipe.call("CLIENT", "SETNAME", name)
    clients = await redis_client.client_list()
    [ours] = [c for c in clients if c.get("name") == name]
    await redis_client.client_kill_filter(_id=ours["id"])
    for _ in range(100):
        try:
            assert await pipe.call("PING") == "PONG"
            break
        except ConnectionError:
            continue  # the command that met the dead connection fails; the next one works
    else:
        raise AssertionError("never reconnected")


async def test_a_silent_server_is_dropped() -> None:
    """A peer that accepts but never answers: after `stall_seconds` callers get an error."""
    connections = 0

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        await reader.read()  # swallow everything until we are disconnected
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    pipe = RedisPipe(f"redis://127.0.0.1:{port}/0", stall_seconds=0.2)
    try:
        async with asyncio.timeout(5):  # the pipe's own timer ends the wait, not this
            results = await asyncio.gather(
                pipe.call("PING"), pipe.call("ECHO", "x"), return_exceptions=True
            )
        assert all(isinstance(r, ConnectionError) for r in results), results
        assert "stopped answering" in str(results[0])
        with pytest.raises(ConnectionError, match="stopped answering"):
            async with asyncio.timeout(5):
                await pipe.call("PING")  # a fresh connection, equally silent
        assert connections == 2
    finally:
        await pipe.close()
        server.close()
        await server.wait_closed()


async def test_unreachable_redis_fails_fast() -> None:
    from tests.servers import free_port

    pipe = RedisPipe(f"redis://127.0.0.1:{free_port()}/0")
    with pytest.raises(ConnectionError, match="cannot connect"):
        await pipe.call("PING")


def test_encoding_and_partial_replies() -> None:
    assert encode_command(("SET", "k", 5, b"\x00")) == (
        b"*4\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\n5\r\n$1\r\n\x00\r\n"
    )
    with pytest.raises(TypeError):
        encode_command(("SET", "k", None))
    whole = bytearray(b"*2\r\n$3\r\nabc\r\n:42\r\n")
    assert parse_reply(whole, 0) == (["abc", 42], len(whole))
    for cut in range(1, len(whole)):
        assert parse_reply(bytearray(whole[:cut]), 0) is None
