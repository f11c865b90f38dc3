"""Second Me test helpers shared by the core, http, adapters and bridge tests.

The `fake` fixture is a fake Agents Core HTTP server (tests/fake_agents_core.py), one
per test. A test module gets it by importing `fake_agents_core`, which pytest then
registers under the name `fake`:

    from tests.secondme_fixtures import fake_agents_core  # noqa: F401 (the `fake` fixture)

    async def test_x(gateway_factory: GatewayFactory, fake: FakeAgentsCore) -> None:
        gw = await start_gateway(gateway_factory, fake, secondme_history_messages=3)
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import GatewayFactory
from tests.fake_agents_core import FakeAgentsCore
from tests.servers import InProcessGateway, wait_until

GENERAL = "room_city_general"
AGENT = "ag_secondme_global"
# What a user tells Second Me privately, to look for where it must not appear.
SECRET = "my private diagnosis is 4711"


@pytest.fixture(name="fake")
def fake_agents_core() -> Iterator[FakeAgentsCore]:
    with FakeAgentsCore() as server:
        yield server


def secondme_settings(fake: FakeAgentsCore, **overrides: Any) -> dict[str, Any]:
    """Settings pointing the gateway at `fake`, with a rate limit no test meets by chance."""
    return {
        "agents_core_url": fake.url,
        "agents_core_timeout": 5,
        "secondme_rate_per_minute": 1000,
        **overrides,
    }


async def start_gateway(
    gateway_factory: GatewayFactory, fake: FakeAgentsCore, **overrides: Any
) -> InProcessGateway:
    """A gateway (in-process uvicorn) that asks `fake` for Second Me's answers."""
    return await gateway_factory(**secondme_settings(fake, **overrides))


def invoke_request(
    prompt: str, user_id: str, history: list[tuple[str, str]] | None = None
) -> dict[str, Any]:
    """The body Agents Core receives for `prompt`: `history` as (role, content), oldest first."""
    return {
        "input": prompt,
        "context": {
            "user_id": user_id,
            "kind": "secondme",
            "history": [{"role": role, "content": content} for role, content in history or []],
        },
    }


async def say(gw: InProcessGateway, user: str, body: str, room: str = GENERAL) -> dict[str, Any]:
    """`user` posts `body` in a city room; the stored message."""
    response = await gw.http.post(
        f"/city/rooms/{room}/messages", json={"body": body}, headers=gw.auth(user)
    )
    assert response.status_code == 201, response.text
    message: dict[str, Any] = response.json()
    return message


async def agent_messages(gw: InProcessGateway, room: str = GENERAL) -> list[dict[str, Any]]:
    """The room's messages by an agent (Second Me's answers and notices), oldest first."""
    page = await gw.http.get(f"/city/rooms/{room}/messages?limit=200")
    return [m for m in page.json() if m["author_agent_id"]]


async def wait_agent_messages(gw: InProcessGateway, count: int = 1) -> list[dict[str, Any]]:
    """The agent messages in #general once there are at least `count` of them."""

    async def enough() -> list[dict[str, Any]] | None:
        found = await agent_messages(gw)
        return found if len(found) >= count else None

    result: list[dict[str, Any]] = await wait_until(enough)
    return result


async def private_history(gw: InProcessGateway, user: str) -> list[tuple[str, str]]:
    """`user`'s private conversation with Second Me as (role, content), oldest first."""
    response = await gw.http.get("/secondme/history?limit=100", headers=gw.auth(user))
    assert response.status_code == 200, response.text
    return [(h["role"], h["content"]) for h in response.json()]
