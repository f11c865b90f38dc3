"""The presence WebSocket against a real uvicorn, PostgreSQL and Redis (SPEC §7–8).

Short TTLs and grace (settings) keep expiries to a second or two; every wait is on a
condition or on Redis's clock. The Redis-outage test runs its own private
redis-server, since the shared one serves other test runs.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import orjson
import pytest
import redis.asyncio as aioredis
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.conftest import INTERNAL_TOKEN, GatewayFactory
from tests.servers import Gateway, InProcessGateway, free_port, wait_until

FAST = {
    "presence_ttl_seconds": 1.5,
    "presence_offline_grace_seconds": 0.5,
    "presence_sweep_interval_seconds": 0.05,
}
SERVICE = {"Authorization": f"Bearer {INTERNAL_TOKEN}"}
BEAT_URL = "/internal/matrix/presence/online"


class PresenceClient:
    """A presence socket whose frames are read in the background and kept in order."""

    def __init__(self, ws: ClientConnection, user_id: str) -> None:
        self.ws = ws
        self.user_id = user_id
        self.frames: list[dict[str, Any]] = []
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            async for raw in self.ws:
                self.frames.append(orjson.loads(raw))
        except ConnectionClosed:
            pass

    async def send(self, frame: dict[str, Any] | str | bytes) -> None:
        await self.ws.send(
            frame if isinstance(frame, str | bytes) else orjson.dumps(frame).decode()
        )

    async def beat(self, **fields: Any) -> None:
        await self.send({"event": "presence.heartbeat", "user_id": self.user_id, **fields})

    def updates(self, user_id: str | None = None) -> list[tuple[str, str]]:
        """(user_id, status) of every presence.update so far (of one user if given)."""
        return [
            (f["user_id"], f["status"])
            for f in self.frames
            if f["event"] == "presence.update" and user_id in (None, f["user_id"])
        ]

    def errors(self) -> list[str]:
        return [f["code"] for f in self.frames if f["event"] == "error"]

    async def wait(self, predicate: Callable[[], Any], timeout: float = 10.0) -> None:
        await wait_until(predicate, timeout=timeout)

    async def roundtrip(self) -> None:
        """Everything the server sent before answering this ping has arrived."""
        pongs = sum(f["event"] == "pong" for f in self.frames)
        await self.send({"event": "ping"})
        await wait_until(lambda: sum(f["event"] == "pong" for f in self.frames) > pongs)

    async def close(self) -> None:
        await self.ws.close()
        await self._reader


def presence_url(gw: Gateway, user_id: str | None, token: str | None = None) -> str:
    token = token if token is not None else (gw.token(user_id) if user_id else "")
    return f"{gw.ws_url}/ws/city/presence?token={token}"


@asynccontextmanager
async def presence_client(gw: Gateway, user_id: str) -> AsyncIterator[PresenceClient]:
    async with connect(presence_url(gw, user_id), compression=None) as ws:
        client = PresenceClient(ws, user_id)
        try:
            await client.roundtrip()  # accepted and registered for updates
            yield client
        finally:
            client._reader.cancel()


async def barrier(gw: Gateway, *clients: PresenceClient, marker: str) -> None:
    """A later transition has reached every client: anything before it would have too.

    Updates travel one Redis channel in order, so once `marker` going online has
    arrived, a duplicate of an earlier update would have arrived before it.
    """
    r = await gw.http.post(BEAT_URL, json={"user_id": marker}, headers=SERVICE)
    assert r.status_code == 200, r.text
    for c in clients:
        await c.wait(lambda c=c: (marker, "online") in c.updates())


@pytest.fixture
async def gw(gateway_factory: GatewayFactory) -> InProcessGateway:
    return await gateway_factory(**FAST)


async def server_ms(client: aioredis.Redis) -> int:
    seconds, micros = await client.time()
    return int(seconds) * 1000 + int(micros) // 1000


# --- heartbeats and updates -------------------------------------------------------------


async def test_transitions_reach_every_presence_socket_once(gw: InProcessGateway) -> None:
    async with presence_client(gw, "u_1") as one, presence_client(gw, "u_2") as two:
        await one.beat()
        for c in (one, two):
            await c.wait(lambda c=c: c.updates("u_1") == [("u_1", "online")])
        frame = next(f for f in two.frames if f["event"] == "presence.update")
        assert set(frame) == {"event", "user_id", "status", "last_active_ago"}
        assert isinstance(frame["last_active_ago"], int) and frame["last_active_ago"] >= 0

        # More heartbeats are not transitions: nothing more is sent.
        await one.beat(status="online", last_active_ago=0)
        await one.beat()
        await barrier(gw, one, two, marker="u_marker")
        assert one.updates("u_1") == two.updates("u_1") == [("u_1", "online")]

        await one.beat(status="away")
        await two.wait(lambda: two.updates("u_1")[-1:] == [("u_1", "away")])
        await one.beat(last_active_ago=0)
        await two.wait(lambda: two.updates("u_1")[-1:] == [("u_1", "online")])
        await one.beat(last_active_ago=300_000)  # idle past PRESENCE_AWAY_AFTER_SECONDS
        await two.wait(lambda: two.updates("u_1")[-1:] == [("u_1", "away")])
        assert one.errors() == two.errors() == []


async def test_ping_and_bad_frames_keep_the_socket(gw: InProcessGateway) -> None:
    async with presence_client(gw, "u_me") as me:
        cases: list[tuple[Any, str]] = [
            ("{nope", "invalid_json"),
            ("[1,2]", "invalid_frame"),
            ({"event": "presence.dance"}, "unknown_event"),
            ({"event": "presence.heartbeat", "status": "busy"}, "invalid_frame"),
            ({"event": "presence.heartbeat", "last_active_ago": True}, "invalid_frame"),
            ({"event": "presence.heartbeat", "last_active_ago": -5}, "invalid_frame"),
            ({"event": "presence.heartbeat", "device_id": ""}, "invalid_frame"),
            ({"event": "presence.heartbeat", "user_id": 7}, "invalid_frame"),
            # Heartbeating as someone else: refused, the socket stays.
            ({"event": "presence.heartbeat", "user_id": "u_victim"}, "forbidden"),
        ]
        for frame, code in cases:
            await me.send(frame)
            await me.roundtrip()
            assert me.errors()[-1] == code, frame
        assert len(me.errors()) == len(cases)
        r = await gw.http.get("/city/presence", params={"user_id": "u_victim"})
        assert r.json()["users"][0]["status"] == "offline"
        assert me.updates() == []
        # Still usable: a heartbeat without user_id is the token's user.
        await me.send({"event": "presence.heartbeat"})
        await me.wait(lambda: me.updates() == [("u_me", "online")])
        # A socket carries a bounded number of devices (its own is the first).
        for i in range(16):
            await me.beat(device_id=f"d{i}")
        await me.roundtrip()
        assert me.errors()[len(cases) :] == ["too_many_devices"]


async def test_bad_token_closes_4401(gw: InProcessGateway) -> None:
    for token in ("", "garbage", gw.token("u_1") + "x"):
        async with connect(presence_url(gw, None, token), compression=None) as ws:
            with pytest.raises(ConnectionClosed):
                await ws.recv()
            assert ws.close_code == 4401


# --- devices, grace, expiry ---------------------------------------------------------------


async def test_one_tab_closing_leaves_the_user_online(gw: InProcessGateway) -> None:
    async with presence_client(gw, "u_watch") as watcher:
        async with presence_client(gw, "u_t") as tab1:
            async with presence_client(gw, "u_t") as tab2:  # each socket is a device
                await tab1.beat()
                await watcher.wait(lambda: watcher.updates("u_t") == [("u_t", "online")])
                await tab2.beat(status="away")
                await tab2.roundtrip()  # handled: the second device is recorded
            # tab2 closed: tab1 is still online, nothing to announce.
            await tab1.beat()
            await barrier(gw, watcher, marker="u_m1")
            assert watcher.updates("u_t") == [("u_t", "online")]
        # The last tab closed: offline after the grace, once.
        await watcher.wait(lambda: len(watcher.updates("u_t")) == 2, timeout=5)
        await barrier(gw, watcher, marker="u_m2")
        assert watcher.updates("u_t") == [("u_t", "online"), ("u_t", "offline")]


async def test_reconnect_inside_the_grace_is_not_announced(
    gw: InProcessGateway, redis_client: aioredis.Redis
) -> None:
    async with presence_client(gw, "u_watch") as watcher:
        async with presence_client(gw, "u_r") as tab:
            await tab.beat(device_id="tab-1")
            await watcher.wait(lambda: watcher.updates("u_r") == [("u_r", "online")])
        closed_at = await server_ms(redis_client)
        async with presence_client(gw, "u_r") as tab:  # the page reloaded
            await tab.beat(device_id="tab-1")

            async def well_past_grace() -> bool:
                await tab.beat(device_id="tab-1")
                return await server_ms(redis_client) > closed_at + 500 + 500

            await wait_until(well_past_grace, timeout=5)
            await barrier(gw, watcher, marker="u_m")
            assert watcher.updates("u_r") == [("u_r", "online")]


async def test_explicit_offline_frame_and_heartbeats_stopping(gw: InProcessGateway) -> None:
    async with presence_client(gw, "u_watch") as watcher, presence_client(gw, "u_o") as tab:
        await tab.beat(device_id="d1")
        await watcher.wait(lambda: watcher.updates("u_o") == [("u_o", "online")])
        await tab.beat(device_id="d1", status="offline")
        await watcher.wait(lambda: len(watcher.updates("u_o")) == 2, timeout=5)
        assert watcher.updates("u_o")[-1] == ("u_o", "offline")

        # The socket stays open but stops beating: offline within TTL + 5 s, once.
        await tab.beat()
        await watcher.wait(lambda: len(watcher.updates("u_o")) == 3)
        await watcher.wait(lambda: len(watcher.updates("u_o")) == 4, timeout=1.5 + 5)
        await barrier(gw, watcher, marker="u_m")
        assert [s for _, s in watcher.updates("u_o")] == ["online", "offline", "online", "offline"]


async def test_room_presence_goes_to_the_users_rooms(gw: InProcessGateway) -> None:
    room = "room_city_general"
    url = f"{gw.ws_url}/ws/city/rooms/{room}?token="
    async with (
        connect(url + gw.token("u_room"), compression=None) as member,
        connect(url + gw.token("u_other"), compression=None) as other,
        presence_client(gw, "u_room") as tab,
    ):
        seen: list[dict[str, Any]] = []

        async def read(ws: ClientConnection) -> None:
            async for raw in ws:
                seen.append({"ws": id(ws), **orjson.loads(raw)})

        readers = [asyncio.create_task(read(ws)) for ws in (member, other)]
        try:
            # Both members' own room.join have arrived: they are in the room.
            await wait_until(lambda: sum(f["event"] == "room.join" for f in seen) >= 3)
            await tab.beat()

            def presence_frames(ws: ClientConnection) -> list[dict[str, Any]]:
                return [
                    {k: v for k, v in f.items() if k != "ws"}
                    for f in seen
                    if f["ws"] == id(ws) and f["event"] == "room.presence"
                ]

            expected = {
                "event": "room.presence",
                "room_id": room,
                "user_id": "u_room",
                "status": "online",
            }
            for ws in (member, other):
                await wait_until(lambda ws=ws: presence_frames(ws) == [expected])
        finally:
            for reader in readers:
                reader.cancel()


# --- Redis going away and coming back ----------------------------------------------------


class PrivateRedis:
    """A redis-server of this test's own (the shared one must never be restarted)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    async def start(self) -> None:
        binary = shutil.which("redis-server")
        assert binary, "redis-server is not installed"
        args = ["--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        args += ["--appendonly", "no", "--daemonize", "no"]
        self.proc = subprocess.Popen(
            [binary, *args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = aioredis.from_url(self.url)

        async def answers() -> bool:
            try:
                return bool(await client.ping())
            except Exception:
                return False

        try:
            await wait_until(answers, timeout=10)
        finally:
            await client.aclose()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture
async def private_redis() -> AsyncIterator[PrivateRedis]:
    server = PrivateRedis()
    await server.start()
    yield server
    server.kill()


async def test_redis_restart_mid_test(
    gateway_factory: GatewayFactory, private_redis: PrivateRedis
) -> None:
    gw = await gateway_factory(redis_url=private_redis.url, **FAST)

    async def beat(user_id: str) -> httpx.Response:
        return await gw.http.post(BEAT_URL, json={"user_id": user_id}, headers=SERVICE)

    async with presence_client(gw, "u_watch") as watcher:
        assert (await beat("u_before")).status_code == 200
        await watcher.wait(lambda: watcher.updates() == [("u_before", "online")])

        private_redis.kill()
        r = await beat("u_during")
        assert (r.status_code, r.json()["code"]) == (503, "presence_unavailable")
        r = await gw.http.get("/city/presence", params={"user_id": "u_before"})
        assert (r.status_code, r.json()["code"]) == (503, "presence_unavailable")
        await watcher.beat()
        await watcher.wait(lambda: watcher.errors() == ["presence_unavailable"])
        # The dashboard gets partial data; room messages do not need Redis.
        r = await gw.http.get("/city/stats")
        assert r.status_code == 200 and r.json()["users_online"] is None
        r = await gw.http.post(
            "/city/rooms/room_city_general/messages",
            json={"body": "still talking"},
            headers=gw.auth("u_during"),
        )
        assert r.status_code == 201, r.text
        assert (await gw.http.get("/readyz")).status_code == 503

        # Redis comes back (empty): presence recovers without restarting the gateway.
        await private_redis.start()

        async def ready() -> bool:
            return (await gw.http.get("/readyz")).status_code == 200

        await wait_until(ready, timeout=15, interval=0.1)
        assert (await beat("u_after")).status_code == 200
        await watcher.wait(lambda: ("u_after", "online") in watcher.updates())
        # The sweeper works again too: u_after stops beating and goes offline, once.
        await watcher.wait(lambda: ("u_after", "offline") in watcher.updates(), timeout=1.5 + 5)
        assert watcher.updates("u_after") == [("u_after", "online"), ("u_after", "offline")]
        await watcher.roundtrip()  # the socket itself stayed up all along
