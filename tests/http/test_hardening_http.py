"""The HTTP edge before authentication (issue 9, items 4 and 9; SPEC §12).

- Appservice routes check Synapse's `hs_token` before reading the body: an
  unauthenticated chunked upload to `/_matrix/app/*` used to be read whole (up to
  32 MiB) first. Only authenticated Synapse gets the large limit.
- A JWT without `exp` is refused (it would be valid forever).

The refusal test needs no clock: the client sends part of a chunked body and never
finishes it, so an answer can only come from a server that did not wait for the
body (the old one waited for the rest, up to 32 MiB, and never answered).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import jwt
import orjson
import pytest
import websockets

from tests.conftest import JWT_SECRET, GatewayFactory
from tests.servers import InProcessGateway, free_port, wait_until
from tests.synapse_harness import matrix_overrides

TXN_PATHS = ("/_matrix/app/v1/transactions/t1", "/transactions/t1")
# Waiting this long for an answer only bounds a failing run; passing never waits.
ANSWER_TIMEOUT = 15.0


async def _bridged(gateway_factory: GatewayFactory) -> tuple[InProcessGateway, str]:
    """A gateway with the bridge on (its homeserver URL leads nowhere: the bridge's
    own calls fail and retry; the appservice routes Synapse calls work)."""
    overrides = matrix_overrides(free_port())
    gw = await gateway_factory(matrix_homeserver_url=f"http://127.0.0.1:{free_port()}", **overrides)
    return gw, str(overrides["matrix_hs_token"])


async def _partial_chunked_put(gw: InProcessGateway, path: str, headers: str) -> tuple[int, Any]:
    """PUT a chunked body of which only the first 64 KiB chunk is ever sent; return
    the status and JSON body the server answers with while the body is unfinished."""
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    try:
        writer.write(
            (
                f"PUT {path} HTTP/1.1\r\nHost: 127.0.0.1:{gw.port}\r\n{headers}"
                "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
            ).encode()
        )
        chunk = b'{"events": [], "x": "' + b"x" * (64 * 1024)
        writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))  # ...and never the rest
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), ANSWER_TIMEOUT)
        status = int(head.split(b" ", 2)[1])
        length = next(
            int(line.split(b":", 1)[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
        body = await asyncio.wait_for(reader.readexactly(length), ANSWER_TIMEOUT)
        return status, orjson.loads(body)
    finally:
        writer.close()


async def test_unauthenticated_appservice_upload_refused_before_the_body_is_read(
    gateway_factory: GatewayFactory,
) -> None:
    gw, _ = await _bridged(gateway_factory)
    for path in TXN_PATHS:
        # No token: 401 M_UNAUTHORIZED, as the appservice route itself answers.
        status, body = await _partial_chunked_put(gw, path, "")
        assert (status, body["errcode"]) == (401, "M_UNAUTHORIZED"), (path, body)
        # A wrong token, in the header or the legacy query parameter: 403 M_FORBIDDEN.
        status, body = await _partial_chunked_put(gw, path, "Authorization: Bearer nope\r\n")
        assert (status, body["errcode"]) == (403, "M_FORBIDDEN"), (path, body)
        status, body = await _partial_chunked_put(gw, f"{path}?access_token=nope", "")
        assert (status, body["errcode"]) == (403, "M_FORBIDDEN"), (path, body)
    # (With the right token the body is read: the next test sends 4 MiB that way.)


async def _chunks(total: int) -> AsyncIterator[bytes]:
    """A valid transaction of about `total` bytes, sent chunked (no Content-Length)."""
    event = orjson.dumps({"type": "m.typing", "content": {"x": "x" * 60_000}})
    yield b'{"events": [], "ephemeral": [' + event
    sent = len(event)
    while sent < total:
        yield b"," + event
        sent += len(event) + 1
    yield b"]}"


async def test_authenticated_synapse_still_gets_the_large_limit(
    gateway_factory: GatewayFactory,
) -> None:
    gw, hs_token = await _bridged(gateway_factory)
    for path in TXN_PATHS:
        r = await gw.http.put(
            path,
            content=_chunks(4 * 1024 * 1024),  # 16× the city's 256 KiB request limit
            headers={"Authorization": f"Bearer {hs_token}", "Content-Type": "application/json"},
        )
        assert r.status_code == 200, r.text
        assert r.json() == {}
        r = await gw.http.put(
            f"{path}2?access_token={hs_token}",
            content=_chunks(1024 * 1024),
            headers={"Content-Type": "application/json"},
        )
        assert r.status_code == 200, r.text


async def test_without_the_bridge_appservice_paths_get_the_small_limit(
    gateway: InProcessGateway,
) -> None:
    # Nobody can authenticate as Synapse: nobody gets more than the city's limit.
    r = await gateway.http.put(
        TXN_PATHS[0], content=_chunks(1024 * 1024), headers={"Content-Type": "application/json"}
    )
    assert r.status_code == 413, r.text
    assert r.json()["code"] == "payload_too_large"


# --- tokens without exp ----------------------------------------------------------
def _no_exp_token(user_id: str) -> str:
    return jwt.encode({"sub": user_id, "iat": int(time.time())}, JWT_SECRET, algorithm="HS256")


async def test_jwt_without_exp_is_refused(gateway: InProcessGateway) -> None:
    token = _no_exp_token("u_forever")
    auth = {"Authorization": f"Bearer {token}"}
    for _ in range(2):  # the second time from the verified-token cache, if it cached it
        r = await gateway.http.post(
            "/city/rooms/room_city_general/messages", json={"body": "hi"}, headers=auth
        )
        assert r.status_code == 401, r.text
        assert r.json()["code"] == "unauthorized"
        assert "exp" in r.json()["message"]
        r = await gateway.http.post(
            "/internal/matrix/presence/online", json={"user_id": "u_forever"}, headers=auth
        )
        assert r.status_code == 401, r.text
    # The socket refuses it too (4401, the bad-token close code).
    async with websockets.connect(
        f"{gateway.ws_url}/ws/city/rooms/room_city_general?token={token}"
    ) as ws:
        with pytest.raises(websockets.exceptions.ConnectionClosed) as closed:
            await ws.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401
    # A token with exp works, and stops working when it expires (also when cached).
    gw_token = jwt.encode(
        {"sub": "u_forever", "exp": int(time.time()) + 2}, JWT_SECRET, algorithm="HS256"
    )
    auth = {"Authorization": f"Bearer {gw_token}"}
    r = await gateway.http.post(
        "/city/rooms/room_city_general/messages", json={"body": "hi"}, headers=auth
    )
    assert r.status_code == 201, r.text

    async def expired() -> bool:
        r = await gateway.http.post(
            "/city/rooms/room_city_general/messages", json={"body": "again"}, headers=auth
        )
        return r.status_code == 401 and r.json()["message"] == "token expired"

    await wait_until(expired, timeout=10, interval=0.2)
