"""Replies both ways and media from Matrix (SPEC §13), through a real Synapse."""

from __future__ import annotations

import asyncio
import json
import secrets
from typing import Any

import asyncpg
import nio
from websockets.asyncio.client import connect

from tests.bridge.conftest import BridgeEnv, Element, MakeElement, PortGateway, StartBridged
from tests.servers import wait_until

GENERAL = "room_city_general"
# A 1x1 transparent PNG.
PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082"
)


async def _city_row(db: asyncpg.Connection, event_id: str) -> asyncpg.Record | None:
    return await db.fetchrow(
        "select id, body, reply_to, attachment from city_room_messages where matrix_event_id = $1",
        event_id,
    )


async def _api_message(gw: PortGateway, message_id: str) -> dict[str, Any]:
    """The message as GET /city/rooms/{room}/messages shows it."""
    page = (await gw.http.get(f"/city/rooms/{GENERAL}/messages", params={"limit": 200})).json()
    found = [m for m in page if m["id"] == message_id]
    assert len(found) == 1, page
    return dict(found[0])


async def _upload(alice: Element, data: bytes, content_type: str, name: str) -> str:
    resp, _ = await alice.client.upload(
        lambda *_: data, content_type=content_type, filename=name, filesize=len(data)
    )
    assert isinstance(resp, nio.UploadResponse), resp
    return str(resp.content_uri)


async def _send(alice: Element, room_id: str, content: dict[str, Any]) -> str:
    resp = await alice.client.room_send(room_id, "m.room.message", content)
    assert isinstance(resp, nio.RoomSendResponse), resp
    return str(resp.event_id)


def _media_path(mxc: str) -> str:
    return "/city/media/" + mxc.removeprefix("mxc://")


async def test_element_reply_to_a_city_message_is_a_city_reply_without_the_fallback(
    bridged: PortGateway, bridge_env: BridgeEnv, element: MakeElement, db: asyncpg.Connection
) -> None:
    """Proves Matrix → city: m.in_reply_to naming a bridged city message becomes
    `reply_to`, and the quoted fallback (body and <mx-reply>) stays out of the city."""
    alice = await element()
    room_id = await alice.join(bridge_env.alias("general"))
    text = f"original {secrets.token_hex(3)}"
    posted = await bridged.http.post(
        f"/city/rooms/{GENERAL}/messages", json={"body": text}, headers=bridged.auth("u_1")
    )
    assert posted.status_code == 201, posted.text
    original = posted.json()
    assert original["reply_to"] is None and original["attachment"] is None
    event = await alice.wait_for_message(room_id, lambda e: e["content"].get("body") == text)
    ghost = event["sender"]

    reply_event = await _send(
        alice,
        room_id,
        {
            "msgtype": "m.text",
            "body": f"> <{ghost}> {text}\n\nand my answer\nin two lines",
            "format": "org.matrix.custom.html",
            "formatted_body": f"<mx-reply><blockquote>{text}</blockquote></mx-reply>and my answer",
            "m.relates_to": {"m.in_reply_to": {"event_id": event["event_id"]}},
        },
    )
    row = await wait_until(lambda: _city_row(db, reply_event), timeout=15)
    assert row["body"] == "and my answer\nin two lines"
    assert row["reply_to"] == original["id"]
    shown = await _api_message(bridged, row["id"])
    assert shown["reply_to"] == original["id"]
    assert shown["body"] == "and my answer\nin two lines"

    # A reply to an event the city does not have: a plain message, fallback removed.
    unknown = await _send(
        alice,
        room_id,
        {
            "msgtype": "m.text",
            "body": "> <@someone:elsewhere> lost\n\nstill here",
            "m.relates_to": {"m.in_reply_to": {"event_id": "$not-bridged"}},
        },
    )
    row = await wait_until(lambda: _city_row(db, unknown), timeout=15)
    assert (row["body"], row["reply_to"]) == ("still here", None)


