"""Second Me over real HTTP: real gateway, PostgreSQL, Redis and a fake Agents Core server."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import pytest
import redis.asyncio as aioredis

from gateway.core.secondme.ratelimit import SlidingWindowLimiter
from tests.conftest import REDIS_PREFIX, GatewayFactory
from tests.fake_agents_core import FakeAgentsCore
from tests.secondme_fixtures import (
    AGENT,
    fake_agents_core,  # noqa: F401 (the `fake` fixture)
    invoke_request,
    start_gateway,
)
from tests.servers import InProcessGateway, free_port, wait_until

TOKEN = "agents-core-test-token"


async def start(
    gateway_factory: GatewayFactory, fake: FakeAgentsCore, **kw: Any
) -> InProcessGateway:
    settings = {"agents_core_token": TOKEN, "agents_core_timeout": 0.5, **kw}
    return await start_gateway(gateway_factory, fake, **settings)


async def invoke(gw: InProcessGateway, user: str, prompt: object) -> Any:
    return await gw.http.post("/secondme/invoke", json={"prompt": prompt}, headers=gw.auth(user))


def pairs(history: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(h["role"], h["content"]) for h in history]


async def test_invoke_stores_the_exchange_and_sends_history_oldest_first(
    gateway_factory: GatewayFactory, fake: FakeAgentsCore
) -> None:
    gw = await start(gateway_factory, fake, secondme_history_messages=3)

    for prompt in ("one", "two"):
        response = await invoke(gw, "u_1", prompt)
        assert response.status_code == 200, response.text
    third = await invoke(gw, "u_1", "three")

    assert third.status_code == 200, third.text
    body = third.json()
    assert body["reply"] == "echo: three"
    # The latest N (= secondme_history_messages) after the exchange, oldest first.
    assert pairs(body["history"]) == [
        ("assistant", "echo: two"),
        ("user", "three"),
        ("assistant", "echo: three"),
    ]
    assert all(h["created_at"] for h in body["history"])

    first, _, last = fake.requests
    assert first.body["context"]["history"] == []
    assert last.path == f"/agents/{AGENT}/invoke"
    assert last.headers["authorization"] == f"Bearer {TOKEN}"
    # The prompt is the input; the context is the N messages before it, oldest first.
    assert last.body == invoke_request(
        "three", "u_1", [("assistant", "echo: one"), ("user", "two"), ("assistant", "echo: two")]
    )


async def test_history_is_the_callers_latest_oldest_first(
    gateway_factory: GatewayFactory, fake: FakeAgentsCore
) -> None:
    gw = await start(gateway_factory, fake)
    for prompt in ("a", "b", "c"):
        assert (await invoke(gw, "u_1", prompt)).status_code == 200

    default = await gw.http.get("/secondme/history", headers=gw.auth("u_1"))
    assert default.status_code == 200
    assert pairs(default.json()) == [
        ("assistant", "echo: a"),
        ("user", "b"),
        ("assistant", "echo: b"),
        ("user", "c"),
        ("assistant", "echo: c"),
    ]
    times = [h["created_at"] for h in default.json()]
    assert times == sorted(times)

    two = await gw.http.get("/secondme/history?limit=2", headers=gw.auth("u_1"))
    assert pairs(two.json()) == [("user", "c"), ("assistant", "echo: c")]

    for bad in ("0", "101", "x"):
        response = await gw.http.get(f"/secondme/history?limit={bad}", headers=gw.auth("u_1"))
        assert response.status_code == 422
        assert response.json()["code"] == "validation_error"
    assert (await gw.http.get("/secondme/history")).status_code == 401


async def test_one_users_history_is_never_anothers(
    gateway_factory: GatewayFactory, fake: FakeAgentsCore
) -> None:
    gw = await start(gateway_factory, fake)
    assert (await invoke(gw, "u_alice", "alice's secret")).status_code == 200
    bob = await invoke(gw, "u_bob", "hi")

    assert pairs(bob.json()["history"]) == [("user", "hi"), ("assistant", "echo: hi")]
    assert fake.requests[-1].body == invoke_request("hi", "u_bob")
    bob_history = await gw.http.get("/secondme/history?limit=100", headers=gw.auth("u_bob"))
    assert "alice's secret" not in bob_history.text
    # A user_id in the body or query is no way in: the user is the token's subject.
    sneaky = await gw.http.post(
        "/secondme/invoke?user_id=u_alice",
        json={"prompt": "and?", "user_id": "u_alice"},
        headers=gw.auth("u_bob"),
    )
    assert fake.requests[-1].body["context"]["user_id"] == "u_bob"
    assert "alice's secret" not in sneaky.text
    alice = await gw.http.get("/secondme/history", headers=gw.auth("u_alice"))
    assert pairs(alice.json()) == [
        ("user", "alice's secret"),
        ("assistant", "echo: alice's secret"),
    ]


@pytest.mark.parametrize(
    ("prompt", "code"),
    [
        ("", "invalid_prompt"),
        ("   \n\t", "invalid_prompt"),
        ("nul\x00byte", "invalid_prompt"),
        ("x" * 8001, "prompt_too_long"),
        (5, "validation_error"),
        (None, "validation_error"),
    ],
)
async def test_bad_prompts_are_422_and_store_nothing(
    gateway_factory: GatewayFactory,
    fake: FakeAgentsCore,
    db: asyncpg.Connection,
    prompt: object,
    code: str,
) -> None:
    gw = await start(gateway_factory, fake)
    response = await invoke(gw, "u_1", prompt)
    assert response.status_code == 422
    assert response.json()["code"] == code
    assert fake.requests == []
    assert await db.fetchval("select count(*) from secondme_messages") == 0


async def test_prompt_of_8000_characters_is_accepted(
    gateway_factory: GatewayFactory, fake: FakeAgentsCore
) -> None:
    gw = await start(gateway_factory, fake)
    prompt = "ї" * 8000  # characters, not bytes
    response = await invoke(gw, "u_1", prompt)
    assert response.status_code == 200, response.text
    assert fake.requests[0].body["input"] == prompt


async def test_missing_token_and_body(
    gateway_factory: GatewayFactory, fake: FakeAgentsCore
) -> None:
    gw = await start(gateway_factory, fake)
    assert (await gw.http.post("/secondme/invoke", json={"prompt": "hi"})).status_code == 401
    no_body = await gw.http.post("/secondme/invoke", headers=gw.auth("u_1"))
    assert no_body.status_code == 422
    assert fake.requests == []


@pytest.mark.parametrize(
    "mode", ["error500", "not_json", "no_reply_field", "reply_wrong_type", "down"]
)
async def test_agents_core_failure_is_502_and_keeps_only_the_users_message(
    gateway_factory: GatewayFactory, fake: FakeAgentsCore, mode: str
) -> None:
    gw = await start(gateway_factory, fake)
    assert (await invoke(gw, "u_1", "before")).status_code == 200
    fake.set_mode(mode)

    response = await invoke(gw, "u_1", "are you there?")

    assert response.status_code == 502, response.text
    error = response.json()
    assert error["code"] == "agent_unavailable"
    assert "Second Me is unavailable" in error["message"]
    assert "saved" in error["message"]
    history = await gw.http.get("/secondme/history", headers=gw.auth("u_1"))
    # The user's message is kept; no assistant message is invented.
    assert pairs(history.json()) == [
        ("user", "before"),
        ("assistant", "echo: before"),
        ("user", "are you there?"),
    ]

    fake.set_mode("ok")
    again = await invoke(gw, "u_1", "now?")
    assert again.status_code == 200
    # The unanswered message is part of the context of the next call.
    assert fake.requests[-1].body["context"]["history"][-1] == {
        "role": "user",
        "content": "are you there?",
    }


@pytest.mark.parametrize("mode", ["slow", "trickle"])
async def test_agents_core_too_slow_is_504(
    gateway_factory: GatewayFactory, fake: FakeAgentsCore, mode: str
) -> None:
    gw = await start(gateway_factory, fake, agents_core_timeout=0.5)
    fake.delay = 0.2 if mode == "trickle" else 30
    fake.set_mode(mode)

    response = await invoke(gw, "u_1", "slowly")

    assert response.status_code == 504, response.text
    assert response.json()["code"] == "agent_timeout"
    assert "did not answer in time" in response.json()["message"]
    history = await gw.http.get("/secondme/history", headers=gw.auth("u_1"))
    assert pairs(history.json()) == [("user", "slowly")]


async def test_slow_agents_core_holds_up_nothing_else(
    gateway_factory: GatewayFactory, fake: FakeAgentsCore
) -> None:
    # Two database connections and four Agents Core calls hanging at once: the
    # calls must not sit on connections, or the other requests below would wait.
    gw = await start(gateway_factory, fake, database_pool_size=2, agents_core_timeout=3)
    fake.set_mode("slow")
    calls = [asyncio.create_task(invoke(gw, f"u_{i}", "hang on")) for i in range(4)]

    await asyncio.to_thread(fake.wait_for_requests, 4)
    rooms = await gw.http.get("/city/rooms")
    posted = await gw.http.post(
        "/city/rooms/room_city_general/messages",
        json={"body": "still here"},
        headers=gw.auth("u_x"),
    )
    history = await gw.http.get("/secondme/history", headers=gw.auth("u_0"))

    assert not any(c.done() for c in calls)  # all four are still waiting on Agents Core
    assert rooms.status_code == 200
    assert posted.status_code == 201
    assert pairs(history.json()) == [("user", "hang on")]
    results = await asyncio.gather(*calls)
    assert [r.status_code for r in results] == [504] * 4


async def test_not_configured_is_503_never_a_fake_reply(
    gateway_factory: GatewayFactory, db: asyncpg.Connection
) -> None:
    gw = await gateway_factory()  # no AGENTS_CORE_URL

    response = await invoke(gw, "u_1", "hello?")

    assert response.status_code == 503
    assert response.json()["code"] == "secondme_not_configured"
    assert "AGENTS_CORE_URL" in response.json()["message"]
    assert await db.fetchval("select count(*) from secondme_messages") == 0
    history = await gw.http.get("/secondme/history", headers=gw.auth("u_1"))
    assert history.status_code == 200
    assert history.json() == []


async def test_rate_limit_per_user_across_processes(
    gateway_factory: GatewayFactory, fake: FakeAgentsCore
) -> None:
    # Two gateways sharing PostgreSQL and Redis, like two processes behind a balancer.
    first = await start(gateway_factory, fake, secondme_rate_per_minute=3)
    second = await start(gateway_factory, fake, secondme_rate_per_minute=3)

    codes = [(await invoke(gw, "u_1", "hi")).status_code for gw in (first, second, first)]
    limited = await invoke(second, "u_1", "one more")

    assert codes == [200, 200, 200]
    assert limited.status_code == 429
    assert limited.json()["code"] == "rate_limited"
    assert 1 <= int(limited.headers["retry-after"]) <= 60
    assert len(fake.requests) == 3  # the refused call never reached Agents Core
    # Another user has their own budget.
    assert (await invoke(first, "u_2", "hi")).status_code == 200


async def test_rate_limiter_allows_when_redis_is_down() -> None:
    dead = aioredis.from_url(f"redis://127.0.0.1:{free_port()}/0")
    try:
        limiter = SlidingWindowLimiter(dead, key_prefix=f"{REDIS_PREFIX}rl:", limit=1)
        assert (await limiter.check("u_1")).allowed
        assert (await limiter.check("u_1")).allowed
    finally:
        await dead.aclose()


async def test_rate_limiter_window_slides(redis_client: aioredis.Redis, clean: None) -> None:
    limiter = SlidingWindowLimiter(
        redis_client, key_prefix=f"{REDIS_PREFIX}rl:", limit=2, window_seconds=0.3
    )
    assert (await limiter.check("u_1")).allowed
    assert (await limiter.check("u_1")).allowed
    refused = await limiter.check("u_1")
    assert not refused.allowed
    assert refused.retry_after_seconds == 1

    # Once the oldest call leaves the window, there is room again.
    async def allowed_again() -> bool:
        return (await limiter.check("u_1")).allowed

    await wait_until(allowed_again, timeout=5)
    assert all(k.startswith(REDIS_PREFIX) for k in await redis_client.keys(f"{REDIS_PREFIX}*"))


async def test_concurrent_first_calls_share_one_session(
    gateway_factory: GatewayFactory, fake: FakeAgentsCore, db: asyncpg.Connection
) -> None:
    gw = await start(gateway_factory, fake)
    results = await asyncio.gather(*(invoke(gw, "u_new", f"q{i}") for i in range(6)))
    assert [r.status_code for r in results] == [200] * 6
    assert await db.fetchval("select count(*) from secondme_sessions") == 1
    assert await db.fetchval("select count(*) from secondme_messages") == 12


async def test_service_functions_of_the_seed(
    gateway_factory: GatewayFactory, fake: FakeAgentsCore
) -> None:
    gw = await start(gateway_factory, fake)
    service = gw.runtime.secondme

    session = await service.get_or_create_session("u_s")
    assert session.id.startswith("smsess_")
    assert (await service.get_or_create_session("u_s")).id == session.id
    exchange = await service.invoke_second_me("u_s", "hello")
    assert exchange.reply == "echo: hello"
    last = await service.get_last_messages("u_s", 5)
    assert [(m.role, m.content) for m in last] == [("user", "hello"), ("assistant", "echo: hello")]
    assert {m.session_id for m in last} == {session.id}
    assert all(m.id.startswith("smmsg_") for m in last)
