"""Room WebSockets against a real uvicorn, PostgreSQL and Redis (SPEC §7)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import orjson
import pytest
import redis.asyncio as aioredis
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.conftest import GatewayFactory
from tests.redis_cluster import kill_clients
from tests.servers import Gateway, InProcessGateway, wait_until

GENERAL = "room_city_general"
WELCOME = "room_city_welcome"


class Client:
    """A test WebSocket client that keeps every frame it received."""

    def __init__(self, ws: ClientConnection, user_id: str) -> None:
        self.ws = ws
        self.user_id = user_id
        self.frames: list[dict[str, Any]] = []
        self._seen = 0

    async def send(self, frame: dict[str, Any] | str | bytes) -> None:
        await self.ws.send(
            frame if isinstance(frame, str | bytes) else orjson.dumps(frame).decode()
        )

    async def next(self, event: str | None = None, timeout: float = 10.0) -> dict[str, Any]:
        """The next not-yet-consumed frame (of `event`, skipping others)."""
        async with asyncio.timeout(timeout):
            while True:
                while self._seen < len(self.frames):
                    frame = self.frames[self._seen]
                    self._seen += 1
                    if event is None or frame["event"] == event:
                        return frame
                self.frames.append(orjson.loads(await self.ws.recv()))

    async def until(self, predicate: Any, timeout: float = 10.0) -> dict[str, Any]:
        async with asyncio.timeout(timeout):
            while True:
                frame = await self.next(timeout=timeout)
                if predicate(frame):
                    return frame

    def messages(self) -> list[str]:
        return [f["message"]["id"] for f in self.frames if f["event"] == "room.message"]

    async def roundtrip(self) -> None:
        """Everything this process queued for us before now has arrived."""
        await self.send({"event": "ping"})
        await self.next("pong")


def room_url(gw: Gateway, room_id: str, user_id: str | None, token: str | None = None) -> str:
    token = token if token is not None else (gw.token(user_id) if user_id else "")
    return f"{gw.ws_url}/ws/city/rooms/{room_id}?token={token}"


@asynccontextmanager
async def client(
    gw: Gateway, user_id: str, room_id: str = GENERAL, **kwargs: Any
) -> AsyncIterator[Client]:
    """Connected and joined: the socket's own room.join has arrived."""
    async with connect(room_url(gw, room_id, user_id), compression=None, **kwargs) as ws:
        c = Client(ws, user_id)
        joined = await c.next("room.join")
        assert joined == {"event": "room.join", "room_id": room_id, "user_id": user_id}
        yield c


async def close_code(ws: ClientConnection, timeout: float = 10.0) -> int | None:
    """Read until the server closes; the close code it sent."""
    with pytest.raises(ConnectionClosed) as info:
        async with asyncio.timeout(timeout):
            while True:
                await ws.recv()
    return info.value.rcvd.code if info.value.rcvd else None


async def post_rest(gw: Gateway, user_id: str, body: str, room_id: str = GENERAL) -> str:
    response = await gw.http.post(
        f"/city/rooms/{room_id}/messages", json={"body": body}, headers=gw.auth(user_id)
    )
    assert response.status_code == 201, response.text
    message_id: str = response.json()["id"]
    return message_id


async def online(gw: Gateway, room_id: str = GENERAL) -> tuple[int, int]:
    """members_online of a room from the list and from the room page."""
    rooms = {r["id"]: r for r in (await gw.http.get("/city/rooms")).json()}
    page = (await gw.http.get(f"/city/rooms/{room_id}")).json()
    assert page["room"]["members_online"] == page["members_online"]
    return rooms[room_id]["members_online"], page["members_online"]


# --- tests ----------------------------------------------------------------------------


