"""Logs and metrics are safe to ship anywhere (issue 9, items 3 and 10; SPEC §12).

- No token reaches a log line or a metric: uvicorn logged every WebSocket URL with
  its `?token=` (the user's 7-day JWT) at INFO, in both formats.
- A `%0a` in a path cannot forge a log line: control characters are escaped.
- A client that goes away mid-body is a 499 in the access log and the metrics, not
  a 500 that pages someone.

Everything runs against real gateways: in this process (logs captured by pytest and
by our own handlers, both formats) and `city-gateway serve` as an OS process
(its log file).
"""

from __future__ import annotations

import asyncio
import io
import logging
import re
from collections.abc import Iterator

import orjson
import pytest
import websockets
from prometheus_client import REGISTRY

from gateway.infra import logs
from tests.conftest import make_settings
from tests.servers import Gateway, GatewayProcess, InProcessGateway, wait_until

ROOM = "room_city_general"
WS_PATH = f"/ws/city/rooms/{ROOM}"
MSG_PATH = f"/city/rooms/{ROOM}/messages"


def _handler(log_format: str, stream: io.StringIO) -> logging.Handler:
    """The handler `configure_logging` installs (built as it did before
    `make_handler` existed, so this file also runs against older code)."""
    make = getattr(logs, "make_handler", None)
    if make is not None:
        handler: logging.Handler = make(log_format, stream)
        return handler
    handler = logging.StreamHandler(stream)
    handler.addFilter(logs.ContextFilter())
    handler.setFormatter(logs.JsonFormatter() if log_format == "json" else logs.HumanFormatter())
    return handler


@pytest.fixture
def captured(caplog: pytest.LogCaptureFixture) -> Iterator[dict[str, io.StringIO]]:
    """INFO logs of this test: pytest's capture plus our handler in both formats."""
    caplog.set_level(logging.INFO)
    # An earlier test's uvicorn.Config with its default log config may have set these
    # loggers' levels and stopped them propagating, process-wide; that would hide the
    # very lines this test reads. Put them as the service runs them (restored after).
    uvicorn_loggers = [logging.getLogger(n) for n in ("uvicorn", "uvicorn.error", "uvicorn.access")]
    saved = [(lg.level, lg.propagate, lg.disabled) for lg in uvicorn_loggers]
    for lg in uvicorn_loggers:
        lg.setLevel(logging.INFO)
        lg.propagate, lg.disabled = True, False
    # The test's own HTTP client logs its request URLs at INFO; production keeps
    # httpx at WARNING (gateway/infra/logs.py), and they are not the server's logs.
    client_loggers = [logging.getLogger(n) for n in ("httpx", "httpcore")]
    levels = [lg.level for lg in client_loggers]
    for lg in client_loggers:
        lg.setLevel(logging.WARNING)
    streams = {fmt: io.StringIO() for fmt in ("json", "human")}
    handlers = [_handler(fmt, stream) for fmt, stream in streams.items()]
    root = logging.getLogger()
    for handler in handlers:
        root.addHandler(handler)
    try:
        yield streams
    finally:
        for handler in handlers:
            root.removeHandler(handler)
        for lg, level in zip(client_loggers, levels, strict=True):
            lg.setLevel(level)
        for lg, (level, propagate, disabled) in zip(uvicorn_loggers, saved, strict=True):
            lg.setLevel(level)
            lg.propagate, lg.disabled = propagate, disabled


async def _use_tokens_in_urls(gw: Gateway, token: str) -> None:
    """Every way a token rides in a URL: sockets (good and bad paths), REST queries."""
    async with websockets.connect(f"{gw.ws_url}{WS_PATH}?token={token}") as ws:
        await ws.send(orjson.dumps({"event": "ping"}).decode())
        await ws.recv()
    # A socket refused before accept (unknown path) is logged by uvicorn too.
    with pytest.raises(websockets.exceptions.InvalidStatus):
        async with websockets.connect(f"{gw.ws_url}/ws/nowhere?token={token}"):
            pass
    await gw.http.get("/city/rooms", params={"access_token": token, "token": token})
    await gw.http.get("/nope", params={"token": token})
    await gw.http.post(
        MSG_PATH, params={"token": token}, json={"body": "hi"}, headers=gw.auth("u_logs")
    )


