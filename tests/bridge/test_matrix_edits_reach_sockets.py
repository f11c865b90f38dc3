"""Edits and redactions from Matrix reach the room's sockets and NATS, like any city change.

Two `city-gateway serve` processes: `a` listens where Synapse pushes transactions
(so it processes the inbox), `b` elsewhere. An Element user (matrix-nio, through the
real Synapse) posts, edits and redacts; a socket on each process gets
`room.message_edited` and `room.message_deleted` exactly once, and JetStream holds
`{prefix}.room_message_edited` / `{prefix}.room_message_deleted` once each.
"""

from __future__ import annotations

from contextlib import AsyncExitStack
from typing import Any

import asyncpg
import nio

from tests.adapters.test_nats_bus import Stream, bus_settings, stream  # noqa: F401
from tests.bridge.conftest import BridgeEnv, MakeElement, two_processes
from tests.realtime.test_ws_rooms import GENERAL, Client, client, post_rest
from tests.servers import wait_until


def _frames(c: Client, event: str) -> list[dict[str, Any]]:
    return [f for f in c.frames if f["event"] == event]


async def _on_nats(js: Stream, subject: str, count: int = 1) -> list[dict[str, Any]]:
    async def there() -> list[dict[str, Any]] | None:
        found = [body for s, body in await js.events() if s == f"{js.prefix}.{subject}"]
        return found if len(found) >= count else None

    result: list[dict[str, Any]] = await wait_until(there, timeout=30, interval=0.2)
    return result


async def test_matrix_edit_and_redaction_reach_sockets_and_nats_once(
    clean: None,
    bridge_env: BridgeEnv,
    element: MakeElement,
    stream: Stream,  # noqa: F811
    db: asyncpg.Connection,
) -> None:
    async with two_processes(bridge_env, **bus_settings(stream)) as (a, b):
        alice = await element()
        general = await alice.join(bridge_env.alias("general"))
        async with AsyncExitStack() as stack:
            on_a = await stack.enter_async_context(client(a, "u_watch_a"))
            on_b = await stack.enter_async_context(client(b, "u_watch_b"))
            sockets = [on_a, on_b]

            original = await alice.send(general, "before the edit")
            posted = await on_b.until(
                lambda f: (
                    f["event"] == "room.message"
                    and f["message"]["author_matrix_id"] == alice.user_id
                )
            )
            message_id = posted["message"]["id"]

            await alice.send(
                general,
                "* after the edit",
                **{
                    "m.new_content": {"msgtype": "m.text", "body": "after the edit"},
                    "m.relates_to": {"rel_type": "m.replace", "event_id": original},
                },
            )
            for c in sockets:
                edited = await c.next("room.message_edited", timeout=30)
                assert edited["room_id"] == GENERAL
                assert edited["message"]["id"] == message_id
                assert edited["message"]["body"] == "after the edit"
                assert edited["message"]["author_matrix_id"] == alice.user_id
            items = (await b.http.get("/city/feed")).json()
            mine = [e for e in items if e["payload"].get("message_id") == message_id]
            assert [e["payload"]["body"] for e in mine] == ["after the edit"]

            redacted = await alice.client.room_redact(general, original, reason="gone")
            assert isinstance(redacted, nio.RoomRedactResponse), redacted
            for c in sockets:
                deleted = await c.next("room.message_deleted", timeout=30)
                assert deleted == {
                    "event": "room.message_deleted",
                    "room_id": GENERAL,
                    "message_id": message_id,
                }
            assert (
                await db.fetchval(
                    "select count(*) from city_room_messages where id = $1", message_id
                )
                == 0
            )

            # A marker through both processes: a duplicate would have arrived before it.
            marker = await post_rest(b, "u_marker", "marker")
            for c in sockets:
                await c.until(
                    lambda f: f["event"] == "room.message" and f["message"]["id"] == marker
                )
                await c.roundtrip()
                assert len(_frames(c, "room.message_edited")) == 1, c.user_id
                assert len(_frames(c, "room.message_deleted")) == 1, c.user_id

        edits = await _on_nats(stream, "room_message_edited")
        deletes = await _on_nats(stream, "room_message_deleted")
        await _on_nats(stream, "room_message", count=2)  # the post and the marker
        assert len(edits) == 1 and len(deletes) == 1, (edits, deletes)
        assert edits[0]["event"] == "room_message_edited"
        assert edits[0]["room_id"] == GENERAL
        assert edits[0]["message"]["id"] == message_id
        assert edits[0]["message"]["body"] == "after the edit"
        assert deletes[0] == {
            "event": "room_message_deleted",
            "room_id": GENERAL,
            "message_id": message_id,
        }
