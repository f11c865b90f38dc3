"""Second Me as `@secondme:S`: real Synapse, matrix-nio users, fake Agents Core server."""

from __future__ import annotations

import secrets
from collections.abc import Awaitable
from typing import Any
from urllib.parse import quote

import asyncpg
import httpx
import nio

from bridge.inbox import InboundMessage
from bridge.secondme_bot import TRIGGER_KEY
from gateway.core.secondme.replies import UNAVAILABLE_NOTICE
from tests.bridge.conftest import (
    BridgeEnv,
    Element,
    MakeElement,
    StartBridged,
    two_processes,
)
from tests.fake_agents_core import FakeAgentsCore
from tests.secondme_fixtures import (
    AGENT,
    fake_agents_core,  # noqa: F401 (the `fake` fixture)
    invoke_request,
    secondme_settings,
)
from tests.servers import Gateway, wait_until


async def open_dm(alice: Element, env: BridgeEnv) -> str:
    """Alice starts a DM with Second Me, as Element does, and waits for it to join."""
    secondme = env.user_id("secondme")
    created = await alice.client.room_create(is_direct=True, invite=[secondme])
    assert isinstance(created, nio.RoomCreateResponse), created
    room_id: str = created.room_id

    async def joined() -> bool:
        await alice.sync()
        return any(
            e.get("type") == "m.room.member"
            and e.get("state_key") == secondme
            and e.get("content", {}).get("membership") == "join"
            for e in alice.timeline[room_id]
        )

    await wait_until(joined, timeout=20, interval=0)
    return room_id


def from_secondme(env: BridgeEnv, alice: Element, room_id: str) -> list[dict[str, Any]]:
    return [e for e in alice.messages(room_id) if e["sender"] == env.user_id("secondme")]


async def reply_to(
    env: BridgeEnv, alice: Element, room_id: str, body: str, **extra: Any
) -> tuple[str, dict[str, Any]]:
    """Alice says `body`; returns its event id and Second Me's next message there."""
    before = len(from_secondme(env, alice, room_id))
    event_id = await alice.send(room_id, body, **extra)

    async def replied() -> dict[str, Any] | None:
        await alice.sync()
        said = from_secondme(env, alice, room_id)
        return said[before] if len(said) > before else None

    reply: dict[str, Any] = await wait_until(replied, timeout=20, interval=0)
    return event_id, reply


async def _when_at_least(items: Awaitable[list[Any]], count: int) -> list[Any] | None:
    found = await items
    return found if len(found) >= count else None


async def fetch_event(env: BridgeEnv, alice: Element, room_id: str, event_id: str) -> Any:
    async with httpx.AsyncClient(base_url=env.hs.base_url) as http:
        resp = await http.get(
            f"/_matrix/client/v3/rooms/{quote(room_id)}/event/{quote(event_id)}",
            headers={"Authorization": f"Bearer {alice.client.access_token}"},
        )
    assert resp.status_code == 200, resp.text
    return resp.json()


async def resend(env: BridgeEnv, gw: Gateway, event: dict[str, Any]) -> None:
    """Push `event` again, as Synapse re-sending a transaction (to any process)."""
    resp = await gw.http.put(
        f"/_matrix/app/v1/transactions/resend{secrets.token_hex(4)}",
        json={"events": [event]},
        headers={"Authorization": f"Bearer {env.hs.hs_token}"},
    )
    assert resp.status_code == 200, resp.text


# --- DMs -----------------------------------------------------------------------------


