"""A stand-in for Agents Core: a real HTTP server (and a NATS responder) for tests.

`FakeAgentsCore` listens on 127.0.0.1 on a free port in a background thread, answers
`POST /agents/{id}/invoke` deterministically and records every request it gets.
Its mode can be switched while it runs, for everything or per agent id:

- ``ok``               200 ``{reply_field: reply_fn(body)}`` (default ``"echo: " + input``)
- ``slow``             waits ``delay`` seconds (released early by stop()), then answers ok
- ``trickle``          sends headers at once, then the body one byte per ``delay`` seconds
- ``down``             listener closed: connection refused (global only)
- ``error500``         500 with a JSON error body
- ``not_json``         200 with an HTML body
- ``no_reply_field``   200 ``{"result": ...}``
- ``reply_wrong_type`` 200 ``{"reply": 42}``

    with FakeAgentsCore() as fake:
        client = HttpAgentsCore(fake.url, ...)
        fake.set_mode("slow", agent_id="ag_slow")
        ...
        fake.requests[-1].body["context"]["history"]

`FakeNatsAgent` does the same over NATS request-reply, on a unique subject by default
so that test runs sharing one nats-server do not answer each other.
"""

from __future__ import annotations

import asyncio
import json
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MODES = (
    "ok",
    "slow",
    "trickle",
    "down",
    "error500",
    "not_json",
    "no_reply_field",
    "reply_wrong_type",
)

ReplyFn = Callable[[dict[str, Any]], str]


def echo_reply(body: dict[str, Any]) -> str:
    return f"echo: {body.get('input')}"


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]  # keys lower-cased
    body: Any  # parsed JSON, or None when the body was not JSON
    raw: bytes


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    fake: FakeAgentsCore

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients hanging up on a slow answer is the point of some tests; stay quiet.
        pass


class _Handler(BaseHTTPRequestHandler):
    # HTTP/1.0: one request per connection, so "down" really refuses everything.
    protocol_version = "HTTP/1.0"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        fake = self.server.fake
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            body: Any = json.loads(raw)
        except ValueError:
            body = None
        fake._record(
            RecordedRequest(
                "POST", self.path, {k.lower(): v for k, v in self.headers.items()}, body, raw
            )
        )
        parts = self.path.split("/")
        if len(parts) != 4 or parts[1] != "agents" or parts[3] != "invoke":
            self._send(404, {"error": "not_found"})
            return
        try:
            self._answer(fake, fake.mode_for(parts[2]), body if isinstance(body, dict) else {})
        except OSError:
            pass  # the client went away (timed out); nothing to answer

    def _answer(self, fake: FakeAgentsCore, mode: str, body: dict[str, Any]) -> None:
        if mode == "slow" and fake._released.wait(fake.delay):
            return  # stopping: drop the request like a dying server would
        if mode in ("ok", "slow"):
            self._send(200, {fake.reply_field: fake.reply_fn(body)})
        elif mode == "trickle":
            data = json.dumps({fake.reply_field: fake.reply_fn(body)}).encode()
            self._send_head(200, "application/json", len(data))
            for i in range(len(data)):
                if fake._released.wait(fake.delay):
                    return
                self.wfile.write(data[i : i + 1])
                self.wfile.flush()
        elif mode == "error500":
            self._send(500, {"error": "internal", "message": "fake failure"})
        elif mode == "not_json":
            data = b"<html><body>Bad Gateway</body></html>"
            self._send_head(200, "text/html", len(data))
            self.wfile.write(data)
        elif mode == "no_reply_field":
            self._send(200, {"result": fake.reply_fn(body)})
        elif mode == "reply_wrong_type":
            self._send(200, {"reply": 42})
        else:  # pragma: no cover - set_mode validates
            raise AssertionError(mode)

    def _send_head(self, status: int, content_type: str, length: int) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(length))
        self.end_headers()
        self.wfile.flush()

    def _send(self, status: int, payload: object) -> None:
        data = json.dumps(payload).encode()
        self._send_head(status, "application/json", len(data))
        self.wfile.write(data)


