"""Agents Core client against real servers: the HTTP fake and the real nats-server."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from gateway.adapters.agents_core import (
    AgentTimeout,
    AgentUnavailable,
    HistoryItem,
    HttpAgentsCore,
    NatsAgentsCore,
    build_agents_core,
)
from gateway.infra.settings import ConfigError, load_settings
from tests.fake_agents_core import FakeAgentsCore, FakeNatsAgent
from tests.secondme_fixtures import (
    AGENT,
    fake_agents_core,  # noqa: F401 (the `fake` fixture)
    invoke_request,
)

NATS_URL = os.environ.get("CITY_TEST_NATS_URL", "nats://127.0.0.1:4222")
TOKEN = "s3cret-agents-token"
HISTORY = [
    HistoryItem("user", "first question"),
    HistoryItem("assistant", "first answer"),
    HistoryItem("user", "second question"),
]

MakeClient = Callable[..., HttpAgentsCore]


@pytest.fixture
async def make_client(fake: FakeAgentsCore) -> AsyncIterator[MakeClient]:
    clients: list[HttpAgentsCore] = []

    def make(
        token: str | None = TOKEN, total_timeout: float = 10.0, **kw: object
    ) -> HttpAgentsCore:
        client = HttpAgentsCore(fake.url, token, 2.0, total_timeout, **kw)  # type: ignore[arg-type]
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.aclose()


async def invoke(
    client: HttpAgentsCore | NatsAgentsCore, prompt: str = "hello", **kw: object
) -> str:
    args: dict[str, object] = {"agent_id": AGENT, "user_id": "u_1", "history": HISTORY}
    args.update(kw)
    return await client.invoke(prompt=prompt, **args)  # type: ignore[arg-type]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- HTTP: what Agents Core receives ---------------------------------------------------


async def test_ok_sends_input_context_history_and_token(
    fake: FakeAgentsCore, make_client: MakeClient
) -> None:
    reply = await invoke(make_client(), "what now?", user_id="u_42")

    assert reply == "echo: what now?"
    [request] = fake.requests
    assert request.method == "POST"
    assert request.path == f"/agents/{AGENT}/invoke"
    assert request.headers["authorization"] == f"Bearer {TOKEN}"
    assert request.headers["content-type"] == "application/json"
    # The history oldest first, exactly as given.
    expected_history = [
        ("user", "first question"),
        ("assistant", "first answer"),
        ("user", "second question"),
    ]
    assert request.body == invoke_request("what now?", "u_42", expected_history)


async def test_no_token_means_no_authorization_header(
    fake: FakeAgentsCore, make_client: MakeClient
) -> None:
    await invoke(make_client(token=None), history=[])

    [request] = fake.requests
    assert "authorization" not in request.headers
    assert request.body["context"]["history"] == []


async def test_output_field_is_accepted(fake: FakeAgentsCore, make_client: MakeClient) -> None:
    fake.reply_field = "output"
    assert await invoke(make_client(), "hi") == "echo: hi"


async def test_agent_id_cannot_escape_its_path_segment(
    fake: FakeAgentsCore, make_client: MakeClient
) -> None:
    fake.set_mode("error500")  # the path must not reach another route either way
    with pytest.raises(AgentUnavailable):
        await invoke(make_client(), agent_id="../admin x")
    assert fake.requests[0].path == "/agents/..%2Fadmin%20x/invoke"


async def test_settings_build_an_http_client_that_sends_the_token(fake: FakeAgentsCore) -> None:
    settings = load_settings(
        city_env="test",
        city_jwt_secret="x" * 32,
        agents_core_url=fake.url + "/",
        agents_core_token=TOKEN,
        secondme_transport="http",
    )
    client = build_agents_core(settings)
    assert isinstance(client, HttpAgentsCore)
    try:
        assert await invoke(client, agent_id=settings.secondme_agent_id) == "echo: hello"
    finally:
        await client.aclose()
    assert fake.requests[0].headers["authorization"] == f"Bearer {TOKEN}"
    assert fake.requests[0].path == "/agents/ag_secondme_global/invoke"


async def test_build_agents_core_choices() -> None:
    base = {"city_env": "test", "city_jwt_secret": "x" * 32, "agents_core_url": None}
    assert build_agents_core(load_settings(**base, secondme_transport="http")) is None

    nats_client = build_agents_core(
        load_settings(**base, secondme_transport="nats", nats_url=NATS_URL)
    )
    assert isinstance(nats_client, NatsAgentsCore)
    await nats_client.aclose()

    with pytest.raises(ConfigError, match="NATS_URL"):
        build_agents_core(load_settings(**base, secondme_transport="nats", nats_url=None))


# --- HTTP: slow ------------------------------------------------------------------------


async def test_slow_agent_times_out_near_the_configured_timeout(
    fake: FakeAgentsCore, make_client: MakeClient
) -> None:
    fake.set_mode("slow")  # 30 s, far beyond the timeout
    client = make_client(total_timeout=0.5)
    started = time.monotonic()
    with pytest.raises(AgentTimeout, match=r"within 0\.5 s"):
        await invoke(client)
    # An upper bound only (generous for loaded machines): it did not wait for the fake.
    assert time.monotonic() - started < 5


async def test_trickling_answer_is_bounded_by_the_total_timeout(
    fake: FakeAgentsCore, make_client: MakeClient
) -> None:
    # Each byte arrives well within a per-read timeout; only a whole-call bound stops it.
    fake.set_mode("trickle")
    fake.delay = 0.1
    with pytest.raises(AgentTimeout, match=r"did not answer within 0\.5 s"):
        await invoke(make_client(total_timeout=0.5))


async def test_slow_call_does_not_hold_up_other_calls(
    fake: FakeAgentsCore, make_client: MakeClient
) -> None:
    fake.set_mode("slow", agent_id="ag_slow")
    client = make_client(total_timeout=30)
    slow = asyncio.create_task(invoke(client, "slow one", agent_id="ag_slow"))
    await asyncio.to_thread(fake.wait_for_requests, 1)

    replies = await asyncio.gather(*(invoke(client, f"fast {i}") for i in range(5)))

    assert replies == [f"echo: fast {i}" for i in range(5)]
    assert not slow.done()  # still waiting on Agents Core, yet nobody else was
    slow.cancel()
    with pytest.raises(asyncio.CancelledError):
        await slow
    assert await invoke(client, "after") == "echo: after"  # the pool is still healthy


# --- HTTP: down and wrong answers ------------------------------------------------------


async def test_down_is_unavailable_without_waiting_for_the_timeout(
    fake: FakeAgentsCore, make_client: MakeClient
) -> None:
    client = make_client(total_timeout=30)
    fake.set_mode("down")
    with pytest.raises(AgentUnavailable, match="cannot connect to Agents Core") as info:
        await invoke(client)
    assert not isinstance(info.value, AgentTimeout)

    fake.set_mode("ok")  # back up: the same client recovers
    assert await invoke(client) == "echo: hello"


@pytest.mark.parametrize(
    ("mode", "message"),
    [
        ("error500", "Agents Core answered HTTP 500"),
        ("not_json", "not JSON: '<html><body>Bad Gateway"),
        ("no_reply_field", "no 'reply' or 'output' field"),
        ("reply_wrong_type", "'reply' is of type int"),
    ],
)
async def test_bad_answers_are_unavailable_with_a_clear_message(
    fake: FakeAgentsCore,
    make_client: MakeClient,
    caplog: pytest.LogCaptureFixture,
    mode: str,
    message: str,
) -> None:
    fake.set_mode(mode)
    caplog.set_level(logging.DEBUG)
    with pytest.raises(AgentUnavailable) as info:
        await invoke(make_client())
    assert not isinstance(info.value, AgentTimeout)
    assert message in info.value.message
    assert message in caplog.text  # the failure is logged ...
    assert TOKEN not in caplog.text  # ... without the token
    assert TOKEN not in str(info.value)


@pytest.mark.parametrize(
    ("reply", "message"),
    [
        ("   ", "'reply' is an empty string"),
        (None, "'reply' is null"),
    ],
)
async def test_empty_reply_is_unavailable(
    fake: FakeAgentsCore, make_client: MakeClient, reply: str | None, message: str
) -> None:
    fake.reply_fn = lambda body: reply  # type: ignore[assignment,return-value]
    with pytest.raises(AgentUnavailable, match=message):
        await invoke(make_client())


async def test_oversized_answer_is_refused(fake: FakeAgentsCore, make_client: MakeClient) -> None:
    fake.reply_fn = lambda body: "x" * 5000
    with pytest.raises(AgentUnavailable, match="larger than 1024 bytes"):
        await invoke(make_client(max_response_bytes=1024))


# --- NATS ------------------------------------------------------------------------------


@pytest.fixture
async def nats_agent() -> AsyncIterator[FakeNatsAgent]:
    async with FakeNatsAgent(NATS_URL) as agent:
        yield agent


@pytest.fixture
async def make_nats() -> AsyncIterator[Callable[..., NatsAgentsCore]]:
    clients: list[NatsAgentsCore] = []

    def make(subject: str, timeout: float = 10.0, url: str = NATS_URL) -> NatsAgentsCore:
        client = NatsAgentsCore(url, timeout, subject=subject, connect_timeout=5.0)
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.aclose()


async def test_nats_ok_sends_the_seed_payload(
    nats_agent: FakeNatsAgent, make_nats: Callable[..., NatsAgentsCore]
) -> None:
    reply = await invoke(make_nats(nats_agent.subject), "over nats", user_id="u_7")

    assert reply == "echo: over nats"
    [received] = await nats_agent.wait_for_requests(1)
    assert received == {
        "event": "agents.invoke",
        "agent_id": AGENT,
        "payload": {
            "input": "over nats",
            "user_id": "u_7",
            "source": "secondme",
            "history": [{"role": h.role, "content": h.content} for h in HISTORY],
        },
    }


@pytest.mark.parametrize("mode", ["output", "envelope"])
async def test_nats_accepts_output_and_reply_envelope(
    nats_agent: FakeNatsAgent, make_nats: Callable[..., NatsAgentsCore], mode: str
) -> None:
    nats_agent.mode = mode
    assert await invoke(make_nats(nats_agent.subject), "x") == "echo: x"


async def test_nats_without_responder_is_unavailable_not_timeout(
    make_nats: Callable[..., NatsAgentsCore],
) -> None:
    with pytest.raises(AgentUnavailable, match="no Agents Core is listening") as info:
        await invoke(make_nats("agents.invoke.test.nobody-here", timeout=30))
    assert not isinstance(info.value, AgentTimeout)


async def test_nats_silent_agent_times_out(
    nats_agent: FakeNatsAgent, make_nats: Callable[..., NatsAgentsCore]
) -> None:
    nats_agent.mode = "silent"
    with pytest.raises(AgentTimeout, match=r"within 0\.5 s"):
        await invoke(make_nats(nats_agent.subject, timeout=0.5))


@pytest.mark.parametrize(
    ("mode", "message"),
    [("not_json", "not JSON"), ("no_reply_field", "no 'reply' or 'output' field")],
)
async def test_nats_bad_answers_are_unavailable(
    nats_agent: FakeNatsAgent,
    make_nats: Callable[..., NatsAgentsCore],
    mode: str,
    message: str,
) -> None:
    nats_agent.mode = mode
    with pytest.raises(AgentUnavailable, match=message) as info:
        await invoke(make_nats(nats_agent.subject))
    assert not isinstance(info.value, AgentTimeout)


async def test_nats_down_is_unavailable_without_waiting_for_the_timeout(
    make_nats: Callable[..., NatsAgentsCore],
) -> None:
    client = make_nats("agents.invoke", timeout=30, url=f"nats://127.0.0.1:{free_port()}")
    with pytest.raises(AgentUnavailable, match="cannot connect to NATS") as info:
        await invoke(client)
    assert not isinstance(info.value, AgentTimeout)


async def test_nats_client_serves_concurrent_calls_on_one_connection(
    nats_agent: FakeNatsAgent, make_nats: Callable[..., NatsAgentsCore]
) -> None:
    client = make_nats(nats_agent.subject)
    calls: list[Awaitable[str]] = [invoke(client, f"n{i}") for i in range(10)]
    assert await asyncio.gather(*calls) == [f"echo: n{i}" for i in range(10)]
