"""Fixtures for the Matrix bridge: one real Synapse per test session, gateways per test.

Synapse pushes transactions to the gateway port chosen before it starts, so every
gateway a test starts (in this process or as an OS process) listens on that port.
Synapse keeps its rooms and users across tests while the city database is emptied
per test: the bridge then finds `#city_general:S` taken and adopts it, as it would
after restoring an older database.
"""

from __future__ import annotations

import asyncio
import secrets
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import nio
import pytest
import uvicorn

from gateway.app.main import create_app
from gateway.infra.settings import Settings
from tests.conftest import make_settings
from tests.servers import Gateway, GatewayProcess, InProcessGateway, wait_until
from tests.synapse_harness import (
    MatrixUser,
    SynapseHarness,
    free_port,
    matrix_overrides,
    start_synapse,
)

# Fast retries and polls so outage tests finish in seconds (defaults are for production).
FAST = {
    "matrix_retry_max_seconds": 1.0,
    "matrix_outbox_poll_seconds": 0.2,
    "matrix_request_timeout_seconds": 10.0,
}


class BridgeEnv:
    """The session's Synapse plus the settings every bridged gateway uses."""

    def __init__(self, hs: SynapseHarness, gateway_port: int, overrides: dict[str, Any]) -> None:
        self.hs = hs
        self.gateway_port = gateway_port
        self._overrides = overrides

    @property
    def server_name(self) -> str:
        return self.hs.server_name

    def settings(self, **extra: Any) -> Settings:
        values = {
            **self._overrides,
            "matrix_homeserver_url": self.hs.base_url,
            **FAST,
            **extra,
        }
        return make_settings(**values)

    def user_id(self, localpart: str) -> str:
        return f"@{localpart}:{self.server_name}"

    def alias(self, slug: str) -> str:
        return f"#city_{slug}:{self.server_name}"


@pytest.fixture(scope="session")
async def bridge_env(
    tmp_path_factory: pytest.TempPathFactory, database: str
) -> AsyncIterator[BridgeEnv]:
    gateway_port = free_port()
    overrides = matrix_overrides(gateway_port)
    data_dir: Path = tmp_path_factory.mktemp("synapse")
    hs = await start_synapse(make_settings(**overrides), data_dir=data_dir)
    try:
        yield BridgeEnv(hs, gateway_port, overrides)
    finally:
        await hs.stop()


class PortGateway(InProcessGateway):
    """An in-process gateway on a given port (the one Synapse pushes to)."""

    def __init__(self, settings: Settings, port: int) -> None:
        Gateway.__init__(self, settings, port)
        self.app = create_app(settings)
        config = uvicorn.Config(
            self.app,
            host="127.0.0.1",
            port=port,
            log_config=None,
            access_log=False,
            lifespan="on",
            ws_max_size=settings.ws_max_frame_bytes,
        )
        self.server = uvicorn.Server(config)
        self._task = None

    @property
    def bridge(self) -> Any:
        return self.runtime.bridge

    async def started_bridge(self) -> PortGateway:
        await asyncio.wait_for(self.bridge.started.wait(), 30)
        return self


def process_on_port(settings: Settings, port: int) -> GatewayProcess:
    proc = GatewayProcess(settings)
    proc.port = port
    proc.base_url = f"http://127.0.0.1:{port}"
    proc.ws_url = f"ws://127.0.0.1:{port}"
    proc.http = httpx.AsyncClient(base_url=proc.base_url, timeout=30)
    return proc


async def bridge_ready(gw: GatewayProcess) -> bool:
    checks = (await gw.http.get("/readyz")).json()["checks"]
    return bool(checks.get("synapse") == "ok")


@asynccontextmanager
async def two_processes(
    env: BridgeEnv, **extra: Any
) -> AsyncIterator[tuple[GatewayProcess, GatewayProcess]]:
    """Two bridged `city-gateway serve` processes sharing one database, both
    connected to Synapse: the first on the port Synapse pushes transactions to,
    the second elsewhere. Stopped on exit."""
    settings = env.settings(**extra)
    a = process_on_port(settings, env.gateway_port)
    b = process_on_port(settings, free_port())
    await asyncio.gather(a.start(), b.start())
    try:
        await wait_until(lambda: bridge_ready(a), timeout=30, interval=0.2)
        await wait_until(lambda: bridge_ready(b), timeout=30, interval=0.2)
        yield a, b
    finally:
        await asyncio.gather(a.stop(), b.stop())


