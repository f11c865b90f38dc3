"""`@secondme` in a city room: one reply as a city message by the agent.

Real gateways (uvicorn), PostgreSQL, Redis and a fake Agents Core HTTP server.
"""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import orjson
import pytest
from websockets.asyncio.client import connect

from gateway.core.messages import Author
from gateway.core.models import Message
from gateway.core.secondme.mentions import MentionRule
from gateway.core.secondme.replies import (
    TIMEOUT_NOTICE,
    UNAVAILABLE_NOTICE,
    SecondMeReplies,
)
from tests.conftest import GatewayFactory
from tests.fake_agents_core import FakeAgentsCore
from tests.secondme_fixtures import (
    AGENT,
    GENERAL,
    agent_messages,
    fake_agents_core,  # noqa: F401 (the `fake` fixture)
    invoke_request,
    say,
    start_gateway,
    wait_agent_messages,
)
from tests.servers import InProcessGateway, wait_until


async def start(
    gateway_factory: GatewayFactory, fake: FakeAgentsCore, **kw: Any
) -> InProcessGateway:
    return await start_gateway(gateway_factory, fake, **{"agents_core_timeout": 2, **kw})


def replies_of(gw: InProcessGateway) -> SecondMeReplies:
    replies: SecondMeReplies = gw.runtime.secondme_replies
    return replies


# --- the rule --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("@secondme what is DAARION?", True),
        ("hey @SecondMe, help", True),
        ("(@secondme)", True),
        ("ask @secondme:daarion.space please", True),
        ("@secondme", True),
        ("secondme what is it", False),
        ("mail me at x@secondme.org", False),
        ("@secondmebot hi", False),
        ("@secondme-2 hi", False),
        ("@@secondme hi", False),
    ],
)
def test_mention_rule(body: str, expected: bool) -> None:
    assert MentionRule("secondme").mentions(body) is expected


@pytest.mark.parametrize(
    ("body", "prompt"),
    [
        ("@secondme what is DAARION?", "what is DAARION?"),
        ("@SecondMe, help me", "help me"),
        ("@secondme:daarion.space: hi", "hi"),
        ("so @secondme what now", "so what now"),
        ("@secondme", "@secondme"),  # nothing else to ask: the agent gets it as is
    ],
)
def test_prompt_leaves_out_the_mention(body: str, prompt: str) -> None:
    assert MentionRule("secondme").prompt(body) == prompt


# --- replies ---------------------------------------------------------------------------


async def test_mention_gets_one_reply_as_a_city_message(
    gateway_factory: GatewayFactory, fake: FakeAgentsCore, db: asyncpg.Connection
) -> None:
    gw = await start(gateway_factory, fake)
    announced: list[Message] = []

    async def listen(message: Message) -> None:
        announced.append(message)

    gw.runtime.hooks.message_posted.append(listen)

    asked = await say(gw, "u_1", "@SecondMe what is DAARION?")
    [reply] = await wait_agent_messages(gw)

    assert reply["body"] == "echo: what is DAARION?"
    assert reply["author_agent_id"] == AGENT
    assert reply["author_user_id"] is None and reply["author_matrix_id"] is None
    [request] = fake.requests
    assert request.body == invoke_request("what is DAARION?", "u_1")
    # After commit, the reply is announced like any message (WebSockets, bridge, ...).
    await wait_until(lambda: [m.id for m in announced] == [asked["id"], reply["id"]])
    feed = (await gw.http.get("/city/feed")).json()
    agent_events = [e for e in feed if e["kind"] == "agent_reply"]
    assert len(agent_events) == 1
    assert agent_events[0]["agent_id"] == AGENT
    assert agent_events[0]["room_id"] == GENERAL
    assert agent_events[0]["payload"]["body"] == reply["body"]
    # A public exchange stays out of the asker's private history (SPEC §12).
    history = await gw.http.get("/secondme/history", headers=gw.auth("u_1"))
    assert history.json() == []
    claim = await db.fetchrow("select * from secondme_replies")
    assert claim["trigger_id"] == f"city:{asked['id']}"
    assert claim["state"] == "answered"
    assert claim["reply_ref"] == reply["id"]

    # A follow-up mention carries the room's conversation so far, oldest first.
    await say(gw, "u_1", "@secondme and then?")
    await wait_agent_messages(gw, 2)
    assert fake.requests[-1].body["context"]["history"] == [
        {"role": "user", "content": "u_1: @SecondMe what is DAARION?"},
        {"role": "assistant", "content": "echo: what is DAARION?"},
    ]


