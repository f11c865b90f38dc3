"""PATCH / DELETE of a city message by its author (SPEC §13), without the bridge.

Against a real gateway, PostgreSQL and Redis: the author's edit and delete, the 403
for anyone else, 404s, the body rules of posting, the frames on the room socket and
the feed following, and the per-user message budget counting edits.
"""

from __future__ import annotations

from contextlib import AsyncExitStack

import asyncpg

from tests.conftest import SECURITY_DEFAULTS, GatewayFactory
from tests.realtime.test_ws_rooms import GENERAL, client, post_rest
from tests.servers import InProcessGateway


def _url(message_id: str, room_id: str = GENERAL) -> str:
    return f"/city/rooms/{room_id}/messages/{message_id}"


async def test_author_edits_and_deletes_and_sockets_and_feed_follow(
    gateway: InProcessGateway, db: asyncpg.Connection
) -> None:
    async with AsyncExitStack() as stack:
        watcher = await stack.enter_async_context(client(gateway, "u_watch"))
        message_id = await post_rest(gateway, "u_author", "first words")

        resp = await gateway.http.patch(
            _url(message_id), json={"body": "better words"}, headers=gateway.auth("u_author")
        )
        assert resp.status_code == 200, resp.text
        edited = resp.json()
        assert edited["id"] == message_id
        assert edited["body"] == "better words"
        assert edited["edited_at"] is not None
        assert edited["reactions"] == []
        frame = await watcher.next("room.message_edited")
        assert frame["room_id"] == GENERAL
        assert frame["message"]["body"] == "better words"
        page = (await gateway.http.get(f"/city/rooms/{GENERAL}")).json()
        assert [m["body"] for m in page["messages"]] == ["better words"]
        feed = (await gateway.http.get("/city/feed")).json()
        assert feed[0]["payload"]["body"] == "better words"
        assert feed[0]["payload"]["edited"] is True

        resp = await gateway.http.delete(_url(message_id), headers=gateway.auth("u_author"))
        assert resp.status_code == 204, resp.text
        frame = await watcher.next("room.message_deleted")
        assert frame == {
            "event": "room.message_deleted",
            "room_id": GENERAL,
            "message_id": message_id,
        }
    page = (await gateway.http.get(f"/city/rooms/{GENERAL}")).json()
    assert page["messages"] == []
    assert (await gateway.http.get("/city/feed")).json() == []
    # Without the bridge nothing is queued for Matrix.
    assert await db.fetchval("select count(*) from matrix_outbox") == 0
    again = await gateway.http.delete(_url(message_id), headers=gateway.auth("u_author"))
    assert again.status_code == 404
    assert again.json()["code"] == "message_not_found"


async def test_only_the_author_may_change_a_message(gateway: InProcessGateway) -> None:
    message_id = await post_rest(gateway, "u_author", "mine")
    other = gateway.auth("u_other")
    resp = await gateway.http.patch(_url(message_id), json={"body": "yours"}, headers=other)
    assert resp.status_code == 403
    assert resp.json()["code"] == "forbidden"
    resp = await gateway.http.delete(_url(message_id), headers=other)
    assert resp.status_code == 403
    assert resp.json()["code"] == "forbidden"
    # No token at all.
    assert (await gateway.http.delete(_url(message_id))).status_code == 401
    page = (await gateway.http.get(f"/city/rooms/{GENERAL}")).json()
    assert [m["body"] for m in page["messages"]] == ["mine"]
    assert page["messages"][0]["edited_at"] is None


async def test_unknown_room_message_and_bad_bodies(gateway: InProcessGateway) -> None:
    auth = gateway.auth("u_author")
    message_id = await post_rest(gateway, "u_author", "here")
    cases = [
        (_url("m_city_nope"), {"body": "x"}, 404, "message_not_found"),
        (_url(message_id, "room_city_nowhere"), {"body": "x"}, 404, "room_not_found"),
        (_url(message_id, "room_city_welcome"), {"body": "x"}, 404, "message_not_found"),
        (_url(message_id), {"body": "   "}, 422, "invalid_body"),
        (_url(message_id), {"body": "a\x00b"}, 422, "invalid_body"),
        (_url(message_id), {"body": "x" * 4001}, 422, "body_too_long"),
    ]
    for url, body, status, code in cases:
        resp = await gateway.http.patch(url, json=body, headers=auth)
        assert resp.status_code == status, (url, body, resp.text)
        assert resp.json()["code"] == code
    missing = await gateway.http.patch(_url(message_id), json={}, headers=auth)
    assert missing.status_code == 422


async def test_the_same_body_again_changes_nothing(gateway: InProcessGateway) -> None:
    message_id = await post_rest(gateway, "u_author", "steady")
    resp = await gateway.http.patch(
        _url(message_id), json={"body": "steady"}, headers=gateway.auth("u_author")
    )
    assert resp.status_code == 200
    assert resp.json()["edited_at"] is None


async def test_edits_count_against_the_message_limit(gateway_factory: GatewayFactory) -> None:
    gw = await gateway_factory(**SECURITY_DEFAULTS)
    message_id = await post_rest(gw, "u_fast", "v0")
    auth = gw.auth("u_fast")
    statuses = []
    for i in range(40):  # the default burst is 30, the post took one
        resp = await gw.http.patch(_url(message_id), json={"body": f"v{i + 1}"}, headers=auth)
        statuses.append(resp.status_code)
        if resp.status_code == 429:
            assert resp.json()["code"] == "rate_limited"
            assert int(resp.headers["retry-after"]) >= 1
            break
    assert statuses[-1] == 429
    assert set(statuses[:-1]) == {200}
    # The same budget as posting.
    resp = await gw.http.post(
        f"/city/rooms/{GENERAL}/messages", json={"body": "one more"}, headers=auth
    )
    assert resp.status_code == 429
