"""The appservice API as Synapse (or an impostor) calls it: auth, resends, garbage."""

from __future__ import annotations

import secrets
from typing import Any
from urllib.parse import quote

import asyncpg
import httpx

from bridge import retention
from tests.bridge.conftest import BridgeEnv, PortGateway

TXN = "/_matrix/app/v1/transactions/{}"


def _hs(env: BridgeEnv) -> dict[str, str]:
    return {"Authorization": f"Bearer {env.hs.hs_token}"}


def _message(room_id: str, sender: str, body: str, **extra: Any) -> dict[str, Any]:
    return {
        "event_id": f"${secrets.token_urlsafe(16)}",
        "type": "m.room.message",
        "room_id": room_id,
        "sender": sender,
        "origin_server_ts": 1,
        "content": {"msgtype": "m.text", "body": body, **extra},
    }


async def _general(gw: PortGateway) -> str:
    room = (await gw.http.get("/city/rooms/room_city_general")).json()["room"]
    matrix_room_id: str = room["matrix_room_id"]
    return matrix_room_id


async def test_only_synapse_hs_token_is_accepted(
    bridged: PortGateway, bridge_env: BridgeEnv
) -> None:
    paths = [
        ("PUT", TXN.format("1"), {"events": []}),
        ("PUT", "/transactions/1", {"events": []}),  # legacy path
        ("GET", f"/_matrix/app/v1/users/{bridge_env.user_id('citybot')}", None),
        ("GET", f"/_matrix/app/v1/rooms/{quote(bridge_env.alias('general'))}", None),
        ("POST", "/_matrix/app/v1/ping", {}),
    ]
    for method, path, body in paths:
        none = await bridged.http.request(method, path, json=body)
        assert none.status_code == 401, (path, none.text)
        assert none.json()["errcode"] == "M_UNAUTHORIZED"
        # The as_token is the bridge's own secret, not Synapse's: refused as well.
        wrong = await bridged.http.request(
            method, path, json=body, headers={"Authorization": f"Bearer {bridge_env.hs.as_token}"}
        )
        assert wrong.status_code == 403, (path, wrong.text)
        assert wrong.json()["errcode"] == "M_FORBIDDEN"
        ok = await bridged.http.request(method, path, json=body, headers=_hs(bridge_env))
        assert ok.status_code == 200, (path, ok.text)
    # The legacy query-parameter form of the token.
    legacy = await bridged.http.put(
        TXN.format("2"), params={"access_token": bridge_env.hs.hs_token}, json={"events": []}
    )
    assert legacy.status_code == 200


async def test_resent_and_renumbered_transactions_store_one_message(
    bridged: PortGateway, bridge_env: BridgeEnv, db: asyncpg.Connection
) -> None:
    room_id = await _general(bridged)
    event = _message(room_id, "@mallory:elsewhere.test", "only once")
    for txn in ("5", "5", "1", "99"):  # a resend, then Synapse restarted its counter
        resp = await bridged.http.put(
            TXN.format(txn), json={"events": [event, event]}, headers=_hs(bridge_env)
        )
        assert resp.status_code == 200, resp.text
    rows = await db.fetch(
        "select author_matrix_id, body from city_room_messages where matrix_event_id = $1",
        event["event_id"],
    )
    assert [tuple(r) for r in rows] == [("@mallory:elsewhere.test", "only once")]
    assert await db.fetchval("select count(*) from city_feed_events") == 1
    # The Matrix side's message is never queued back to Matrix.
    assert await db.fetchval("select count(*) from matrix_outbox") == 0


async def test_garbage_never_fails_the_batch(
    bridged: PortGateway, bridge_env: BridgeEnv, db: asyncpg.Connection
) -> None:
    room_id = await _general(bridged)
    good = _message(room_id, "@bob:elsewhere.test", "still arrives")
    garbage: list[Any] = [
        1,
        "event",
        None,
        [],
        {},
        {"event_id": 5},
        {"event_id": "$nosender", "type": "m.room.message", "room_id": room_id},
        {
            "event_id": "$badcontent",
            "type": "m.room.message",
            "room_id": room_id,
            "sender": "@x:y",
            "content": "text",
        },
        _message(room_id, "@x:y", "") | {"event_id": "$empty"},
        _message(room_id, "@x:y", "\x00\x00") | {"event_id": "$nul"},
        {**_message(room_id, "@x:y", "b"), "content": {"msgtype": 7, "body": ["x"]}},
        {
            "event_id": "$edit",
            "type": "m.room.message",
            "room_id": room_id,
            "sender": "@x:y",
            "content": {
                "msgtype": "m.text",
                "body": "* e",
                "m.relates_to": {"rel_type": "m.replace", "event_id": 3},
            },
        },
        {
            "event_id": "$redact",
            "type": "m.room.redaction",
            "room_id": room_id,
            "sender": "@x:y",
            "content": {},
        },
        {
            "event_id": "$state",
            "type": "m.room.topic",
            "room_id": room_id,
            "sender": "@x:y",
            "state_key": "",
            "content": {"topic": "t"},
        },
        {**_message(room_id, "@x:y", "y" * 100_000), "event_id": "$long"},
        good,
    ]
    resp = await bridged.http.put(
        TXN.format(secrets.token_hex(4)), json={"events": garbage}, headers=_hs(bridge_env)
    )
    assert resp.status_code == 200, resp.text
    bodies = [r["body"] for r in await db.fetch("select body from city_room_messages")]
    assert "still arrives" in bodies
    # An over-long body is cut to the city's limit rather than lost.
    long = [b for b in bodies if b.startswith("yyy")]
    assert len(long) == 1 and len(long[0]) == bridged.settings.city_message_max_chars
    assert len(bodies) == 2
    states = dict(await db.fetch("select event_id, state from matrix_inbox"))
    assert states[good["event_id"]] == "done"
    assert all(s in ("done", "dropped") for s in states.values()), states

    for bad_body in (b"not json", b"[1,2]", b'{"events": {"a": 1}}'):
        resp = await bridged.http.put(
            TXN.format("x"),
            content=bad_body,
            headers={**_hs(bridge_env), "Content-Type": "application/json"},
        )
        assert resp.status_code == 400, resp.text
        assert resp.json()["errcode"] in ("M_NOT_JSON", "M_BAD_JSON")


