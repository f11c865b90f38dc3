"""City events on NATS JetStream, against the real nats-server at 127.0.0.1:4222.

Each test uses its own stream and subject prefix, so runs sharing the server (and a
dev stack publishing to `CITY` / `city.>`) never see each other's events.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import socket
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import nats
import orjson
import pytest
from nats.js.errors import NotFoundError

from tests.conftest import GatewayFactory
from tests.servers import InProcessGateway, free_port, wait_until

NATS_URL = "nats://127.0.0.1:4222"
GENERAL = "room_city_general"


class Stream:
    def __init__(self, js: Any, name: str, prefix: str) -> None:
        self.js = js
        self.name = name
        self.prefix = prefix

    async def events(self) -> list[tuple[str, dict[str, Any]]]:
        """Everything stored in the stream so far, in order: (subject, body)."""
        try:
            info = await self.js.stream_info(self.name)
        except NotFoundError:
            return []
        if not info.state.messages:
            return []  # created but empty: there is no sequence 0 to fetch
        out = []
        for seq in range(info.state.first_seq, info.state.last_seq + 1):
            msg = await self.js.get_msg(self.name, seq)
            out.append((msg.subject, orjson.loads(msg.data)))
        return out


@pytest.fixture
async def stream() -> AsyncIterator[Stream]:
    tag = secrets.token_hex(4)
    nc = await nats.connect(NATS_URL, connect_timeout=5)
    js = nc.jetstream()
    s = Stream(js, f"CITY_T{tag}", f"t{tag}.city")
    try:
        yield s
    finally:
        with contextlib.suppress(NotFoundError):
            await js.delete_stream(s.name)
        await nc.close()


def bus_settings(stream: Stream, **extra: Any) -> dict[str, Any]:
    return {
        "nats_url": NATS_URL,
        "nats_stream": stream.name,
        "nats_subject_prefix": stream.prefix,
        **extra,
    }


async def test_city_events_are_published_after_commit(
    gateway_factory: GatewayFactory, stream: Stream
) -> None:
    gw = await gateway_factory(**bus_settings(stream))
    # The stream is created by the gateway when missing; default rooms were announced.
    await wait_until(lambda: gw.runtime.nats.connected, timeout=10)

    posted = await gw.http.post(
        f"/city/rooms/{GENERAL}/messages",
        json={"body": "hello bus"},
        headers=gw.auth("u_bus", "Bus"),
    )
    assert posted.status_code == 201, posted.text
    created = await gw.http.post(
        "/city/rooms", json={"name": "Bus stop", "slug": "bus-stop"}, headers=gw.auth("u_bus")
    )
    assert created.status_code == 201, created.text
    beat = await gw.http.post(
        "/internal/matrix/presence/online",
        json={"user_id": "u_bus"},
        headers=gw.auth("u_bus"),
    )
    assert beat.status_code == 200, beat.text
    # An agent's message is an agent_reply (Second Me posts them this way).
    await gw.runtime.messages.post(GENERAL, _agent("ag_secondme_global"), "agent says hi")

    def subjects(events: list[tuple[str, dict[str, Any]]]) -> list[str]:
        return [s for s, _ in events]

    async def all_there() -> list[tuple[str, dict[str, Any]]] | None:
        events = await stream.events()
        wanted = {"room_message", "room_created", "presence.update", "agent_reply"}
        got = {s.removeprefix(stream.prefix + ".") for s in subjects(events)}
        return events if wanted <= got and _has_room(events, "room_city_bus-stop") else None

    events = await wait_until(all_there, timeout=10)
    by_subject: dict[str, list[dict[str, Any]]] = {}
    for subject, body in events:
        by_subject.setdefault(subject.removeprefix(stream.prefix + "."), []).append(body)

    [message] = by_subject["room_message"]
    assert message["event"] == "room_message"
    assert message["room_id"] == GENERAL and message["source"] == "city"
    assert message["message"]["id"] == posted.json()["id"]
    assert message["message"]["body"] == "hello bus"
    assert message["message"]["author_user_id"] == "u_bus"

    [reply] = by_subject["agent_reply"]
    assert reply["message"]["author_agent_id"] == "ag_secondme_global"

    rooms = {r["room"]["id"] for r in by_subject["room_created"]}
    assert "room_city_bus-stop" in rooms

    [presence] = [p for p in by_subject["presence.update"] if p["user_id"] == "u_bus"]
    assert (presence["previous"], presence["status"]) == ("offline", "online")

    # Posting the same client_msg_id again creates nothing, so publishes nothing.
    await gw.http.post(
        f"/city/rooms/{GENERAL}/messages",
        json={"body": "once", "client_msg_id": "c1"},
        headers=gw.auth("u_bus"),
    )
    await gw.http.post(
        f"/city/rooms/{GENERAL}/messages",
        json={"body": "once", "client_msg_id": "c1"},
        headers=gw.auth("u_bus"),
    )
    bus = gw.runtime.nats
    await wait_until(lambda: bus.queued == 0 and bus._idle.is_set())
    bodies = [b["message"]["body"] for s, b in await stream.events() if s.endswith("room_message")]
    assert bodies == ["hello bus", "once"]


def _agent(agent_id: str) -> Any:
    from gateway.core.messages import Author

    return Author(agent_id=agent_id)


def _has_room(events: list[tuple[str, dict[str, Any]]], room_id: str) -> bool:
    return any(b.get("room", {}).get("id") == room_id for _, b in events)


async def test_existing_stream_is_used_as_is(
    gateway_factory: GatewayFactory, stream: Stream
) -> None:
    # An operator's stream (other retention, say) is not recreated or changed.
    await stream.js.add_stream(name=stream.name, subjects=[f"{stream.prefix}.>"], max_msgs=1000)
    gw = await gateway_factory(**bus_settings(stream))
    posted = await gw.http.post(
        f"/city/rooms/{GENERAL}/messages", json={"body": "x"}, headers=gw.auth("u_1")
    )
    assert posted.status_code == 201

    async def published() -> bool:
        return any(s.endswith(".room_message") for s, _ in await stream.events())

    await wait_until(published, timeout=10)
    info = await stream.js.stream_info(stream.name)
    assert info.config.max_msgs == 1000


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A port that accepts TCP connections and never says anything (a hung NATS)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(100)
    try:
        yield int(sock.getsockname()[1])
    finally:
        sock.close()


async def post_many(gw: InProcessGateway, n: int) -> float:
    started = time.perf_counter()
    for i in range(n):
        response = await gw.http.post(
            f"/city/rooms/{GENERAL}/messages", json={"body": f"m{i}"}, headers=gw.auth("u_1")
        )
        assert response.status_code == 201, response.text
    return time.perf_counter() - started


@pytest.mark.parametrize("where", ["closed port", "silent server"])
async def test_nats_down_never_blocks_the_city_api(
    gateway_factory: GatewayFactory, stream: Stream, silent_server: int, where: str
) -> None:
    port = free_port() if where == "closed port" else silent_server
    gw = await gateway_factory(
        **bus_settings(stream, nats_url=f"nats://127.0.0.1:{port}", nats_queue_max=5)
    )
    bus = gw.runtime.nats
    elapsed = await post_many(gw, 12)
    # A post that waited for NATS would take >= 2 s (connect timeout) or 5 s (ack
    # timeout) each, so >= 24 s here; the bound is loose on purpose (a busy machine).
    assert elapsed < 5.0, elapsed
    assert not bus.connected
    assert bus.queued == 5  # bounded: the 5 newest wait, the oldest were dropped
    assert bus.dropped >= 12 - 5
    metrics = (await gw.http.get("/metrics")).text
    assert "city_nats_dropped_total" in metrics
    # The API itself stayed healthy.
    assert (await gw.http.get("/readyz")).status_code == 200


async def test_events_queued_while_nats_was_unreachable_are_published_once_it_is(
    gateway_factory: GatewayFactory, stream: Stream
) -> None:
    """NATS comes up after the gateway: what was queued goes out, in order."""
    # A proxy port that refuses until we start forwarding to the real server.
    port = free_port()
    gw = await gateway_factory(**bus_settings(stream, nats_url=f"nats://127.0.0.1:{port}"))
    bus = gw.runtime.nats
    for body in ("early 1", "early 2"):
        response = await gw.http.post(
            f"/city/rooms/{GENERAL}/messages", json={"body": body}, headers=gw.auth("u_1")
        )
        assert response.status_code == 201
    assert bus.queued >= 2 and not bus.connected

    async with _forward(port, 4222):
        await wait_until(lambda: bus.connected, timeout=15)

        async def delivered() -> bool:
            bodies = [
                b["message"]["body"]
                for s, b in await stream.events()
                if s.endswith(".room_message")
            ]
            return bodies == ["early 1", "early 2"]

        await wait_until(delivered, timeout=15)
        await bus.aclose()  # before the proxy goes away


@contextlib.asynccontextmanager
async def _forward(listen_port: int, target_port: int) -> AsyncIterator[None]:
    """A TCP proxy 127.0.0.1:listen_port -> 127.0.0.1:target_port."""
    tasks: set[asyncio.Task[None]] = set()

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", target_port)
        for coro in (pipe(reader, up_writer), pipe(up_reader, writer)):
            task = asyncio.create_task(coro)
            tasks.add(task)
            task.add_done_callback(tasks.discard)

    server = await asyncio.start_server(handle, "127.0.0.1", listen_port)
    try:
        yield
    finally:
        server.close()
        for task in list(tasks):
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
