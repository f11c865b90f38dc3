"""Rooms and messages over real HTTP against real PostgreSQL."""

from __future__ import annotations

import asyncio

from tests.servers import InProcessGateway


async def test_default_rooms_exist(gateway: InProcessGateway) -> None:
    response = await gateway.http.get("/city/rooms")
    assert response.status_code == 200
    rooms = {r["slug"]: r for r in response.json()}
    assert set(rooms) == {"general", "welcome", "builders"}
    general = rooms["general"]
    assert general["id"] == "room_city_general"
    assert general["name"] == "General"
    assert general["is_default"] is True
    assert general["members_online"] == 0
    assert general["last_event"] == general["created_at"]
    assert "matrix_room_id" in general and "matrix_alias" in general


async def test_create_room_and_conflict(gateway: InProcessGateway) -> None:
    headers = gateway.auth("u_1", "Alice")
    body = {"name": "Science", "slug": "science", "description": "Наукова кімната"}
    created = await gateway.http.post("/city/rooms", json=body, headers=headers)
    assert created.status_code == 201, created.text
    room = created.json()
    assert room["id"] == "room_city_science"
    assert room["description"] == "Наукова кімната"
    assert room["is_default"] is False

    again = await gateway.http.post("/city/rooms", json=body, headers=headers)
    assert again.status_code == 409
    assert again.json()["code"] == "slug_taken"

    page = await gateway.http.get("/city/rooms/room_city_science")
    assert page.status_code == 200
    assert page.json()["room"]["name"] == "Science"
    assert page.json()["messages"] == []


async def test_create_room_requires_token(gateway: InProcessGateway) -> None:
    response = await gateway.http.post("/city/rooms", json={"name": "X", "slug": "xx"})
    assert response.status_code == 401
    assert response.json()["code"] == "unauthorized"


async def test_post_and_read_messages(gateway: InProcessGateway) -> None:
    headers = gateway.auth("u_42", "Olena")
    posted = await gateway.http.post(
        "/city/rooms/room_city_general/messages", json={"body": "Привіт місто!"}, headers=headers
    )
    assert posted.status_code == 201, posted.text
    message = posted.json()
    assert message["id"].startswith("m_city_")
    assert message["room_id"] == "room_city_general"
    assert message["author_user_id"] == "u_42"
    assert message["author_agent_id"] is None
    assert message["author_matrix_id"] is None
    assert message["body"] == "Привіт місто!"

    page = (await gateway.http.get("/city/rooms/room_city_general")).json()
    assert [m["id"] for m in page["messages"]] == [message["id"]]

    rooms = {r["id"]: r for r in (await gateway.http.get("/city/rooms")).json()}
    assert rooms["room_city_general"]["last_event"] == message["created_at"]

    feed = (await gateway.http.get("/city/feed")).json()
    assert len(feed) == 1
    event = feed[0]
    assert event["id"].startswith("evt_city_")
    assert event["kind"] == "room_message"
    assert event["room_id"] == "room_city_general"
    assert event["user_id"] == "u_42"
    assert event["payload"]["body"] == "Привіт місто!"
    assert event["payload"]["snippet"] == "Привіт місто!"
    assert event["payload"]["source"] == "city"


async def test_client_msg_id_makes_retries_idempotent(gateway: InProcessGateway) -> None:
    headers = gateway.auth("u_1")
    url = "/city/rooms/room_city_general/messages"
    body = {"body": "once", "client_msg_id": "c-1"}
    results = await asyncio.gather(
        *(gateway.http.post(url, json=body, headers=headers) for _ in range(8))
    )
    statuses = sorted(r.status_code for r in results)
    assert statuses == [200] * 7 + [201]
    assert len({r.json()["id"] for r in results}) == 1
    history = (await gateway.http.get(url)).json()
    assert len(history) == 1
    assert len((await gateway.http.get("/city/feed")).json()) == 1

    # The same client_msg_id from another user is another message.
    other = await gateway.http.post(url, json=body, headers=gateway.auth("u_2"))
    assert other.status_code == 201
    assert other.json()["id"] != results[0].json()["id"]


