"""Per-user write limits (SPEC §12, issue 9 items 5 and 10): messages, rooms, body user_id.

Budgets are exhausted by counting, never by timing: where an exact count matters the
refill rate is set so low (one token per 1,000 s) that no token comes back during
the test; the shipped defaults are tested where the count does not depend on speed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx

from gateway.core.messages import Author
from tests.conftest import SECURITY_DEFAULTS, GatewayFactory
from tests.realtime.test_ws_rooms import GENERAL, client
from tests.servers import InProcessGateway

# A message budget that does not refill while a test runs.
FROZEN = {"limit_messages_per_second": 0.001}
URL = f"/city/rooms/{GENERAL}/messages"


async def _post(gw: InProcessGateway, user: str, body: str, **extra: Any) -> httpx.Response:
    return await gw.http.post(URL, json={"body": body, **extra}, headers=gw.auth(user))


def _assert_rate_limited(response: httpx.Response) -> None:
    assert response.status_code == 429, response.text
    assert response.json()["code"] == "rate_limited"
    assert int(response.headers["Retry-After"]) >= 1


async def test_messages_refused_at_the_default_limit(gateway_factory: GatewayFactory) -> None:
    gw = await gateway_factory(**SECURITY_DEFAULTS)
    # Burst 30 at 10/s: however slow this machine, 300 posts in a row hit the limit.
    statuses = []
    for i in range(300):
        response = await _post(gw, "u_flood", f"m{i}")
        statuses.append(response.status_code)
        if response.status_code == 429:
            _assert_rate_limited(response)
            break
    assert statuses[-1] == 429
    assert statuses[:30] == [201] * 30  # the burst is honoured
    # Another user is not affected.
    assert (await _post(gw, "u_bystander", "hello")).status_code == 201


async def test_rest_and_websocket_share_one_budget_across_processes(
    gateway_factory: GatewayFactory,
) -> None:
    one = await gateway_factory(**{**SECURITY_DEFAULTS, **FROZEN, "limit_messages_burst": 5})
    two = await gateway_factory(**{**SECURITY_DEFAULTS, **FROZEN, "limit_messages_burst": 5})
    async with client(two, "u_ann") as ws:
        for i in range(3):
            assert (await _post(one, "u_ann", f"rest {i}")).status_code == 201
        for i in range(2):
            await ws.send({"event": "room.message.send", "room_id": GENERAL, "body": f"ws {i}"})
            await ws.until(lambda f, i=i: f.get("message", {}).get("body") == f"ws {i}")
        # Five used on two processes and two transports: the sixth is refused on both.
        _assert_rate_limited(await _post(two, "u_ann", "rest 4"))
        await ws.send({"event": "room.message.send", "room_id": GENERAL, "body": "ws 3"})
        error = await ws.next("error")
        assert error["code"] == "rate_limited"
        await ws.roundtrip()  # the socket stays open
    page = (await one.http.get(URL, params={"limit": 50})).json()
    assert [m["body"] for m in page] == ["rest 0", "rest 1", "rest 2", "ws 0", "ws 1"]


async def test_a_retried_client_msg_id_is_answered_not_refused_nor_charged(
    gateway_factory: GatewayFactory,
) -> None:
    gw = await gateway_factory(**{**SECURITY_DEFAULTS, **FROZEN, "limit_messages_burst": 2})
    first = await _post(gw, "u_ann", "one", client_msg_id="c1")
    assert first.status_code == 201
    # Retries while budget is left do not use it up ...
    for _ in range(5):
        again = await _post(gw, "u_ann", "one", client_msg_id="c1")
        assert (again.status_code, again.json()["id"]) == (200, first.json()["id"])
    assert (await _post(gw, "u_ann", "two", client_msg_id="c2")).status_code == 201
    # ... and once it is gone, a retry still gets its message back (200, not 429),
    retry = await _post(gw, "u_ann", "two", client_msg_id="c2")
    assert retry.status_code == 200, retry.text
    # while anything new is refused.
    _assert_rate_limited(await _post(gw, "u_ann", "three", client_msg_id="c3"))
    _assert_rate_limited(await _post(gw, "u_ann", "four"))


async def test_matrix_and_agent_authors_are_not_counted_as_the_user(
    gateway_factory: GatewayFactory,
) -> None:
    gw = await gateway_factory(**{**SECURITY_DEFAULTS, **FROZEN, "limit_messages_burst": 1})
    assert (await _post(gw, "u_ann", "one")).status_code == 201
    _assert_rate_limited(await _post(gw, "u_ann", "two"))
    messages = gw.runtime.messages
    for i in range(5):  # the Matrix inbox and Second Me post through the same service
        await messages.post(
            GENERAL, Author(matrix_id="@eve:example.org"), f"mx {i}", source="matrix"
        )
        await messages.post(GENERAL, Author(agent_id="ag_secondme_global"), f"agent {i}")


async def test_rooms_created_per_user_per_hour(gateway_factory: GatewayFactory) -> None:
    gw = await gateway_factory(**SECURITY_DEFAULTS)
    limit = SECURITY_DEFAULTS["limit_rooms_per_hour"]

    async def create(user: str, slug: str) -> httpx.Response:
        return await gw.http.post(
            "/city/rooms", json={"name": slug, "slug": slug}, headers=gw.auth(user)
        )

    for i in range(limit - 1):
        assert (await create("u_maker", f"room-{i}")).status_code == 201
    # A taken slug creates nothing (no Matrix room either) and is not charged.
    for _ in range(3):
        assert (await create("u_maker", "room-0")).status_code == 409
    assert (await create("u_maker", f"room-{limit}")).status_code == 201
    refused = await create("u_maker", "one-too-many")
    _assert_rate_limited(refused)
    assert int(refused.headers["Retry-After"]) > 60  # a token comes back every 6 minutes
    assert (await gw.http.get("/city/rooms/room_city_one-too-many")).status_code == 404
    assert (await create("u_other", "someone-else")).status_code == 201


async def _chunked(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def test_body_user_id_of_someone_else_is_forbidden(gateway: InProcessGateway) -> None:
    headers = {**gateway.auth("u_ann"), "Content-Type": "application/json"}
    body = b'{"body": "as bob", "user_id": "u_bob"}'
    # The fast path (Content-Length) and the FastAPI route (chunked) answer the same.
    fast = await gateway.http.post(URL, content=body, headers=headers)
    routed = await gateway.http.post(URL, content=_chunked(body), headers=headers)
    for response in (fast, routed):
        assert response.status_code == 403, response.text
        assert response.json()["code"] == "forbidden"
    assert (await gateway.http.get(URL)).json() == []
    # Naming yourself is fine.
    own = await _post(gateway, "u_ann", "as ann", user_id="u_ann")
    assert own.status_code == 201
    assert own.json()["author_user_id"] == "u_ann"