StartBridged = Callable[..., Awaitable[PortGateway]]


@pytest.fixture
async def start_bridged(clean: None, bridge_env: BridgeEnv) -> AsyncIterator[StartBridged]:
    """Start an in-process bridged gateway on the Synapse-known port, bridge connected."""
    started: list[PortGateway] = []

    async def start(*, wait: bool = True, **extra: Any) -> PortGateway:
        gw = await PortGateway(bridge_env.settings(**extra), bridge_env.gateway_port).start()
        started.append(gw)
        if wait:
            await gw.started_bridge()
        return gw

    yield start
    for gw in reversed(started):
        await gw.stop()


@pytest.fixture
async def bridged(start_bridged: StartBridged) -> PortGateway:
    return await start_bridged()


class Element:
    """A Matrix user driven with matrix-nio, as Element would be."""

    def __init__(self, hs: SynapseHarness, user: MatrixUser) -> None:
        self.user_id = user.user_id
        self.client = nio.AsyncClient(hs.base_url, user.user_id)
        self.client.restore_login(user.user_id, "TESTDEVICE", user.access_token)
        self.timeline: defaultdict[str, list[dict[str, Any]]] = defaultdict(list)
        self._since: str | None = None

    async def close(self) -> None:
        await self.client.close()

    async def join(self, room: str) -> str:
        resp = await self.client.join(room)
        assert isinstance(resp, nio.JoinResponse), resp
        return resp.room_id

    async def send(self, room_id: str, body: str, **extra: Any) -> str:
        content = {"msgtype": "m.text", "body": body, **extra}
        resp = await self.client.room_send(room_id, "m.room.message", content)
        assert isinstance(resp, nio.RoomSendResponse), resp
        return resp.event_id

    async def sync(self, timeout_ms: int = 500) -> None:
        resp = await self.client.sync(timeout=timeout_ms, since=self._since)
        assert isinstance(resp, nio.SyncResponse), resp
        self._since = resp.next_batch
        for room_id, room in resp.rooms.join.items():
            self.timeline[room_id].extend(e.source for e in room.timeline.events)

    def messages(self, room_id: str) -> list[dict[str, Any]]:
        return [e for e in self.timeline[room_id] if e.get("type") == "m.room.message"]

    async def wait_for_message(
        self, room_id: str, predicate: Callable[[dict[str, Any]], bool], timeout: float = 15
    ) -> dict[str, Any]:
        async def found() -> dict[str, Any] | None:
            for event in self.messages(room_id):
                if predicate(event):
                    return event
            await self.sync()
            return None

        result: dict[str, Any] = await wait_until(found, timeout=timeout, interval=0)
        return result


MakeElement = Callable[[], Awaitable[Element]]


@pytest.fixture
async def element(bridge_env: BridgeEnv) -> AsyncIterator[MakeElement]:
    clients: list[Element] = []

    async def make() -> Element:
        user = await bridge_env.hs.make_user(f"el_{secrets.token_hex(4)}")
        client = Element(bridge_env.hs, user)
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.close()


def city_body(event: dict[str, Any]) -> str | None:
    content = event.get("content") or {}
    body = content.get("body")
    return body if isinstance(body, str) else None


async def timeline(env: BridgeEnv, room_id: str) -> list[dict[str, Any]]:
    """Every event of a Matrix room, oldest first (read as the bot)."""
    events: list[dict[str, Any]] = []
    params: dict[str, str] = {"dir": "f", "limit": "1000"}
    async with httpx.AsyncClient(base_url=env.hs.base_url, timeout=30) as http:
        while True:
            resp = await http.get(
                f"/_matrix/client/v3/rooms/{room_id}/messages",
                params=params,
                headers=env.hs.as_headers,
            )
            assert resp.status_code == 200, resp.text
            body = resp.json()
            events.extend(body["chunk"])
            if not body["chunk"] or "end" not in body:
                return events
            params["from"] = body["end"]


async def matrix_history(env: BridgeEnv, room_id: str) -> list[dict[str, Any]]:
    """Every m.room.message in a Matrix room, oldest first (read as the bot)."""
    return [e for e in await timeline(env, room_id) if e.get("type") == "m.room.message"]


def city_ids_in(events: list[dict[str, Any]], wanted: set[str]) -> list[str]:
    """The city message ids carried by `events`, in order, limited to `wanted`."""
    ids = [(e.get("content") or {}).get("city.message_id") for e in events]
    return [i for i in ids if i in wanted]