class FakeAgentsCore:
    def __init__(
        self,
        *,
        reply_fn: ReplyFn = echo_reply,
        reply_field: str = "reply",
        delay: float = 30.0,
    ) -> None:
        self.reply_fn = reply_fn
        self.reply_field = reply_field  # "reply" or "output"
        self.delay = delay
        self._mode = "ok"
        self._agent_modes: dict[str, str] = {}
        self._requests: list[RecordedRequest] = []
        self._cond = threading.Condition()
        self._released = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._port = 0

    # --- lifecycle ----------------------------------------------------------------
    def start(self) -> FakeAgentsCore:
        self._released.clear()
        self._listen()
        return self

    def stop(self) -> None:
        self._released.set()  # let slow handlers finish now
        self._close_listener()

    def __enter__(self) -> FakeAgentsCore:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._port, "start() the fake first"
        return f"http://127.0.0.1:{self._port}"

    def _listen(self) -> None:
        # Port 0 the first time; afterwards the same port, so `url` survives "down".
        server = _Server(("127.0.0.1", self._port), _Handler)
        server.fake = self
        self._port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def _close_listener(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    # --- modes --------------------------------------------------------------------
    def set_mode(self, mode: str, *, agent_id: str | None = None) -> None:
        """Switch behaviour for all agents, or for one agent id only."""
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; one of {MODES}")
        if agent_id is not None:
            if mode == "down":
                raise ValueError("'down' closes the listener, so it cannot be per agent")
            with self._cond:
                self._agent_modes[agent_id] = mode
            return
        was_down = self._mode == "down"
        with self._cond:
            self._mode = mode
            self._agent_modes.clear()
        if mode == "down" and not was_down:
            self._close_listener()
        elif was_down and mode != "down":
            self._listen()

    def mode_for(self, agent_id: str) -> str:
        with self._cond:
            return self._agent_modes.get(agent_id, self._mode)

    # --- what was received --------------------------------------------------------
    def _record(self, request: RecordedRequest) -> None:
        with self._cond:
            self._requests.append(request)
            self._cond.notify_all()

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._cond:
            return list(self._requests)

    def wait_for_requests(self, count: int, timeout: float = 5.0) -> list[RecordedRequest]:
        """Block until at least `count` requests arrived (run it via asyncio.to_thread)."""
        with self._cond:
            if not self._cond.wait_for(lambda: len(self._requests) >= count, timeout):
                raise TimeoutError(f"expected {count} requests, got {len(self._requests)}")
            return list(self._requests)

    def clear(self) -> None:
        with self._cond:
            self._requests.clear()


NATS_MODES = ("ok", "output", "envelope", "silent", "not_json", "no_reply_field")


class FakeNatsAgent:
    """Answers Agents Core requests on NATS (real server) deterministically.

    Modes: ``ok`` ``{"reply"}``, ``output`` ``{"output"}``, ``envelope``
    ``{"event": "agents.reply", "payload": {"reply"}}``, ``silent`` (never answers),
    ``not_json``, ``no_reply_field``.
    """

    def __init__(
        self,
        nats_url: str = "nats://127.0.0.1:4222",
        *,
        subject: str | None = None,
        reply_fn: ReplyFn = echo_reply,
    ) -> None:
        self.nats_url = nats_url
        self.subject = subject or f"agents.invoke.test.{uuid.uuid4().hex}"
        self.reply_fn = reply_fn
        self.mode = "ok"
        self.received: list[Any] = []
        self._nc: Any = None
        self._arrived = asyncio.Event()

    async def start(self) -> FakeNatsAgent:
        import nats

        self._nc = await nats.connect(self.nats_url, name="fake-agents-core")
        # A queue group, so that several fakes on one subject answer once, like a service.
        await self._nc.subscribe(self.subject, queue="fake-agents-core", cb=self._on_request)
        await self._nc.flush()
        return self

    async def stop(self) -> None:
        if self._nc is not None:
            await self._nc.close()
            self._nc = None

    async def __aenter__(self) -> FakeNatsAgent:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def wait_for_requests(self, count: int, *, within: float = 5.0) -> list[Any]:
        async with asyncio.timeout(within):
            while len(self.received) < count:
                self._arrived.clear()
                await self._arrived.wait()
        return list(self.received)

    async def _on_request(self, msg: Any) -> None:
        try:
            message: Any = json.loads(msg.data)
        except ValueError:
            message = None
        self.received.append(message)
        self._arrived.set()
        payload = message.get("payload", {}) if isinstance(message, dict) else {}
        mode = self.mode
        if mode == "silent":
            return
        if mode == "not_json":
            await msg.respond(b"not json at all")
            return
        text = self.reply_fn(payload)
        answers: dict[str, object] = {
            "ok": {"reply": text},
            "output": {"output": text},
            "envelope": {"event": "agents.reply", "payload": {"reply": text}},
            "no_reply_field": {"result": text},
        }
        await msg.respond(json.dumps(answers[mode]).encode())