async def test_message_pagination(gateway: InProcessGateway) -> None:
    headers = gateway.auth("u_1")
    url = "/city/rooms/room_city_welcome/messages"
    ids = []
    for i in range(120):
        r = await gateway.http.post(url, json={"body": f"msg {i}"}, headers=headers)
        ids.append(r.json()["id"])

    page = (await gateway.http.get("/city/rooms/room_city_welcome")).json()["messages"]
    assert [m["id"] for m in page] == ids[-50:]

    older = (await gateway.http.get(url, params={"before": ids[-50], "limit": 30})).json()
    assert [m["id"] for m in older] == ids[-80:-50]
    oldest = (await gateway.http.get(url, params={"before": ids[5], "limit": 30})).json()
    assert [m["id"] for m in oldest] == ids[:5]

    unknown = await gateway.http.get(url, params={"before": "m_city_nope"})
    assert unknown.status_code == 404
    assert unknown.json()["code"] == "message_not_found"


async def test_feed_pagination_newest_first(gateway: InProcessGateway) -> None:
    headers = gateway.auth("u_1")
    for i in range(30):
        await gateway.http.post(
            "/city/rooms/room_city_general/messages", json={"body": f"n{i}"}, headers=headers
        )
    first = (await gateway.http.get("/city/feed")).json()
    assert [e["payload"]["body"] for e in first] == [f"n{i}" for i in range(29, 9, -1)]
    rest = (await gateway.http.get("/city/feed", params={"before": first[-1]["id"]})).json()
    assert [e["payload"]["body"] for e in rest] == [f"n{i}" for i in range(9, -1, -1)]


async def test_long_body_snippet(gateway: InProcessGateway) -> None:
    body = "слово " * 100
    r = await gateway.http.post(
        "/city/rooms/room_city_general/messages", json={"body": body}, headers=gateway.auth("u_1")
    )
    assert r.status_code == 201
    event = (await gateway.http.get("/city/feed")).json()[0]
    assert event["payload"]["body"] == body
    assert len(event["payload"]["snippet"]) <= 140
    assert event["payload"]["snippet"].endswith("…")


async def test_fast_path_and_documented_route_answer_alike(gateway: InProcessGateway) -> None:
    """A declared Content-Length is answered by FastPaths; a chunked body by the route."""
    url = "/city/rooms/room_city_general/messages"
    headers = {**gateway.auth("u_1"), "content-type": "application/json"}

    def chunked(data: bytes):  # type: ignore[no-untyped-def]
        async def body():  # type: ignore[no-untyped-def]
            yield data

        return body()

    cases = [
        (b'{"body": "hello", "client_msg_id": "same"}', 201, None),
        (b'{"body": 5}', 422, "validation_error"),
        (b"[1]", 422, "validation_error"),
        (b'{"body": "   "}', 422, "invalid_body"),
    ]
    for raw, status, code in cases:
        fast = await gateway.http.post(url, content=raw, headers=headers)
        routed = await gateway.http.post(url, content=chunked(raw), headers=headers)
        assert "content-length" not in routed.request.headers
        assert (fast.status_code, routed.status_code) == (status, 200 if status == 201 else status)
        if code:
            assert fast.json()["code"] == routed.json()["code"] == code
        else:  # the retry through the route returns the message the fast path stored
            assert routed.json() == fast.json()
    wrong_type = await gateway.http.post(
        url, content=b'{"body": "x"}', headers={**headers, "content-type": "text/plain"}
    )
    assert wrong_type.status_code == 415
    assert wrong_type.json()["code"] == "unsupported_media_type"
    metrics = (await gateway.http.get("/metrics")).text
    assert 'route="/city/rooms/{room_id}/messages"' in metrics