async def test_join_and_leave_frames(gateway: InProcessGateway) -> None:
    async with client(gateway, "u_ann") as ann:
        async with client(gateway, "u_bob") as bob:
            assert await ann.next() == {
                "event": "room.join",
                "room_id": GENERAL,
                "user_id": "u_bob",
            }
            # A second socket of a user already in the room: acknowledged to itself only.
            async with client(gateway, "u_bob"):
                pass
            await bob.send({"event": "room.leave", "room_id": GENERAL})
            assert await bob.next() == {
                "event": "room.leave",
                "room_id": GENERAL,
                "user_id": "u_bob",
            }
            assert await ann.next() == {
                "event": "room.leave",
                "room_id": GENERAL,
                "user_id": "u_bob",
            }
            # Leaving a room one is not in is an error; the socket stays.
            await bob.send({"event": "room.leave", "room_id": GENERAL})
            assert (await bob.next())["code"] == "not_in_room"
            await bob.send({"event": "room.join", "room_id": GENERAL})
            assert (await bob.next())["event"] == "room.join"
            assert (await ann.next())["user_id"] == "u_bob"
        # Closing the socket is leaving.
        assert await ann.next() == {"event": "room.leave", "room_id": GENERAL, "user_id": "u_bob"}
        await ann.roundtrip()
        # Only the frames above: the second socket of u_bob announced nothing.
        assert [f["event"] for f in ann.frames] == [
            "room.join",
            "room.join",
            "room.leave",
            "room.join",
            "room.leave",
            "pong",
        ]


async def test_ws_message_reaches_sender_and_others_once(gateway: InProcessGateway) -> None:
    async with client(gateway, "u_ann") as ann, client(gateway, "u_bob") as bob:
        await ann.send(
            {
                "event": "room.message.send",
                "room_id": GENERAL,
                "body": "Привіт, місто!",
                "client_msg_id": "c-1",
            }
        )
        for c in (ann, bob):
            frame = await c.next("room.message")
            assert frame["room_id"] == GENERAL
            message = frame["message"]
            assert message["body"] == "Привіт, місто!"
            assert message["author_user_id"] == "u_ann"
            assert message["id"].startswith("m_city_")
            assert set(message) == {
                "id",
                "room_id",
                "author_user_id",
                "author_agent_id",
                "author_matrix_id",
                "body",
                "created_at",
                "edited_at",
                "reply_to",
                "attachment",
                "reactions",
            }
            assert message["reply_to"] is None and message["attachment"] is None
            assert message["edited_at"] is None and message["reactions"] == []
        first = ann.messages()[0]
        # A retry with the same client_msg_id is answered to the sender only.
        await ann.send(
            {"event": "room.message.send", "room_id": GENERAL, "body": "x", "client_msg_id": "c-1"}
        )
        assert (await ann.next("room.message"))["message"]["id"] == first
        await post_rest(gateway, "u_bob", "marker")
        await ann.next("room.message")
        await bob.next("room.message")
        assert len(ann.messages()) == 3 and ann.messages()[:2] == [first, first]
        assert len(bob.messages()) == 2 and bob.messages()[0] == first
        stored = (await gateway.http.get(f"/city/rooms/{GENERAL}")).json()["messages"]
        assert [m["id"] for m in stored] == [first, bob.messages()[1]]


async def test_rest_post_reaches_ws_clients(gateway: InProcessGateway) -> None:
    async with client(gateway, "u_ann") as ann, client(gateway, "u_bob") as bob:
        message_id = await post_rest(gateway, "u_cid", "from REST")
        for c in (ann, bob):
            frame = await c.next("room.message")
            assert frame["message"]["id"] == message_id
            assert frame["message"]["body"] == "from REST"
        # Not delivered to other rooms' sockets.
        await post_rest(gateway, "u_cid", "elsewhere", room_id=WELCOME)
        await post_rest(gateway, "u_cid", "second")
        assert (await ann.next("room.message"))["message"]["body"] == "second"


async def test_one_socket_follows_several_rooms(gateway: InProcessGateway) -> None:
    async with client(gateway, "u_ann") as ann:
        await ann.send({"event": "room.join", "room_id": WELCOME})
        assert await ann.next() == {"event": "room.join", "room_id": WELCOME, "user_id": "u_ann"}
        await ann.send({"event": "room.join", "room_id": "room_city_nope"})
        assert (await ann.next())["code"] == "room_not_found"
        await post_rest(gateway, "u_bob", "in welcome", room_id=WELCOME)
        await post_rest(gateway, "u_bob", "in general")
        got = [(await ann.next("room.message"))["room_id"] for _ in range(2)]
        assert got == [WELCOME, GENERAL]
        # Posting needs the room joined.
        await ann.send({"event": "room.message.send", "room_id": "room_city_builders", "body": "x"})
        assert (await ann.next("error"))["code"] == "not_in_room"
        await ann.send({"event": "room.leave", "room_id": WELCOME})
        await ann.next("room.leave")
        await post_rest(gateway, "u_bob", "welcome again", room_id=WELCOME)
        await post_rest(gateway, "u_bob", "general again")
        assert (await ann.next("room.message"))["message"]["body"] == "general again"
        assert await online(gateway, WELCOME) == (0, 0)
        assert await online(gateway, GENERAL) == (1, 1)


