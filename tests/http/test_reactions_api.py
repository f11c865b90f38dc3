"""Reactions over REST and the room socket (SPEC §13), without the bridge.

PUT twice is one reaction, DELETE takes back only the caller's own, keys are
checked, every message read carries `reactions: [{key, count, me}]` with `me`
relative to the caller, and `room.reaction` frames reach the room's sockets.
"""

from __future__ import annotations

from contextlib import AsyncExitStack
from typing import Any
from urllib.parse import quote

from tests.realtime.test_ws_rooms import GENERAL, client, post_rest
from tests.servers import InProcessGateway


def _url(message_id: str, key: str, room_id: str = GENERAL) -> str:
    return f"/city/rooms/{room_id}/messages/{message_id}/reactions/{quote(key, safe='')}"


def _reactions(message: dict[str, Any]) -> list[dict[str, Any]]:
    reactions: list[dict[str, Any]] = message["reactions"]
    return reactions


async def test_put_twice_is_one_reaction_and_me_is_the_callers(
    gateway: InProcessGateway,
) -> None:
    async with AsyncExitStack() as stack:
        watcher = await stack.enter_async_context(client(gateway, "u_watch"))
        message_id = await post_rest(gateway, "u_author", "react to me")
        alice, bob = gateway.auth("u_alice"), gateway.auth("u_bob")

        first = await gateway.http.put(_url(message_id, "👍"), headers=alice)
        assert first.status_code == 200, first.text
        assert _reactions(first.json()) == [{"key": "👍", "count": 1, "me": True}]
        frame = await watcher.next("room.reaction")
        assert frame == {
            "event": "room.reaction",
            "room_id": GENERAL,
            "message_id": message_id,
            "key": "👍",
            "count": 1,
            "user_id": "u_alice",
            "added": True,
        }
        again = await gateway.http.put(_url(message_id, "👍"), headers=alice)
        assert _reactions(again.json()) == [{"key": "👍", "count": 1, "me": True}]

        await gateway.http.put(_url(message_id, "👍"), headers=bob)
        await gateway.http.put(_url(message_id, "🎉 party"), headers=bob)
        frames = [await watcher.next("room.reaction") for _ in range(2)]
        assert [(f["key"], f["count"], f["user_id"]) for f in frames] == [
            ("👍", 2, "u_bob"),
            ("🎉 party", 1, "u_bob"),
        ]
        await watcher.roundtrip()
        # The second PUT of alice announced nothing.
        assert len([f for f in watcher.frames if f["event"] == "room.reaction"]) == 3

        page = (await gateway.http.get(f"/city/rooms/{GENERAL}", headers=alice)).json()
        assert _reactions(page["messages"][0]) == [
            {"key": "👍", "count": 2, "me": True},
            {"key": "🎉 party", "count": 1, "me": False},
        ]
        history = (await gateway.http.get(f"/city/rooms/{GENERAL}/messages", headers=bob)).json()
        assert _reactions(history[0]) == [
            {"key": "👍", "count": 2, "me": True},
            {"key": "🎉 party", "count": 1, "me": True},
        ]
        anonymous = (await gateway.http.get(f"/city/rooms/{GENERAL}")).json()
        assert [r["me"] for r in _reactions(anonymous["messages"][0])] == [False, False]
        bad_token = await gateway.http.get(
            f"/city/rooms/{GENERAL}", headers={"Authorization": "Bearer nope"}
        )
        assert bad_token.status_code == 401

        # Alice takes hers back; bob's stays. Deleting twice changes nothing.
        gone = await gateway.http.delete(_url(message_id, "👍"), headers=alice)
        assert gone.status_code == 200
        assert _reactions(gone.json())[0] == {"key": "👍", "count": 1, "me": False}
        frame = await watcher.next("room.reaction")
        assert (frame["key"], frame["count"], frame["added"]) == ("👍", 1, False)
        twice = await gateway.http.delete(_url(message_id, "👍"), headers=alice)
        assert _reactions(twice.json())[0]["count"] == 1


async def test_keys_and_targets_are_checked(gateway: InProcessGateway) -> None:
    message_id = await post_rest(gateway, "u_author", "hi")
    auth = gateway.auth("u_alice")
    for key in ["x" * 65, "a\x07b", "\t", " "]:
        resp = await gateway.http.put(_url(message_id, key), headers=auth)
        assert resp.status_code == 422, (key, resp.text)
        assert resp.json()["code"] == "invalid_reaction_key"
    ok = await gateway.http.put(_url(message_id, "👨‍👩‍👧‍👦"), headers=auth)
    assert ok.status_code == 200
    ok = await gateway.http.put(_url(message_id, "a/b"), headers=auth)
    assert ok.status_code == 200
    assert [r["key"] for r in _reactions(ok.json())] == ["👨‍👩‍👧‍👦", "a/b"]
    resp = await gateway.http.put(_url("m_city_nope", "👍"), headers=auth)
    assert (resp.status_code, resp.json()["code"]) == (404, "message_not_found")
    resp = await gateway.http.put(_url(message_id, "👍", "room_city_welcome"), headers=auth)
    assert (resp.status_code, resp.json()["code"]) == (404, "message_not_found")
    resp = await gateway.http.delete(_url(message_id, "👍", "room_city_nowhere"), headers=auth)
    assert (resp.status_code, resp.json()["code"]) == (404, "room_not_found")
    assert (await gateway.http.put(_url(message_id, "👍"))).status_code == 401


async def test_a_deleted_message_takes_its_reactions(gateway: InProcessGateway) -> None:
    message_id = await post_rest(gateway, "u_author", "short-lived")
    await gateway.http.put(_url(message_id, "👍"), headers=gateway.auth("u_alice"))
    resp = await gateway.http.delete(
        f"/city/rooms/{GENERAL}/messages/{message_id}", headers=gateway.auth("u_author")
    )
    assert resp.status_code == 204
    resp = await gateway.http.put(_url(message_id, "👍"), headers=gateway.auth("u_alice"))
    assert resp.status_code == 404