async def test_reply_reaches_the_rooms_websockets(
    gateway_factory: GatewayFactory, fake: FakeAgentsCore
) -> None:
    gw = await start(gateway_factory, fake)
    url = f"{gw.ws_url}/ws/city/rooms/{GENERAL}?token={gw.token('u_watcher')}"
    async with connect(url) as ws:
        await say(gw, "u_1", "@secondme ping")

        async def agent_frame() -> dict[str, Any]:
            while True:
                frame = orjson.loads(await ws.recv())
                if frame.get("event") == "room.message" and frame["message"]["author_agent_id"]:
                    return dict(frame)

        frame = await asyncio.wait_for(agent_frame(), 10)
    assert frame["room_id"] == GENERAL
    assert frame["message"]["body"] == "echo: ping"


async def test_no_reply_without_a_mention_or_to_agents(
    gateway_factory: GatewayFactory, fake: FakeAgentsCore
) -> None:
    gw = await start(gateway_factory, fake)
    for body in ("secondme, are you there?", "write to x@secondme.org", "@secondmebot hi"):
        await say(gw, "u_1", body)
    # Agents (Second Me itself included) are never answered: no loops between agents.
    await gw.runtime.messages.post(GENERAL, Author(agent_id=AGENT), "@secondme talking to myself")
    await gw.runtime.messages.post(GENERAL, Author(agent_id="ag_other"), "@secondme hello")

    await replies_of(gw).wait_idle()
    assert fake.requests == []
    assert len(await agent_messages(gw)) == 2  # only the two posted above


@pytest.mark.parametrize("mode", ["down", "error500", "not_json"])
async def test_agents_core_failing_gets_a_short_notice(
    gateway_factory: GatewayFactory, fake: FakeAgentsCore, db: asyncpg.Connection, mode: str
) -> None:
    gw = await start(gateway_factory, fake)
    fake.set_mode(mode)

    await say(gw, "u_1", "@secondme hello?")
    [notice] = await wait_agent_messages(gw)

    assert notice["body"] == UNAVAILABLE_NOTICE
    assert notice["author_agent_id"] == AGENT
    history = await gw.http.get("/secondme/history", headers=gw.auth("u_1"))
    # The question stays in the room only; the notice is not stored as an answer.
    assert history.json() == []
    assert await db.fetchval("select state from secondme_replies") == "failed"


async def test_agents_core_too_slow_gets_a_timeout_notice(
    gateway_factory: GatewayFactory, fake: FakeAgentsCore
) -> None:
    gw = await start(gateway_factory, fake, agents_core_timeout=0.5)
    fake.set_mode("slow")

    await say(gw, "u_1", "@secondme quick!")
    [notice] = await wait_agent_messages(gw)

    assert notice["body"] == TIMEOUT_NOTICE


async def test_a_slow_reply_does_not_hold_up_the_post(
    gateway_factory: GatewayFactory, fake: FakeAgentsCore
) -> None:
    gw = await start(gateway_factory, fake, agents_core_timeout=3)
    fake.set_mode("slow")

    # The hook only schedules the reply: the post answers while Agents Core thinks.
    await say(gw, "u_1", "@secondme take your time")
    await asyncio.to_thread(fake.wait_for_requests, 1)
    assert await agent_messages(gw) == []
    assert (await gw.http.get(f"/city/rooms/{GENERAL}")).status_code == 200