async def test_no_token_in_logs_or_metrics_in_process(
    gateway: InProcessGateway,
    caplog: pytest.LogCaptureFixture,
    captured: dict[str, io.StringIO],
) -> None:
    token = gateway.token("u_logs")
    await _use_tokens_in_urls(gateway, token)
    metrics = (await gateway.http.get("/metrics")).text

    # The socket was logged (by uvicorn)...
    await wait_until(lambda: f"WebSocket {WS_PATH}" in caplog.text)
    human, json_lines = captured["human"].getvalue(), captured["json"].getvalue()
    assert f"WebSocket {WS_PATH}" in human and f"WebSocket {WS_PATH}" in json_lines
    # ...without the token, anywhere.
    for name, text in {
        "caplog": caplog.text,
        "human": human,
        "json": json_lines,
        "metrics": metrics,
    }.items():
        assert token not in text, name
        assert "token=" not in text, name
    assert f'"WebSocket {WS_PATH}" [accepted]' in human  # the path stays, the query goes
    assert 'route="/ws/city/rooms/{room_id}"' in metrics  # labels are route templates


async def test_no_token_in_the_log_file_of_city_gateway_serve() -> None:
    gw = await GatewayProcess(make_settings()).start()
    try:
        token = gw.token("u_logs")
        await _use_tokens_in_urls(gw, token)
        metrics = (await gw.http.get("/metrics")).text
    finally:
        await gw.stop()
    log_text = gw.log_path.read_text(errors="replace")
    assert f"WebSocket {WS_PATH}" in log_text  # it did log the socket...
    assert token not in log_text  # ...without the token
    assert "token=" not in log_text
    assert token not in metrics
    assert f'"WebSocket {WS_PATH}" [accepted]' in log_text


# A path that tries to start a new, fake access line.
FORGED = "/city/rooms/x%0a12:00:00%20INFO%20%20gateway.access:%20GET%20/admin%20200%0d%0a"
_HUMAN_LINE = re.compile(r"^\d\d:\d\d:\d\d [A-Z]+ +[\w.]+: ")


async def test_control_characters_in_a_path_cannot_forge_log_lines(
    gateway: InProcessGateway, captured: dict[str, io.StringIO]
) -> None:
    r = await gateway.http.get(FORGED)
    assert r.status_code == 404
    # Messages that carry decoded request data (an error on such a path) are escaped
    # too, whatever logger writes them.
    logging.getLogger("gateway.some_module").warning("failed on %s", "/a\n12:00:00 INFO  x: y")

    human = captured["human"].getvalue()
    assert "gateway.access" in human and "/admin" in human  # the request was logged...
    for line in human.splitlines():
        assert _HUMAN_LINE.match(line), f"forged or broken line: {line!r}"  # ...on one line
    assert "failed on /a\\x0a12:00:00 INFO  x: y" in human
    for line in captured["json"].getvalue().splitlines():
        entry = orjson.loads(line)
        assert "\n" not in entry["msg"] and "\r" not in entry["msg"], entry


def _count(route: str, status: int, method: str = "POST") -> float:
    value = REGISTRY.get_sample_value(
        "city_http_requests_total", {"method": method, "route": route, "status": str(status)}
    )
    return value or 0.0


async def _send_part_and_leave(gw: Gateway, head: str, part: bytes) -> None:
    """Send a request's head and part of its body, then close the connection."""
    _, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    writer.write(head.encode("latin-1") + b"\r\n" + part)
    await writer.drain()
    writer.close()
    await writer.wait_closed()


async def test_client_gone_mid_body_is_499_not_500(
    gateway: InProcessGateway, captured: dict[str, io.StringIO]
) -> None:
    auth = f"Authorization: Bearer {gateway.token('u_gone')}\r\n"
    host = f"Host: 127.0.0.1:{gateway.port}\r\n"
    declared = "Content-Type: application/json\r\nContent-Length: 1000\r\n"
    chunked = "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n"
    cases = [
        # the fast path (gateway/http/fastpath.py), a declared length never delivered
        ("/city/rooms/{room_id}/messages", f"POST {MSG_PATH} HTTP/1.1\r\n{host}{auth}{declared}"),
        # a FastAPI route reading the body itself
        ("/city/rooms", f"POST /city/rooms HTTP/1.1\r\n{host}{auth}{declared}"),
        # a chunked body, read by the body limiter before any route is matched
        ("<unmatched>", f"POST {MSG_PATH} HTTP/1.1\r\n{host}{auth}{chunked}"),
    ]
    for route, head in cases:
        before_499, before_500 = _count(route, 499), _count(route, 500)
        part = b'{"body": "hal' if "Content-Length" in head else b'5\r\n{"bod\r\n'
        await _send_part_and_leave(gateway, head, part)
        await wait_until(lambda r=route, b=before_499: _count(r, 499) == b + 1)
        assert _count(route, 500) == before_500, route

    human = captured["human"].getvalue()
    assert f"POST {MSG_PATH} 499" in human and "POST /city/rooms 499" in human
    assert "Traceback" not in human and "internal_error" not in human
    text = (await gateway.http.get("/metrics")).text
    assert 'route="/city/rooms/{room_id}/messages",status="499"' in text
