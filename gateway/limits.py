"""Reject oversized request bodies before anything reads them into memory."""

from __future__ import annotations

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# Past this much, a rejected upload is cut off rather than read to its end.
_DRAIN_LIMIT_BYTES = 16 * 1024 * 1024


class BodySizeLimit:
    """413 `payload_too_large` for HTTP bodies over `max_bytes`.

    A declared Content-Length is checked up front (the server enforces that the
    body matches it). A body without one (chunked) is read here up to the limit
    and replayed to the app, so the app never sees more than `max_bytes`.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length":
                if not value.isdigit() or int(value) > self.max_bytes:
                    await self._drain(receive)
                    await self._reject(send)
                else:
                    await self.app(scope, receive, send)
                return
        if scope["method"] in ("GET", "HEAD", "OPTIONS", "DELETE"):
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # client went away
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                if message.get("more_body", False):
                    await self._drain(receive)
                await self._reject(send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _drain(self, receive: Receive) -> None:
        """Read and drop the rest of a rejected body (up to a bound).

        Answering before the client has finished sending makes most clients see a
        reset connection instead of the 413, so the body is consumed first.
        """
        dropped = 0
        while dropped < _DRAIN_LIMIT_BYTES:
            message = await receive()
            if message["type"] != "http.request":
                return
            dropped += len(message.get("body", b""))
            if not message.get("more_body", False):
                return

    async def _reject(self, send: Send) -> None:
        body = orjson.dumps(
            {"code": "payload_too_large", "message": f"request body over {self.max_bytes} bytes"}
        )
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