async def test_rate_limited_mention_gets_a_notice(
    gateway_factory: GatewayFactory, fake: FakeAgentsCore
) -> None:
    gw = await start(gateway_factory, fake, secondme_rate_per_minute=1)

    await say(gw, "u_1", "@secondme one")
    await wait_agent_messages(gw, 1)
    await say(gw, "u_1", "@secondme two")
    messages = await wait_agent_messages(gw, 2)

    assert messages[0]["body"] == "echo: one"
    assert messages[1]["body"].startswith("Too many requests to Second Me.")
    assert len(fake.requests) == 1


async def test_long_reply_is_shortened_to_fit_the_room(
    gateway_factory: GatewayFactory, fake: FakeAgentsCore
) -> None:
    fake.reply_fn = lambda body: "x" * 5000
    gw = await start(gateway_factory, fake, city_message_max_chars=4000)

    await say(gw, "u_1", "@secondme essay please")
    [reply] = await wait_agent_messages(gw)

    assert len(reply["body"]) == 4000 and reply["body"].endswith("…")


# --- exactly once across processes and crashes -------------------------------------


async def test_mention_whose_hook_never_ran_is_answered_once_by_two_processes(
    gateway_factory: GatewayFactory, fake: FakeAgentsCore, db: asyncpg.Connection
) -> None:
    first = await start(gateway_factory, fake)
    second = await start(gateway_factory, fake)
    # Stored without its after-commit hook: as if the process died right after commit.
    result = await first.runtime.messages.post(
        GENERAL, Author(user_id="u_1"), "@secondme are you there?", db=first.runtime.db
    )
    await db.execute(
        "update city_room_messages set created_at = now() - interval '30 seconds' where id = $1",
        result.message.id,
    )

    claimed = await asyncio.gather(
        *(gw.runtime.secondme_mentions.sweep_once() for gw in (first, second, first))
    )

    # (A background sweeper may have been first; either way one reply, one call.)
    assert sum(claimed) <= 1
    await wait_agent_messages(first)
    await asyncio.gather(replies_of(first).wait_idle(), replies_of(second).wait_idle())
    [reply] = await agent_messages(first)
    assert reply["body"] == "echo: are you there?"
    assert len(fake.requests) == 1
    # Nothing left to do for anyone.
    assert await second.runtime.secondme_mentions.sweep_once() == 0


async def test_reply_of_a_dead_process_is_taken_over_once(
    gateway_factory: GatewayFactory, fake: FakeAgentsCore, db: asyncpg.Connection
) -> None:
    dying = await start(gateway_factory, fake, agents_core_timeout=5)
    survivor = await start(gateway_factory, fake)
    fake.set_mode("slow")
    await say(dying, "u_1", "@secondme remember me")
    await asyncio.to_thread(fake.wait_for_requests, 1)
    # The process dies while Agents Core thinks: its claim stays pending...
    await replies_of(dying).aclose()
    assert await db.fetchval("select state from secondme_replies") == "pending"
    assert await replies_of(survivor).sweep_once() == 0  # ...under a lease still running.

    await db.execute("update secondme_replies set lease_until = now() - interval '1 second'")
    fake.set_mode("ok")
    taken = await asyncio.gather(replies_of(survivor).sweep_once(), replies_of(dying).sweep_once())

    assert sum(taken) <= 1  # (or a background sweeper took it first)
    await wait_agent_messages(survivor)
    [reply] = await agent_messages(survivor)
    assert reply["body"] == "echo: remember me"
    claim = await db.fetchrow("select state, attempts from secondme_replies")
    assert (claim["state"], claim["attempts"]) == ("answered", 2)
    # A public exchange: nothing went into the private history, on either attempt.
    assert await db.fetchval("select count(*) from secondme_messages") == 0
