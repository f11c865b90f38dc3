"""GET /city/search over real HTTP against real PostgreSQL: the answer's shape, paging
through `next`, the room filter, errors, and messages from REST and from the Matrix
side (through the core service with a Matrix author, as the bridge's inbox does)."""

from __future__ import annotations

from typing import Any

from gateway.core.messages import Author
from tests.servers import InProcessGateway

GENERAL = "room_city_general"
WELCOME = "room_city_welcome"


async def _post(gw: InProcessGateway, body: str, room: str = GENERAL) -> dict[str, Any]:
    response = await gw.http.post(
        f"/city/rooms/{room}/messages", json={"body": body}, headers=gw.auth("u_7", "Taras")
    )
    assert response.status_code == 201, response.text
    message: dict[str, Any] = response.json()
    return message


async def test_search_answer_shape_and_highlight(gateway: InProcessGateway) -> None:
    posted = await _post(gateway, "Зустріч у кімнаті <b>завтра</b> & later")
    response = await gateway.http.get("/city/search", params={"q": "кімната"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["next"] is None
    (result,) = body["results"]
    assert {k: v for k, v in result["message"].items() if k != "reactions"} == {
        k: v for k, v in posted.items() if k != "reactions"
    }
    assert result["highlight"] == (
        "Зустріч у <mark>кімнаті</mark> &lt;b&gt;завтра&lt;/b&gt; &amp; later"
    )

    # Results carry reactions like room history; `me` for the optional token's user.
    reacted = await gateway.http.put(
        f"/city/rooms/{GENERAL}/messages/{posted['id']}/reactions/👍",
        headers=gateway.auth("u_7", "Taras"),
    )
    assert reacted.status_code in (200, 201), reacted.text
    mine = await gateway.http.get(
        "/city/search", params={"q": "кімната"}, headers=gateway.auth("u_7", "Taras")
    )
    assert mine.json()["results"][0]["message"]["reactions"] == [
        {"key": "👍", "count": 1, "me": True}
    ]
    anonymous = (await gateway.http.get("/city/search", params={"q": "кімната"})).json()
    assert anonymous["results"][0]["message"]["reactions"] == [
        {"key": "👍", "count": 1, "me": False}
    ]
    bad_token = await gateway.http.get(
        "/city/search", params={"q": "кімната"}, headers={"Authorization": "Bearer nope"}
    )
    assert bad_token.status_code == 401


async def test_paging_and_room_filter(gateway: InProcessGateway) -> None:
    posted = [await _post(gateway, f"meeting notes {i}") for i in range(5)]
    elsewhere = await _post(gateway, "meeting in welcome", room=WELCOME)
    seen: list[str] = []
    params: dict[str, Any] = {"q": "meetings", "limit": 2}
    while True:
        response = await gateway.http.get("/city/search", params=params)
        assert response.status_code == 200, response.text
        page = response.json()
        seen += [r["message"]["id"] for r in page["results"]]
        if page["next"] is None:
            break
        params["before"] = page["next"]
    # One English word: one tier, newest first.
    assert seen == [elsewhere["id"]] + [m["id"] for m in reversed(posted)]

    only = await gateway.http.get("/city/search", params={"q": "meeting", "room_id": WELCOME})
    assert [r["message"]["id"] for r in only.json()["results"]] == [elsewhere["id"]]


async def test_matrix_message_edit_and_delete(gateway: InProcessGateway) -> None:
    messages = gateway.runtime.messages
    stored = (
        await messages.post(
            GENERAL,
            Author(matrix_id="@mykola:matrix.example"),
            "Вітання з Matrix: бібліотека відкрита",
            source="matrix",
            matrix_event_id="$search1",
        )
    ).message
    found = (await gateway.http.get("/city/search", params={"q": "бібліотеки"})).json()
    (result,) = found["results"]
    assert result["message"]["id"] == stored.id
    assert result["message"]["author_matrix_id"] == "@mykola:matrix.example"

    await messages.edit(stored.id, "Вітання з Matrix: галерея відкрита")
    assert (await gateway.http.get("/city/search", params={"q": "бібліотека"})).json()[
        "results"
    ] == []
    (edited,) = (await gateway.http.get("/city/search", params={"q": "галереї"})).json()["results"]
    assert edited["message"]["body"] == "Вітання з Matrix: галерея відкрита"

    await messages.delete(stored.id)
    assert (await gateway.http.get("/city/search", params={"q": "галерея"})).json()["results"] == []


async def test_errors(gateway: InProcessGateway) -> None:
    cases: list[tuple[dict[str, Any], int, str]] = [
        ({"q": "  "}, 422, "empty_query"),
        ({"q": "слово " * 60}, 422, "query_too_long"),
        ({}, 422, "validation_error"),
        ({"q": "x", "limit": 0}, 422, "validation_error"),
        ({"q": "x", "limit": 101}, 422, "validation_error"),
        ({"q": "x", "before": "garbage"}, 422, "invalid_cursor"),
        ({"q": "x", "room_id": "room_city_missing"}, 404, "room_not_found"),
    ]
    for params, status, code in cases:
        response = await gateway.http.get("/city/search", params=params)
        assert response.status_code == status, (params, response.text)
        assert response.json()["code"] == code, params