async def test_echoes_of_our_users_are_dropped(
    bridged: PortGateway, bridge_env: BridgeEnv, db: asyncpg.Connection
) -> None:
    room_id = await _general(bridged)
    echoes = [
        _message(room_id, bridge_env.user_id("city_u_1"), "ghost"),
        _message(room_id, bridge_env.user_id("citybot"), "bot"),
        _message(room_id, bridge_env.user_id("secondme"), "second me"),
    ]
    resp = await bridged.http.put(
        TXN.format(secrets.token_hex(4)), json={"events": echoes}, headers=_hs(bridge_env)
    )
    assert resp.status_code == 200
    assert await db.fetchval("select count(*) from city_room_messages") == 0
    rows = await db.fetch("select state, detail from matrix_inbox")
    assert [tuple(r) for r in rows] == [("dropped", "echo")] * 3


async def test_user_and_alias_queries(
    bridged: PortGateway, bridge_env: BridgeEnv, db: asyncpg.Connection
) -> None:
    headers = _hs(bridge_env)
    ghost = bridge_env.user_id(f"city_u_q{secrets.token_hex(3)}")
    resp = await bridged.http.get(f"/_matrix/app/v1/users/{ghost}", headers=headers)
    assert resp.status_code == 404  # never seen by the city: no account for it
    # Seen (the presence mirror keeps a row for every city user who heartbeats).
    await db.execute(
        "insert into matrix_ghosts (matrix_user_id, city_user_id) values ($1, 'x')", ghost
    )
    resp = await bridged.http.get(f"/_matrix/app/v1/users/{ghost}", headers=headers)
    assert resp.status_code == 200
    whoami = httpx.get(
        f"{bridge_env.hs.base_url}/_matrix/client/v3/account/whoami",
        params={"user_id": ghost},
        headers=bridge_env.hs.as_headers,
    )
    assert whoami.json()["user_id"] == ghost  # the query registered it
    for nobody in (
        bridge_env.user_id("city_U1"),  # not our escaping (upper case is `=55`)
        bridge_env.user_id("city_x1"),  # not a city user id
        bridge_env.user_id("alice"),
        "@city_u_1:other.test",
    ):
        resp = await bridged.http.get(f"/_matrix/app/v1/users/{nobody}", headers=headers)
        assert resp.status_code == 404, nobody

    # A city room whose Matrix room does not exist yet: created on the alias query.
    slug = f"q{secrets.token_hex(4)}"
    await db.execute(
        "insert into city_rooms (id, slug, name) values ($1, $2, 'Query room')",
        f"room_city_{slug}",
        slug,
    )
    resp = await bridged.http.get(
        f"/_matrix/app/v1/rooms/{quote(bridge_env.alias(slug))}", headers=headers
    )
    assert resp.status_code == 200
    row = await db.fetchrow(
        "select matrix_room_id, matrix_alias from city_rooms where slug = $1", slug
    )
    assert row["matrix_alias"] == bridge_env.alias(slug) and row["matrix_room_id"]
    for unknown in (bridge_env.alias("nosuchroom"), "#general:city.test", "#city_ab:other.x"):
        resp = await bridged.http.get(f"/_matrix/app/v1/rooms/{quote(unknown)}", headers=headers)
        assert resp.status_code == 404, unknown


async def test_old_processed_events_are_pruned_but_pending_ones_kept(
    bridged: PortGateway, bridge_env: BridgeEnv, db: asyncpg.Connection
) -> None:
    room_id = await _general(bridged)
    events = [_message(room_id, "@old:elsewhere.test", f"old {i}") for i in range(3)]
    resp = await bridged.http.put(
        TXN.format(secrets.token_hex(4)), json={"events": events}, headers=_hs(bridge_env)
    )
    assert resp.status_code == 200
    ours = [e["event_id"] for e in events]
    # Only our events are aged: Synapse keeps pushing the room's own events meanwhile.
    await db.execute(
        "update matrix_inbox set received_at = now() - interval '8 days'"
        " where event_id = any($1::text[])",
        ours,
    )
    await db.execute("update matrix_inbox set state = 'pending' where event_id = $1", ours[0])
    assert await retention.prune_inbox(db) == 2
    left = await db.fetch(
        "select event_id from matrix_inbox where event_id = any($1::text[])", ours
    )
    assert [r["event_id"] for r in left] == [ours[0]]
