"""Second Me in public city rooms (issue 9, item 11; SPEC §12).

- A mention in a city room sends Agents Core the room's recent messages as context,
  never the asker's private Second Me history, and the public exchange is not
  written into that private history either.
- A user over the rate limit gets one "too many requests" notice per window; the
  refusals after it are silent.

Real gateway (uvicorn), PostgreSQL, Redis and the fake Agents Core HTTP server.
"""

from __future__ import annotations

import json
from typing import Any

import asyncpg

from tests.conftest import SECURITY_DEFAULTS, GatewayFactory
from tests.fake_agents_core import FakeAgentsCore
from tests.secondme_fixtures import (
    SECRET,
    agent_messages,
    fake_agents_core,  # noqa: F401 (the `fake` fixture)
    private_history,
    say,
    start_gateway,
    wait_agent_messages,
)
from tests.servers import InProcessGateway, wait_until


async def start(
    gateway_factory: GatewayFactory, fake: FakeAgentsCore, **kw: Any
) -> InProcessGateway:
    settings = {**SECURITY_DEFAULTS, "secondme_history_messages": 3, **kw}
    return await start_gateway(gateway_factory, fake, **settings)


async def agent_bodies(gw: InProcessGateway) -> list[str]:
    return [m["body"] for m in await agent_messages(gw)]


async def test_room_mention_gets_the_rooms_messages_not_the_private_history(
    gateway_factory: GatewayFactory, fake: FakeAgentsCore
) -> None:
    gw = await start(gateway_factory, fake)
    # u_1 has a private conversation with Second Me.
    private = await gw.http.post(
        "/secondme/invoke", json={"prompt": SECRET}, headers=gw.auth("u_1")
    )
    assert private.status_code == 200, private.text
    before = await private_history(gw, "u_1")
    assert before == [("user", SECRET), ("assistant", f"echo: {SECRET}")]

    # The room talks; only the last `secondme_history_messages` (3) count.
    await say(gw, "u_2", "too old to matter")
    await say(gw, "u_2", "hello all")
    await say(gw, "u_3", "the bridge opens at noon")
    await say(gw, "u_1", "any news?")
    await say(gw, "u_1", "@secondme what did I say?")
    await wait_agent_messages(gw, 1)

    room_request = fake.requests[-1].body
    assert room_request["input"] == "what did I say?"
    assert room_request["context"]["user_id"] == "u_1"
    # The room's messages before the question, oldest first, authors told apart...
    assert room_request["context"]["history"] == [
        {"role": "user", "content": "u_2: hello all"},
        {"role": "user", "content": "u_3: the bridge opens at noon"},
        {"role": "user", "content": "u_1: any news?"},
    ]
    # ...and nothing of the private conversation anywhere in what was sent.
    assert SECRET not in json.dumps(room_request)
    # The public exchange is not written into the private history.
    assert await private_history(gw, "u_1") == before

    # Second Me's own answer in the room comes back as the assistant's turn.
    await say(gw, "u_1", "@secondme and now?")
    await wait_agent_messages(gw, 2)
    assert fake.requests[-1].body["context"]["history"] == [
        {"role": "user", "content": "u_1: any news?"},
        {"role": "user", "content": "u_1: @secondme what did I say?"},
        {"role": "assistant", "content": "echo: what did I say?"},
    ]
    assert SECRET not in json.dumps(fake.requests[-1].body)

    # Privately, Second Me still has the private conversation, and only that.
    again = await gw.http.post("/secondme/invoke", json={"prompt": "and?"}, headers=gw.auth("u_1"))
    assert again.status_code == 200, again.text
    assert fake.requests[-1].body["context"]["history"] == [
        {"role": "user", "content": SECRET},
        {"role": "assistant", "content": f"echo: {SECRET}"},
    ]


async def test_one_rate_limit_notice_per_user_per_window(
    gateway_factory: GatewayFactory, fake: FakeAgentsCore, db: asyncpg.Connection
) -> None:
    gw = await start(gateway_factory, fake, secondme_rate_per_minute=1)
    mentions = 6
    for i in range(mentions):
        await say(gw, "u_1", f"@secondme question {i}")

    async def all_finished() -> bool:
        states = await db.fetch("select state from secondme_replies")
        return len(states) == mentions and all(s["state"] != "pending" for s in states)

    await wait_until(all_finished)
    await gw.runtime.secondme_replies.wait_idle()
    bodies = await agent_bodies(gw)
    notices = [b for b in bodies if b.startswith("Too many requests to Second Me.")]
    answers = [b for b in bodies if b.startswith("echo: ")]
    # One answer, one notice, then silence: a flood of mentions is not a flood of notices.
    assert len(answers) == 1
    assert len(notices) == 1, bodies
    assert len(fake.requests) == 1

    # Another user's budget and notice are their own.
    await say(gw, "u_2", "@secondme me too")
    await wait_agent_messages(gw, 3)
    assert (await agent_bodies(gw))[-1] == "echo: me too"