async def test_city_reply_reaches_element_with_in_reply_to_and_the_fallback(
    bridged: PortGateway, bridge_env: BridgeEnv, element: MakeElement, db: asyncpg.Connection
) -> None:
    """Proves city → Matrix: a REST reply and a socket reply arrive in Element with
    m.in_reply_to naming the original's event and the rich-reply fallback; and
    reply_to is checked (same room, a string) on both edges."""
    alice = await element()
    room_id = await alice.join(bridge_env.alias("general"))
    question = f"question {secrets.token_hex(3)}\nsecond <line>"
    question_event = await alice.send(room_id, question)
    asked = await wait_until(lambda: _city_row(db, question_event), timeout=15)

    answer = await bridged.http.post(
        f"/city/rooms/{GENERAL}/messages",
        json={"body": "the answer", "reply_to": asked["id"]},
        headers=bridged.auth("u_1", "Olena"),
    )
    assert answer.status_code == 201, answer.text
    assert answer.json()["reply_to"] == asked["id"]

    seen = await alice.wait_for_message(
        room_id, lambda e: e["content"].get("city.message_id") == answer.json()["id"]
    )
    content = seen["content"]
    assert content["m.relates_to"] == {"m.in_reply_to": {"event_id": question_event}}
    assert content["m.mentions"] == {"user_ids": [alice.user_id]}  # Alice is notified
    first, second = question.split("\n")
    assert content["body"] == f"> <{alice.user_id}> {first}\n> {second}\n\nthe answer"
    assert content["format"] == "org.matrix.custom.html"
    assert content["formatted_body"].startswith("<mx-reply><blockquote>")
    assert "second &lt;line&gt;</blockquote></mx-reply>the answer" in content["formatted_body"]
    assert question_event in content["formatted_body"]

    # The same over the room socket.
    token = bridged.token("u_2")
    async with connect(f"{bridged.ws_url}/ws/city/rooms/{GENERAL}?token={token}") as ws:
        await ws.send(
            json.dumps(
                {
                    "event": "room.message.send",
                    "room_id": GENERAL,
                    "body": "from the socket",
                    "reply_to": asked["id"],
                }
            )
        )
        frame = await _frame(ws, lambda f: f.get("event") == "room.message")
        assert frame["message"]["reply_to"] == asked["id"]
        await ws.send(
            json.dumps(
                {
                    "event": "room.message.send",
                    "room_id": GENERAL,
                    "body": "to nothing",
                    "reply_to": "m_city_missing",
                }
            )
        )
        error = await _frame(ws, lambda f: f.get("event") == "error")
        assert error["code"] == "reply_to_not_found"
    seen = await alice.wait_for_message(room_id, lambda e: e["content"]["body"].endswith("socket"))
    assert seen["content"]["m.relates_to"]["m.in_reply_to"]["event_id"] == question_event

    # REST errors: another room's message, a non-string.
    other = await bridged.http.post(
        "/city/rooms/room_city_welcome/messages",
        json={"body": "elsewhere"},
        headers=bridged.auth("u_1"),
    )
    assert other.status_code == 201, other.text
    wrong_room = await bridged.http.post(
        f"/city/rooms/{GENERAL}/messages",
        json={"body": "x", "reply_to": other.json()["id"]},
        headers=bridged.auth("u_1"),
    )
    assert (wrong_room.status_code, wrong_room.json()["code"]) == (404, "reply_to_not_found")
    not_text = await bridged.http.post(
        f"/city/rooms/{GENERAL}/messages",
        json={"body": "x", "reply_to": 5},
        headers=bridged.auth("u_1"),
    )
    assert (not_text.status_code, not_text.json()["code"]) == (422, "invalid_reply_to")


async def _frame(ws: Any, wanted: Any) -> dict[str, Any]:
    async def read() -> dict[str, Any]:
        while True:
            frame = json.loads(await ws.recv())
            if wanted(frame):
                return dict(frame)

    return await asyncio.wait_for(read(), 15)


