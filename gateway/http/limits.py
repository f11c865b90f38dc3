"""Reject oversized request bodies before anything reads them into memory."""

from __future__ import annotations

import hmac
from urllib.parse import parse_qsl

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# Past this much, a rejected upload is cut off rather than read to its end.
_DRAIN_LIMIT_BYTES = 16 * 1024 * 1024


class BodySizeLimit:
    """413 `payload_too_large` for HTTP bodies over `max_bytes`.

    A declared Content-Length is checked up front (the server enforces that the
    body matches it). A body without one (chunked) is read here up to the limit
    and replayed to the app, so the app never sees more than `max_bytes`.

    `path_limits` grants larger limits under path prefixes (Synapse's appservice
    transactions) to one caller only: whoever presents `path_token` (the hs_token),
    as `Authorization: Bearer` or the legacy `?access_token=`, checked in constant
    time before a byte of the body is read. Anyone else there gets the ordinary
    limit; if their body is chunked or declared larger than that, they are answered
    at once, unread, with the Matrix error the appservice routes give (401
    `M_UNAUTHORIZED` without a token, 403 `M_FORBIDDEN` with a wrong one). With no
    `path_token` (the bridge is off) those prefixes get `max_bytes` like everything
    else.
    """

    def __init__(
        self,
        app: ASGIApp,
        max_bytes: int,
        path_limits: dict[str, int] | None = None,
        path_token: str | None = None,
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.path_limits = sorted((path_limits or {}).items(), key=lambda kv: -len(kv[0]))
        self.path_token = path_token.encode() if path_token else None

    def _prefix_limit(self, path: str) -> int | None:
        for prefix, limit in self.path_limits:
            if path.startswith(prefix):
                return limit
        return None

    def _refusal(self, presented: str | None) -> tuple[int, str, str] | None:
        """The Matrix error for a caller who is not Synapse, or None for Synapse."""
        assert self.path_token is not None
        if presented is None:
            return 401, "M_UNAUTHORIZED", "missing hs_token"
        if not hmac.compare_digest(presented.encode(), self.path_token):
            return 403, "M_FORBIDDEN", "invalid hs_token"
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.max_bytes
        larger = self._prefix_limit(scope["path"]) if self.path_limits else None
        if larger is not None and self.path_token is not None:
            refusal = self._refusal(_presented_token(scope))
            if refusal is None:
                limit = larger
            elif not _small_declared_body(scope, self.max_bytes):
                await _matrix_refusal(send, *refusal)
                return
            # else: no body or a small declared one, read under the ordinary limit;
            # the route gives the same refusal and the connection stays usable.
        for name, value in scope["headers"]:
            if name == b"content-length":
                if not value.isdigit() or int(value) > limit:
                    await self._drain(receive)
                    await self._reject(send, limit)
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
            if size > limit:
                if message.get("more_body", False):
                    await self._drain(receive)
                await self._reject(send, limit)
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

    async def _reject(self, send: Send, limit: int) -> None:
        body = orjson.dumps(
            {"code": "payload_too_large", "message": f"request body over {limit} bytes"}
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


def _small_declared_body(scope: Scope, max_bytes: int) -> bool:
    """No body, or a Content-Length within `max_bytes` (cheap to read and answer)."""
    length: bytes | None = None
    for name, value in scope["headers"]:
        if name == b"content-length":
            length = value
        elif name == b"transfer-encoding":
            return False
    return length is None or (length.isdigit() and int(length) <= max_bytes)


def _presented_token(scope: Scope) -> str | None:
    """The bearer token, else the last `access_token` query value (as Starlette reads
    it for the appservice routes), else None. Empty values count as none."""
    for name, value in scope["headers"]:
        if name == b"authorization":
            header: str = bytes(value).decode("latin-1")
            scheme, _, token = header.partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
            break
    query: bytes = scope.get("query_string", b"")
    if b"access_token" not in query:
        return None
    found = None
    for key, value in parse_qsl(query.decode("latin-1"), keep_blank_values=True):
        if key == "access_token":
            found = value
    return found or None


async def _matrix_refusal(send: Send, status: int, errcode: str, message: str) -> None:
    """A Matrix-shaped error (Synapse is the client) sent without reading the body;
    the connection closes, since the unread body cannot be skipped."""
    body = orjson.dumps({"errcode": errcode, "error": message})
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