async def test_dm_gets_one_reply_and_is_the_matrix_users_history(
    start_bridged: StartBridged,
    bridge_env: BridgeEnv,
    element: MakeElement,
    fake: FakeAgentsCore,
    db: asyncpg.Connection,
) -> None:
    gw = await start_bridged(**secondme_settings(fake))
    alice = await element()
    dm = await open_dm(alice, bridge_env)

    asked, reply = await reply_to(bridge_env, alice, dm, "hello Second Me")

    assert reply["content"]["body"] == "echo: hello Second Me"
    assert reply["content"]["msgtype"] == "m.notice"
    assert reply["content"][TRIGGER_KEY] == asked
    assert fake.requests[0].body == invoke_request("hello Second Me", alice.user_id)

    _, second = await reply_to(bridge_env, alice, dm, "and again")
    assert second["content"]["body"] == "echo: and again"
    assert fake.requests[1].body["context"]["history"] == [
        {"role": "user", "content": "hello Second Me"},
        {"role": "assistant", "content": "echo: hello Second Me"},
    ]
    service = gw.runtime.secondme
    # The answer is stored right after it is sent to Matrix (where Alice saw it).
    history = await wait_until(
        lambda: _when_at_least(service.get_last_messages(alice.user_id, 10), 4)
    )
    assert [(m.role, m.content) for m in history] == [
        ("user", "hello Second Me"),
        ("assistant", "echo: hello Second Me"),
        ("user", "and again"),
        ("assistant", "echo: and again"),
    ]
    # A DM is not a city message.
    assert await db.fetchval("select count(*) from city_room_messages") == 0

    # The same event once more, straight to the bot's listener: the claim holds.
    bot = gw.runtime.secondme_bot
    await bot.on_message(
        InboundMessage(
            event_id=asked,
            matrix_room_id=dm,
            sender=alice.user_id,
            msgtype="m.text",
            body="hello Second Me",
            content={"msgtype": "m.text", "body": "hello Second Me"},
            city_room_id=None,
            message=None,
        )
    )
    await bot.wait_idle()
    await gw.runtime.secondme_replies.wait_idle()
    assert len(fake.requests) == 2
    await alice.sync()
    assert len(from_secondme(bridge_env, alice, dm)) == 2


async def test_dm_sent_before_second_me_joined_is_answered(
    start_bridged: StartBridged,
    bridge_env: BridgeEnv,
    element: MakeElement,
    fake: FakeAgentsCore,
) -> None:
    await start_bridged(**secondme_settings(fake))
    alice = await element()
    secondme = bridge_env.user_id("secondme")
    # Invite and speak at once: the message predates the join, so Synapse never
    # pushes it; the bot catches up on what the inviter said since the invite.
    created = await alice.client.room_create(is_direct=True, invite=[secondme])
    assert isinstance(created, nio.RoomCreateResponse), created
    await alice.send(created.room_id, "are you awake?")

    reply = await alice.wait_for_message(
        created.room_id, lambda e: e["sender"] == secondme, timeout=20
    )
    assert reply["content"]["body"] == "echo: are you awake?"


async def test_dm_with_agents_core_down_gets_a_notice(
    start_bridged: StartBridged,
    bridge_env: BridgeEnv,
    element: MakeElement,
    fake: FakeAgentsCore,
) -> None:
    gw = await start_bridged(**secondme_settings(fake))
    alice = await element()
    dm = await open_dm(alice, bridge_env)
    fake.set_mode("error500")

    _, reply = await reply_to(bridge_env, alice, dm, "anyone?")

    assert reply["content"]["body"] == UNAVAILABLE_NOTICE
    history = await gw.runtime.secondme.get_last_messages(alice.user_id, 10)
    assert [(m.role, m.content) for m in history] == [("user", "anyone?")]


# --- mentions in bridged rooms ---------------------------------------------------------


