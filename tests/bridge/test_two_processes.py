"""Two `city-gateway serve` processes drain one outbox: each message once, in order."""

from __future__ import annotations

import re
import secrets

import asyncpg

from tests.bridge.conftest import BridgeEnv, two_processes
from tests.bridge.test_outages import assert_delivered_once_in_order
from tests.servers import GatewayProcess


async def _sent_by(gw: GatewayProcess) -> int:
    text = (await gw.http.get("/metrics")).text
    match = re.search(r"^city_matrix_outbox_sent_total (\S+)$", text, re.MULTILINE)
    return int(float(match.group(1))) if match else 0


async def test_two_processes_drain_one_outbox(
    clean: None, bridge_env: BridgeEnv, db: asyncpg.Connection
) -> None:
    async with two_processes(bridge_env) as (a, b):
        slugs = [f"p{secrets.token_hex(3)}"]
        for slug in slugs:
            resp = await a.http.post(
                "/city/rooms", json={"name": slug, "slug": slug}, headers=a.auth("u_1")
            )
            assert resp.status_code == 201
        rooms = ["room_city_general", "room_city_welcome", "room_city_builders"]
        rooms += [f"room_city_{s}" for s in slugs]
        posted: dict[str, list[str]] = {r: [] for r in rooms}

        async def post_all(gw: GatewayProcess, offset: int) -> None:
            # Each room's messages go through one process at a time, so the
            # posting order per room is well defined while both processes send.
            for i in range(offset, 60, 2):
                room = rooms[(i // 2) % len(rooms)]
                resp = await gw.http.post(
                    f"/city/rooms/{room}/messages",
                    json={"body": f"two processes {i}"},
                    headers=gw.auth(f"u_{i % 2}", f"User {i % 2}"),
                )
                assert resp.status_code == 201, resp.text
                posted[room].append(resp.json()["id"])

        # a posts the even messages, then b the odd ones, rooms interleaved.
        await post_all(a, 0)
        await post_all(b, 1)
        await assert_delivered_once_in_order(bridge_env, a, db, posted)
        sent_a, sent_b = await _sent_by(a), await _sent_by(b)
        assert sent_a + sent_b == 60, (sent_a, sent_b)  # no message was sent twice
        assert sent_a > 0 and sent_b > 0, (sent_a, sent_b)  # both did their share


async def test_a_process_dying_mid_send_loses_nothing(
    clean: None, bridge_env: BridgeEnv, db: asyncpg.Connection
) -> None:
    async with two_processes(bridge_env) as (a, b):
        rooms = ["room_city_general", "room_city_welcome"]
        posted: dict[str, list[str]] = {r: [] for r in rooms}
        for i in range(40):
            room = rooms[i % 2]
            resp = await b.http.post(
                f"/city/rooms/{room}/messages",
                json={"body": f"crash {i}"},
                headers=b.auth("u_2"),
            )
            assert resp.status_code == 201
            posted[room].append(resp.json()["id"])
            if i == 20:
                b.kill()  # SIGKILL: open transactions roll back, locks are released
                break
        for i in range(21, 40):
            room = rooms[i % 2]
            resp = await a.http.post(
                f"/city/rooms/{room}/messages",
                json={"body": f"crash {i}"},
                headers=a.auth("u_2"),
            )
            assert resp.status_code == 201
            posted[room].append(resp.json()["id"])
        await assert_delivered_once_in_order(bridge_env, a, db, posted)
