"""The Synapse dev/test stack: registration, config and process handling, for real.

These tests pin the Synapse behaviour the bridge relies on (appservice auth, ghost
registration, masquerading, presence enabled, relaxed rate limits) so that a Synapse
upgrade or a config change that breaks it fails here, not in a bridge test.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import nio
import pytest
import uvicorn
import yaml

from bridge.registration import render_registration
from devstack.synapse import SynapseError, SynapseProcess, free_port, register_user
from gateway.infra.settings import ConfigError, Settings
from tests.servers import wait_until
from tests.synapse_harness import SynapseHarness, matrix_overrides, start_synapse

SERVER = "city.test"


def _settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "city_env": "test",
        "city_jwt_secret": secrets.token_urlsafe(32),
        **matrix_overrides(free_port(), server_name=SERVER),
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)


@pytest.fixture(scope="module")
async def hs(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[SynapseHarness]:
    # The appservice URL points at a port nobody listens on: Synapse must cope.
    async with await start_synapse(
        _settings(), data_dir=tmp_path_factory.mktemp("synapse")
    ) as harness:
        yield harness


@pytest.fixture
async def http(hs: SynapseHarness) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=hs.base_url, timeout=30, trust_env=False) as c:
        yield c


def _ghost(n: int | str) -> str:
    return f"city_u_{n}_{secrets.token_hex(3)}"


async def _register_ghost(hs: SynapseHarness, http: httpx.AsyncClient, localpart: str) -> str:
    resp = await http.post(
        "/_matrix/client/v3/register",
        params={"kind": "user"},
        headers=hs.as_headers,
        json={
            "type": "m.login.application_service",
            "username": localpart,
            "inhibit_login": True,
        },
    )
    assert resp.status_code == 200, resp.text
    return str(resp.json()["user_id"])


# --- registration YAML (no Synapse needed) ---------------------------------------------
def test_registration_parses_with_exclusive_namespaces() -> None:
    settings = _settings(matrix_server_name="daarion.space")
    reg = yaml.safe_load(render_registration(settings))

    assert reg["id"] == "city-gateway"
    assert reg["url"] == settings.matrix_appservice_url
    assert settings.matrix_as_token is not None and settings.matrix_hs_token is not None
    assert reg["as_token"] == settings.matrix_as_token.get_secret_value()
    assert reg["hs_token"] == settings.matrix_hs_token.get_secret_value()
    assert reg["sender_localpart"] == "citybot"
    assert reg["rate_limited"] is False
    assert reg["receive_ephemeral"] is True
    assert "de.sorunome.msc2409.push_ephemeral" not in reg

    users = reg["namespaces"]["users"]
    aliases = reg["namespaces"]["aliases"]
    assert all(ns["exclusive"] is True for ns in users + aliases)

    def claimed(regexes: list[dict[str, Any]], value: str) -> bool:
        # Synapse applies namespace regexes with re.match.
        return any(re.match(ns["regex"], value) for ns in regexes)

    for user in ("@city_u_1:daarion.space", "@citybot:daarion.space", "@secondme:daarion.space"):
        assert claimed(users, user), user
    for user in ("@alice:daarion.space", "@city_u_1:daarionXspace", "@citybotx:daarion.space"):
        assert not claimed(users, user), user
    assert claimed(aliases, "#city_general:daarion.space")
    assert not claimed(aliases, "#general:daarion.space")


def test_registration_requires_tokens_and_server_name() -> None:
    with pytest.raises(ConfigError, match="MATRIX_SERVER_NAME"):
        render_registration(_settings(matrix_server_name=None))
    with pytest.raises(ConfigError, match="MATRIX_AS_TOKEN"):
        render_registration(_settings(matrix_as_token=None))


# --- a running Synapse -------------------------------------------------------------------
async def test_whoami_with_as_token_is_the_bot(hs: SynapseHarness, http: httpx.AsyncClient) -> None:
    resp = await http.get("/_matrix/client/v3/account/whoami", headers=hs.as_headers)
    assert resp.status_code == 200, resp.text
    assert resp.json()["user_id"] == f"@citybot:{SERVER}"


async def test_ghost_registration_and_masquerade(
    hs: SynapseHarness, http: httpx.AsyncClient
) -> None:
    localpart = _ghost(1)
    ghost = await _register_ghost(hs, http, localpart)
    assert ghost == f"@{localpart}:{SERVER}"

    # Registering again says M_USER_IN_USE: the bridge must treat that as success.
    again = await http.post(
        "/_matrix/client/v3/register",
        params={"kind": "user"},
        headers=hs.as_headers,
        json={"type": "m.login.application_service", "username": localpart},
    )
    assert again.status_code == 400 and again.json()["errcode"] == "M_USER_IN_USE"

    resp = await http.put(
        f"/_matrix/client/v3/profile/{ghost}/displayname",
        params={"user_id": ghost},
        headers=hs.as_headers,
        json={"displayname": "Ghost One"},
    )
    assert resp.status_code == 200, resp.text
    profile = await http.get(f"/_matrix/client/v3/profile/{ghost}/displayname")
    assert profile.json()["displayname"] == "Ghost One"

    whoami = await http.get(
        "/_matrix/client/v3/account/whoami", params={"user_id": ghost}, headers=hs.as_headers
    )
    assert whoami.json()["user_id"] == ghost


async def test_normal_user_cannot_take_appservice_names(
    hs: SynapseHarness, http: httpx.AsyncClient
) -> None:
    with pytest.raises(SynapseError):
        await hs.make_user(_ghost("taken"))
    alice = await hs.make_user()
    resp = await http.post(
        "/_matrix/client/v3/createRoom",
        headers={"Authorization": f"Bearer {alice.access_token}"},
        json={"room_alias_name": f"city_{secrets.token_hex(3)}"},
    )
    assert resp.status_code == 400 and resp.json()["errcode"] == "M_EXCLUSIVE", resp.text


async def test_nio_user_creates_room_and_ghost_joins(
    hs: SynapseHarness, http: httpx.AsyncClient
) -> None:
    alice = await hs.make_user()
    ghost = await _register_ghost(hs, http, _ghost(2))

    client = nio.AsyncClient(hs.base_url, alice.user_id)
    try:
        login = await client.login(alice.password)
        assert isinstance(login, nio.LoginResponse), login
        created = await client.room_create(
            visibility=nio.RoomVisibility.public,
            preset=nio.RoomPreset.public_chat,
            name="Harness room",
        )
        assert isinstance(created, nio.RoomCreateResponse), created

        join = await http.post(
            f"/_matrix/client/v3/join/{created.room_id}",
            params={"user_id": ghost},
            headers=hs.as_headers,
            json={},
        )
        assert join.status_code == 200, join.text

        members = await client.joined_members(created.room_id)
        assert isinstance(members, nio.JoinedMembersResponse), members
        assert {m.user_id for m in members.members} == {alice.user_id, ghost}

        # Presence is enabled, and a masquerading appservice can set a ghost's.
        presence = await http.put(
            f"/_matrix/client/v3/presence/{ghost}/status",
            params={"user_id": ghost},
            headers=hs.as_headers,
            json={"presence": "online"},
        )
        assert presence.status_code == 200, presence.text
        seen = await client.get_presence(ghost)
        assert isinstance(seen, nio.PresenceGetResponse), seen
        assert seen.presence == "online"
    finally:
        await client.close()


async def test_rate_limits_are_relaxed_for_tests(
    hs: SynapseHarness, http: httpx.AsyncClient
) -> None:
    # Synapse's defaults allow bursts of 5 logins and 10 room creations.
    bob = await hs.make_user()
    tokens = []
    for _ in range(6):
        resp = await http.post(
            "/_matrix/client/v3/login",
            json={
                "type": "m.login.password",
                "identifier": {"type": "m.id.user", "user": bob.user_id},
                "password": bob.password,
            },
        )
        assert resp.status_code == 200, resp.text
        tokens.append(resp.json()["access_token"])
    for _ in range(11):
        resp = await http.post(
            "/_matrix/client/v3/createRoom",
            headers={"Authorization": f"Bearer {tokens[0]}"},
            json={},
        )
        assert resp.status_code == 200, resp.text


async def test_register_user_is_idempotent(hs: SynapseHarness) -> None:
    name = f"carol_{secrets.token_hex(3)}"
    first = await register_user(hs.base_url, hs.shared_secret, name, "pw-1")
    assert first == f"@{name}:{SERVER}"
    assert await register_user(hs.base_url, hs.shared_secret, name, "pw-1") == first
    with pytest.raises(SynapseError):
        await register_user(hs.base_url, hs.shared_secret, name, "other password")


class _DummyAppservice:
    """Just enough of an appservice to see what Synapse pushes (not the bridge)."""

    def __init__(self, hs_token: str) -> None:
        self.hs_token = hs_token
        self.transactions: list[dict[str, Any]] = []
        self.pings = 0
        self.unauthorised = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        assert scope["type"] == "http"
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = dict(scope["headers"])
        path: str = scope["path"]
        status, answer = 200, b"{}"
        if headers.get(b"authorization") != f"Bearer {self.hs_token}".encode():
            self.unauthorised += 1
            status, answer = 403, b'{"errcode":"M_FORBIDDEN"}'
        elif path == "/_matrix/app/v1/ping":
            self.pings += 1
        elif path.startswith("/_matrix/app/v1/transactions/"):
            self.transactions.append(json.loads(body))
        else:  # user / alias queries: nothing exists on our side
            status, answer = 404, b'{"errcode":"M_NOT_FOUND"}'
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": answer})


async def test_transactions_reach_a_late_appservice_after_ping(
    hs: SynapseHarness, http: httpx.AsyncClient
) -> None:
    # Earlier tests made events while nothing listened on the appservice URL, so
    # Synapse is backing off (2, 4, 8 ... up to 512 s). A ping makes it retry now.
    port = int(hs.settings.matrix_appservice_url.rsplit(":", 1)[1])
    appservice = _DummyAppservice(hs.hs_token)
    server = uvicorn.Server(
        uvicorn.Config(appservice, host="127.0.0.1", port=port, lifespan="off", log_level="warning")
    )
    serving = asyncio.create_task(server.serve())
    try:
        await wait_until(lambda: server.started, timeout=10)

        async def pinged() -> bool:
            # Synapse can answer one ping with M_CONNECTION_FAILED ("AlreadyCalled")
            # when it lands on its own back-off retry; the bridge retries too.
            ping = await http.post(
                "/_matrix/client/v1/appservice/city-gateway/ping",
                headers=hs.as_headers,
                json={"transaction_id": "harness"},
            )
            return ping.status_code == 200

        await wait_until(pinged, timeout=20, interval=0.5)
        assert appservice.pings >= 1

        alice = await hs.make_user()
        ghost = await _register_ghost(hs, http, _ghost(3))
        auth = {"Authorization": f"Bearer {alice.access_token}"}
        room = await http.post(
            "/_matrix/client/v3/createRoom", headers=auth, json={"preset": "public_chat"}
        )
        room_id = room.json()["room_id"]
        join = await http.post(
            f"/_matrix/client/v3/join/{room_id}", params={"user_id": ghost}, headers=hs.as_headers
        )
        assert join.status_code == 200, join.text
        sent = await http.put(
            f"/_matrix/client/v3/rooms/{room_id}/send/m.room.message/t1",
            headers=auth,
            json={"msgtype": "m.text", "body": "hello ghosts"},
        )
        assert sent.status_code == 200, sent.text
        await http.put(
            f"/_matrix/client/v3/presence/{ghost}/status",
            params={"user_id": ghost},
            headers=hs.as_headers,
            json={"presence": "online"},
        )

        def pushed(kind: str, match: Any) -> bool:
            return any(match(item) for txn in appservice.transactions for item in txn.get(kind, []))

        await wait_until(
            lambda: pushed("events", lambda e: e.get("event_id") == sent.json()["event_id"]),
            timeout=20,
        )
        assert appservice.unauthorised == 0
    finally:
        server.should_exit = True
        await serving


# --- process lifecycle -------------------------------------------------------------------
def _port_closed(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def _process_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    # A zombie would still answer; our stop() reaps, so anything alive is a leak.
    return False


async def test_stop_leaves_nothing_and_restart_keeps_state(tmp_path: Path) -> None:
    settings = _settings()
    harness = await start_synapse(settings, data_dir=tmp_path)
    secret = harness.shared_secret
    dave = await harness.make_user("dave", password="dave-pw")
    key = (tmp_path / "signing.key").read_text()
    pid, port = harness.process.pid, harness.process.port
    assert pid is not None
    await harness.stop()
    assert _process_gone(pid)
    assert _port_closed(port)
    await harness.stop()  # a second stop is harmless

    # Same data dir, new port: secrets, key and users survive (what `make dev` does).
    again = SynapseProcess(
        tmp_path,
        server_name=SERVER,
        port=free_port(),
        registration_path=tmp_path / "appservice-registration.yaml",
    )
    async with again:
        assert again.shared_secret == secret
        assert (tmp_path / "signing.key").read_text() == key
        assert await register_user(again.base_url, secret, "dave", "dave-pw") == dave.user_id
        pid = again.pid
    assert pid is not None and _process_gone(pid)

    with pytest.raises(SynapseError, match="server_name"):
        SynapseProcess(
            tmp_path,
            server_name="other.test",
            port=free_port(),
            registration_path=tmp_path / "appservice-registration.yaml",
        ).prepare()