BAD_FRAMES: list[tuple[str | bytes, str]] = [
    ("not json", "invalid_json"),
    (b"\xff\xfe", "invalid_json"),
    ("[1, 2]", "invalid_frame"),
    ('{"room_id": "x"}', "invalid_frame"),
    ('{"event": "room.explode"}', "unknown_event"),
    ('{"event": "room.join", "room_id": 5}', "invalid_frame"),
    ('{"event": "room.join"}', "invalid_frame"),
    ('{"event": "room.message.send", "room_id": "room_city_general"}', "invalid_frame"),
    ('{"event": "room.message.send", "room_id": "room_city_general", "body": 7}', "invalid_frame"),
    (
        '{"event": "room.message.send", "room_id": "room_city_general", "body": "  "}',
        "invalid_body",
    ),
    (
        '{"event": "room.message.send", "room_id": "room_city_general", "body": "x",'
        ' "client_msg_id": ""}',
        "invalid_client_msg_id",
    ),
    ('{"event": "ping", "user_id": "u_mallory"}', "forbidden"),
    (
        '{"event": "room.message.send", "room_id": "room_city_general", "body": "hi",'
        ' "user_id": "u_mallory"}',
        "forbidden",
    ),
]


async def test_bad_frames_get_error_frames(gateway: InProcessGateway) -> None:
    async with client(gateway, "u_ann") as ann:
        for frame, code in BAD_FRAMES:
            await ann.send(frame)
            error = await ann.next()
            assert error["event"] == "error" and error["code"] == code, (frame, error)
            assert set(error) == {"event", "code", "message"} and error["message"]
        # Still connected and served.
        await ann.roundtrip()
        await ann.send({"event": "room.message.send", "room_id": GENERAL, "body": "ok"})
        assert (await ann.next())["message"]["body"] == "ok"
    stored = (await gateway.http.get(f"/city/rooms/{GENERAL}")).json()["messages"]
    assert [m["body"] for m in stored] == ["ok"]


async def test_body_too_long_and_oversized_frames(gateway_factory: GatewayFactory) -> None:
    gw = await gateway_factory(city_message_max_chars=100)
    async with client(gw, "u_ann") as ann:
        await ann.send({"event": "room.message.send", "room_id": GENERAL, "body": "x" * 101})
        assert (await ann.next())["code"] == "body_too_long"
        # The largest frame the server accepts is still answered normally ...
        limit = gw.settings.ws_max_frame_bytes
        assert limit == 64 * 1024
        padding = '{"event":"ping","pad":"' + "p" * (limit - 25) + '"}'
        assert len(padding) == limit
        await ann.send(padding)
        assert await ann.next() == {"event": "pong"}
    # ... one byte more closes with 1009 (message too big).
    async with client(gw, "u_ann") as ann:
        await ann.send("x" * (limit + 1))
        assert await close_code(ann.ws) == 1009


@pytest.mark.parametrize("token", ["", "garbage", "expired"])
async def test_bad_token_closes_4401(gateway: InProcessGateway, token: str) -> None:
    if token == "expired":
        from gateway.core.auth import mint_token

        token = mint_token(gateway.settings.jwt_secret, "u_ann", ttl_seconds=-10)
    async with connect(room_url(gateway, GENERAL, None, token)) as ws:
        assert await close_code(ws) == 4401


async def test_unknown_room_closes_4404(gateway: InProcessGateway) -> None:
    async with connect(room_url(gateway, "room_city_nowhere", "u_ann")) as ws:
        assert await close_code(ws) == 4404


async def test_members_online_counts_distinct_users(gateway: InProcessGateway) -> None:
    assert await online(gateway) == (0, 0)
    async with client(gateway, "u_ann"), client(gateway, "u_ann"), client(gateway, "u_bob"):
        assert await online(gateway) == (2, 2)
        assert await online(gateway, WELCOME) == (0, 0)
        hub = gateway.runtime.realtime
        assert await hub.rooms_of_user("u_ann") == [GENERAL]
    await wait_until(lambda: _online_is(gateway, 0))