async def test_mention_in_a_bridged_room_is_answered_on_both_sides(
    start_bridged: StartBridged,
    bridge_env: BridgeEnv,
    element: MakeElement,
    fake: FakeAgentsCore,
    db: asyncpg.Connection,
) -> None:
    gw = await start_bridged(**secondme_settings(fake))
    alice = await element()
    room = await alice.join(bridge_env.alias("general"))
    secondme = bridge_env.user_id("secondme")
    # #city_general outlives the test (one Synapse per session): take in what earlier
    # tests left there, so that only replies from now on count as new.
    await alice.sync()

    await alice.send(room, "nobody mentioned here")
    asked, reply = await reply_to(bridge_env, alice, room, "@secondme what's new?")

    # In Matrix: sent by @secondme itself (not a ghost), as a bot's notice.
    assert reply["sender"] == secondme
    assert reply["content"]["body"] == "echo: what's new?"
    assert reply["content"]["msgtype"] == "m.notice"
    # In the city: a message by the agent with an agent_reply feed event.
    city_id = reply["content"]["city.message_id"]
    row = await db.fetchrow(
        "select author_agent_id, author_user_id, body from city_room_messages where id = $1",
        city_id,
    )
    assert tuple(row) == (AGENT, None, "echo: what's new?")
    feed = (await gw.http.get("/city/feed")).json()
    assert [e["payload"]["body"] for e in feed if e["kind"] == "agent_reply"] == [
        "echo: what's new?"
    ]
    assert fake.requests[0].body["input"] == "what's new?"
    assert fake.requests[0].body["context"]["user_id"] == alice.user_id

    # Element's mention pill: the body has the display name, m.mentions the user id.
    _, pill = await reply_to(
        bridge_env,
        alice,
        room,
        "Second Me: tell me more",
        **{
            "m.mentions": {"user_ids": [secondme]},
            "format": "org.matrix.custom.html",
            "formatted_body": f'<a href="https://matrix.to/#/{secondme}">Second Me</a>: tell me more',
        },
    )
    assert pill["content"]["body"] == "echo: tell me more"
    assert len(fake.requests) == 2  # the unmentioned message was never sent to Agents Core
    claims = await db.fetch("select trigger_id, state from secondme_replies order by created_at")
    assert [c["state"] for c in claims] == ["answered", "answered"]
    assert claims[0]["trigger_id"] == f"matrix:{asked}"


# --- exactly once with two processes and re-sent transactions --------------------------


async def test_one_reply_each_with_two_processes_and_resent_transactions(
    clean: None,
    bridge_env: BridgeEnv,
    element: MakeElement,
    fake: FakeAgentsCore,
    db: asyncpg.Connection,
) -> None:
    # `a` is where Synapse pushes transactions; `b` another process behind the same
    # balancer (it sends outbox rows and sweeps claims too).
    async with two_processes(bridge_env, **secondme_settings(fake)) as (a, b):
        alice = await element()
        dm = await open_dm(alice, bridge_env)
        general = await alice.join(bridge_env.alias("general"))

        # #city_general outlives the test (one Synapse per session): tag this run's text.
        tag = secrets.token_hex(3)
        dm_asked, dm_reply = await reply_to(bridge_env, alice, dm, "dm question")
        room_asked, room_reply = await reply_to(
            bridge_env, alice, general, f"@secondme room question {tag}"
        )
        assert dm_reply["content"]["body"] == "echo: dm question"
        assert room_reply["content"]["body"] == f"echo: room question {tag}"

        # Synapse re-sends both transactions, to the same process and to the other.
        for event_id, room_id in ((dm_asked, dm), (room_asked, general)):
            event = await fetch_event(bridge_env, alice, room_id, event_id)
            await resend(bridge_env, a, event)
            await resend(bridge_env, b, event)

        # A later exchange in each room is the barrier: anything the re-sends might
        # have started would have been answered before it.
        await reply_to(bridge_env, alice, dm, "dm follow-up")
        await reply_to(bridge_env, alice, general, f"@secondme room follow-up {tag}")
        await alice.sync()
        assert [e["content"]["body"] for e in from_secondme(bridge_env, alice, dm)] == [
            "echo: dm question",
            "echo: dm follow-up",
        ]
        in_general = [e["content"]["body"] for e in from_secondme(bridge_env, alice, general)]
        assert [b for b in in_general if tag in b] == [
            f"echo: room question {tag}",
            f"echo: room follow-up {tag}",
        ]
        assert len(fake.requests) == 4
        assert await db.fetchval("select count(*) from secondme_replies") == 4
        assert (
            await db.fetchval(
                "select count(*) from city_room_messages where author_agent_id = $1", AGENT
            )
            == 2
        )