async def test_element_image_is_an_attachment_the_gateway_streams_with_safe_headers(
    bridged: PortGateway, bridge_env: BridgeEnv, element: MakeElement, db: asyncpg.Connection
) -> None:
    """Proves Matrix → city media: an uploaded image becomes `attachment` (body =
    caption), its url streams the very bytes through the appservice (authenticated
    media) with nosniff, inline disposition, sandbox CSP and immutable caching; the
    ETag answers 304; a file nobody sent (uploaded only) is 404; a bad id is 422."""
    alice = await element()
    room_id = await alice.join(bridge_env.alias("general"))
    mxc = await _upload(alice, PNG, "image/png", "dot.png")
    event_id = await _send(
        alice,
        room_id,
        {
            "msgtype": "m.image",
            "body": "look at this",
            "filename": "dot.png",
            "url": mxc,
            "info": {"mimetype": "image/png", "size": len(PNG), "w": 1, "h": 1},
        },
    )
    row = await wait_until(lambda: _city_row(db, event_id), timeout=15)
    message = await _api_message(bridged, row["id"])
    assert message["body"] == "look at this"
    assert message["attachment"] == {
        "kind": "image",
        "name": "dot.png",
        "mimetype": "image/png",
        "size": len(PNG),
        "url": _media_path(mxc),
    }

    got = await bridged.http.get(message["attachment"]["url"])
    assert got.status_code == 200, got.text
    assert got.content == PNG
    assert got.headers["content-type"] == "image/png"
    assert got.headers["x-content-type-options"] == "nosniff"
    assert got.headers["content-disposition"].startswith('inline; filename="dot.png"')
    assert "sandbox" in got.headers["content-security-policy"]
    assert "default-src 'none'" in got.headers["content-security-policy"]
    assert got.headers["cache-control"] == "public, max-age=31536000, immutable"
    etag = got.headers["etag"]
    cached = await bridged.http.get(message["attachment"]["url"], headers={"If-None-Match": etag})
    assert cached.status_code == 304 and cached.content == b""

    # Uploaded but never sent in a bridged message: not served (no open proxy).
    unsent = await _upload(alice, b"secret", "text/plain", "secret.txt")
    missing = await bridged.http.get(_media_path(unsent))
    assert (missing.status_code, missing.json()["code"]) == (404, "media_not_found")
    bad = await bridged.http.get(f"/city/media/{bridge_env.server_name}/no.dots.allowed")
    assert (bad.status_code, bad.json()["code"]) == (422, "invalid_media_id")


async def test_html_file_is_a_download_never_rendered(
    bridged: PortGateway, bridge_env: BridgeEnv, element: MakeElement, db: asyncpg.Connection
) -> None:
    """Proves an uploaded HTML file (m.file, text/html) is served as an attachment
    download with nosniff and a sandbox CSP, so it can never run as a page of ours."""
    alice = await element()
    room_id = await alice.join(bridge_env.alias("general"))
    page = b"<html><script>alert(document.cookie)</script></html>"
    mxc = await _upload(alice, page, "text/html", "page.html")
    event_id = await _send(
        alice,
        room_id,
        {"msgtype": "m.file", "body": "page.html", "url": mxc, "info": {"mimetype": "text/html"}},
    )
    row = await wait_until(lambda: _city_row(db, event_id), timeout=15)
    assert row["body"] == "page.html"
    got = await bridged.http.get(_media_path(mxc))
    assert got.status_code == 200, got.text
    assert got.content == page
    assert got.headers["content-disposition"].startswith('attachment; filename="page.html"')
    assert got.headers["x-content-type-options"] == "nosniff"
    assert "sandbox" in got.headers["content-security-policy"]


async def test_media_over_the_limit_is_413_and_encrypted_media_is_explained(
    start_bridged: StartBridged,
    bridge_env: BridgeEnv,
    element: MakeElement,
    db: asyncpg.Connection,
) -> None:
    """Proves CITY_MEDIA_MAX_BYTES: a file over it is 413 `payload_too_large`, both when
    the sender declared the size and when only the homeserver's Content-Length tells;
    and an encrypted file becomes a message saying it is not available."""
    gw = await start_bridged(city_media_max_bytes=1000)
    alice = await element()
    room_id = await alice.join(bridge_env.alias("general"))
    big = secrets.token_bytes(4000)
    mxc = await _upload(alice, big, "application/octet-stream", "big.bin")
    declared = await _send(
        alice,
        room_id,
        {"msgtype": "m.file", "body": "big.bin", "url": mxc, "info": {"size": len(big)}},
    )
    mxc_undeclared = await _upload(alice, big, "application/octet-stream", "quiet.bin")
    undeclared = await _send(
        alice, room_id, {"msgtype": "m.file", "body": "quiet.bin", "url": mxc_undeclared}
    )
    for event_id, uri in ((declared, mxc), (undeclared, mxc_undeclared)):
        await wait_until(lambda e=event_id: _city_row(db, e), timeout=15)
        got = await gw.http.get(_media_path(uri))
        assert (got.status_code, got.json()["code"]) == (413, "payload_too_large"), uri

    encrypted = await _send(
        alice,
        room_id,
        {
            "msgtype": "m.image",
            "body": "secret.jpg",
            "file": {"url": mxc, "key": {}, "iv": "", "hashes": {}, "v": "v2"},
        },
    )
    row = await wait_until(lambda: _city_row(db, encrypted), timeout=15)
    assert row["attachment"] is None
    assert "encrypted attachment is not available" in row["body"]
    assert "secret.jpg" in row["body"]