async def _online_is(gw: Gateway, expected: int) -> bool:
    return await online(gw) == (expected, expected)


def _slow_socket(port: int) -> socket.socket:
    """A connected socket with tiny buffers, so an unread stream backs up fast."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    return sock


async def test_slow_consumer_is_dropped_with_1013(gateway_factory: GatewayFactory) -> None:
    gw = await gateway_factory(ws_send_queue_frames=8, city_message_max_chars=100_000)
    async with client(gw, "u_fast") as fast:
        slow_ws = await connect(
            room_url(gw, GENERAL, "u_slow"),
            sock=_slow_socket(gw.port),
            compression=None,
            max_queue=1,
        )
        try:
            slow_joined = {"event": "room.join", "room_id": GENERAL, "user_id": "u_slow"}
            await fast.until(lambda f: f == slow_joined)
            # ~60 KB frames: the kernel buffers a few MB before the server's writer for
            # the slow socket blocks; then its queue of 8 frames fills up.
            body = "ż" * 30_000
            for i in range(400):
                message_id = await post_rest(gw, "u_fast", f"{i} {body}")
                await fast.until(lambda f, m=message_id: _is_message(f, m))
                if any(f["event"] == "room.leave" for f in fast.frames):
                    break
            leaves = [f for f in fast.frames if f["event"] == "room.leave"]
            assert leaves == [{"event": "room.leave", "room_id": GENERAL, "user_id": "u_slow"}]
            # The room goes on for everyone else.
            message_id = await post_rest(gw, "u_fast", "after the drop")
            await fast.until(lambda f: _is_message(f, message_id))
            assert await online(gw) == (1, 1)
            # Once the slow client reads, it finds the close frame: 1013 (try again later).
            assert await close_code(slow_ws, timeout=30) == 1013
        finally:
            await slow_ws.close()


def _is_message(frame: dict[str, Any], message_id: str) -> bool:
    return frame["event"] == "room.message" and frame["message"]["id"] == message_id


async def test_fanout_resumes_after_pubsub_connection_dies(
    gateway_factory: GatewayFactory, redis_client: aioredis.Redis
) -> None:
    one = await gateway_factory()
    two = await gateway_factory()
    channels = two.runtime.realtime.fanout.subscriber
    async with client(one, "u_ann") as ann, client(two, "u_bob") as bob:
        await ann.next("room.join")  # u_bob, through Redis
        first = await post_rest(one, "u_ann", "before")
        assert (await bob.next("room.message"))["message"]["id"] == first

        generation = channels.generation
        name = f"{one.settings.city_redis_prefix}city-fanout-{channels_process(two)}"
        # One connection, or on a cluster one per master serving a channel.
        assert await kill_clients(redis_client, name) >= 1
        channel = two.runtime.realtime.fanout.channel(GENERAL)
        await wait_until(
            lambda: channels.generation > generation and channels.is_subscribed(channel)
        )
        # Subscribed again: messages from the other process flow once more.
        second = await post_rest(one, "u_ann", "after")
        assert (await bob.next("room.message"))["message"]["id"] == second
        third = await post_rest(two, "u_bob", "back")
        await ann.until(lambda f: _is_message(f, third))
        await bob.until(lambda f: _is_message(f, third))
        assert ann.messages() == bob.messages() == [first, second, third]


def channels_process(gw: InProcessGateway) -> str:
    process_id: str = gw.runtime.realtime.fanout.process_id
    return process_id


async def test_messages_keep_working_without_redis(gateway_factory: GatewayFactory) -> None:
    """Redis unreachable: REST posts commit, local sockets still get frames."""
    gw = await gateway_factory(redis_url="redis://127.0.0.1:1/0")
    async with client(gw, "u_ann") as ann:
        message_id = await post_rest(gw, "u_bob", "no redis")
        assert (await ann.next("room.message"))["message"]["id"] == message_id
        await ann.send({"event": "room.message.send", "room_id": GENERAL, "body": "still"})
        assert (await ann.next("room.message"))["message"]["body"] == "still"
        assert await online(gw) == (1, 1)  # this process's own count
