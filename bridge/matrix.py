"""A small typed client for the parts of Synapse's client-server API the bridge uses.

Every call authenticates with the appservice's `as_token`; `user_id=` masquerades as
one of our users (ghost, bot, Second Me), as the appservice spec allows. One
`httpx.AsyncClient` (one connection pool) serves the whole process.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx

from bridge import metrics
from gateway.infra.metrics import timed

CS = "/_matrix/client/v3"


class MatrixError(Exception):
    """Synapse answered with an error status."""

    def __init__(
        self, status: int, errcode: str, message: str, retry_after_ms: int | None = None
    ) -> None:
        super().__init__(f"HTTP {status} {errcode}: {message}")
        self.status = status
        self.errcode = errcode
        self.message = message
        self.retry_after_ms = retry_after_ms

    @property
    def transient(self) -> bool:
        """Worth retrying: rate limited or a server-side failure."""
        return self.status == 429 or self.status >= 500 or self.errcode == "M_LIMIT_EXCEEDED"

    @property
    def maybe_applied(self) -> bool:
        """The request may have taken effect although we saw an error (5xx)."""
        return self.status >= 500


class MatrixUnavailable(Exception):
    """No answer from Synapse (connection refused, reset, timeout)."""

    def __init__(self, message: str, *, maybe_applied: bool) -> None:
        super().__init__(message)
        # False when the request certainly never reached Synapse (connect failed).
        self.maybe_applied = maybe_applied


@dataclass(frozen=True, slots=True)
class Versions:
    versions: list[str]


def _q(value: str) -> str:
    return quote(value, safe="")


class MatrixClient:
    def __init__(
        self,
        base_url: str,
        as_token: str,
        *,
        timeout: float,
        max_connections: int = 50,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            headers={"Authorization": f"Bearer {as_token}"},
            timeout=httpx.Timeout(timeout, connect=min(timeout, 5.0)),
            limits=httpx.Limits(
                max_connections=max_connections, max_keepalive_connections=max_connections
            ),
            trust_env=False,
            transport=transport,
        )
        # Called with the user id after each write Synapse answered that was made as
        # one of our users, except presence itself: Synapse may count it as that
        # user's activity and bump an `unavailable` user to `online`
        # (bridge/presence.py re-asserts the city's state).
        self.on_acted_as: Callable[[str], None] | None = None

    async def aclose(self) -> None:
        await self._http.aclose()

    # --- plumbing -----------------------------------------------------------------
    async def request(
        self,
        method: str,
        path: str,
        *,
        user_id: str | None = None,
        body: Any = None,
        params: dict[str, str] | None = None,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        query = dict(params or {})
        if user_id is not None:
            query["user_id"] = user_id
        extra: dict[str, Any] = {}
        if timeout is not None:
            extra["timeout"] = timeout
        try:
            resp = await self._http.request(
                method,
                path,
                params=query or None,
                content=None if body is None else json.dumps(body).encode(),
                headers={"Content-Type": "application/json"} if body is not None else None,
                **extra,
            )
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            raise MatrixUnavailable(f"{type(exc).__name__}: {exc}", maybe_applied=False) from None
        except httpx.TransportError as exc:
            raise MatrixUnavailable(f"{type(exc).__name__}: {exc}", maybe_applied=True) from None
        if user_id is not None and method != "GET" and self.on_acted_as is not None:
            if not path.startswith(f"{CS}/presence/"):
                self.on_acted_as(user_id)
        try:
            data = resp.json()
        except ValueError:
            data = {}
        if not isinstance(data, dict):
            data = {}
        if resp.status_code >= 400:
            retry = data.get("retry_after_ms")
            if not isinstance(retry, int) and resp.headers.get("retry-after", "").isdigit():
                retry = int(resp.headers["retry-after"]) * 1000
            raise MatrixError(
                resp.status_code,
                str(data.get("errcode") or "M_UNKNOWN"),
                str(data.get("error") or resp.text[:300]),
                retry if isinstance(retry, int) else None,
            )
        return data

    # --- server and identity ------------------------------------------------------
    async def versions(self, timeout: float | None = None) -> Versions:
        data = await self.request("GET", "/_matrix/client/versions", timeout=timeout)
        return Versions([str(v) for v in data.get("versions", [])])

    async def whoami(self, user_id: str | None = None) -> str:
        data = await self.request("GET", f"{CS}/account/whoami", user_id=user_id)
        return str(data["user_id"])

    async def register(self, localpart: str) -> None:
        """Create an appservice user; one that already exists is fine."""
        try:
            await self.request(
                "POST",
                f"{CS}/register",
                params={"kind": "user"},
                body={
                    "type": "m.login.application_service",
                    "username": localpart,
                    "inhibit_login": True,
                },
            )
        except MatrixError as exc:
            if exc.errcode != "M_USER_IN_USE":
                raise

    async def set_displayname(self, user_id: str, name: str) -> None:
        await self.request(
            "PUT",
            f"{CS}/profile/{_q(user_id)}/displayname",
            user_id=user_id,
            body={"displayname": name},
        )

    async def set_presence(self, user_id: str, presence: str) -> None:
        await self.request(
            "PUT",
            f"{CS}/presence/{_q(user_id)}/status",
            user_id=user_id,
            body={"presence": presence},
        )

    async def set_typing(
        self, room_id: str, user_id: str, typing: bool, timeout_ms: int = 30_000
    ) -> None:
        """The user types in the room for `timeout_ms` (or stops: typing False)."""
        body: dict[str, Any] = {"typing": typing}
        if typing:
            body["timeout"] = timeout_ms
        await self.request(
            "PUT", f"{CS}/rooms/{_q(room_id)}/typing/{_q(user_id)}", user_id=user_id, body=body
        )

    async def get_presence(self, user_id: str) -> str | None:
        """A user's presence (online / unavailable / offline), asked as the bot."""
        data = await self.request("GET", f"{CS}/presence/{_q(user_id)}/status")
        value = data.get("presence")
        return value if isinstance(value, str) else None

    async def joined_members(self, room_id: str) -> dict[str, str | None]:
        """Joined user id -> display name of a room the bot is in."""
        data = await self.request("GET", f"{CS}/rooms/{_q(room_id)}/joined_members")
        joined = data.get("joined")
        if not isinstance(joined, dict):
            return {}
        out: dict[str, str | None] = {}
        for user_id, profile in joined.items():
            name = profile.get("display_name") if isinstance(profile, dict) else None
            out[str(user_id)] = name if isinstance(name, str) else None
        return out

    async def ping(self, appservice_id: str, transaction_id: str) -> int:
        """Ask Synapse to call our /_matrix/app/v1/ping; the round trip in ms."""
        data = await self.request(
            "POST",
            f"/_matrix/client/v1/appservice/{_q(appservice_id)}/ping",
            body={"transaction_id": transaction_id},
        )
        return int(data.get("duration_ms", 0))

    # --- rooms --------------------------------------------------------------------
    async def create_room(
        self,
        *,
        alias_localpart: str | None,
        name: str,
        topic: str | None,
        user_id: str | None = None,
        visibility: str = "public",
    ) -> str:
        """A public_chat room. Synapse binds `alias_localpart` *before* the room's
        join rules exist (joins through it are refused meanwhile): the bridge passes
        None and binds the alias itself once createRoom has returned (bridge/rooms.py)."""
        body: dict[str, Any] = {"preset": "public_chat", "visibility": visibility, "name": name}
        if alias_localpart is not None:
            body["room_alias_name"] = alias_localpart
        if topic:
            body["topic"] = topic
        data = await self.request("POST", f"{CS}/createRoom", user_id=user_id, body=body)
        return str(data["room_id"])

    async def set_alias(self, alias: str, room_id: str) -> None:
        """Bind `alias` to `room_id` (as the bot); 409 M_UNKNOWN if it is taken."""
        await self.request("PUT", f"{CS}/directory/room/{_q(alias)}", body={"room_id": room_id})

    async def publish_room(self, room_id: str) -> None:
        """List the room in the server's room directory (as its server's rules allow)."""
        await self.request(
            "PUT", f"{CS}/directory/list/room/{_q(room_id)}", body={"visibility": "public"}
        )

    async def leave(self, room_id: str, user_id: str | None = None) -> None:
        await self.request("POST", f"{CS}/rooms/{_q(room_id)}/leave", user_id=user_id, body={})

    async def state(
        self, room_id: str, event_type: str, state_key: str = "", *, user_id: str | None = None
    ) -> dict[str, Any] | None:
        """The content of a room state event; None if the room has none."""
        try:
            return await self.request(
                "GET",
                f"{CS}/rooms/{_q(room_id)}/state/{_q(event_type)}/{_q(state_key)}",
                user_id=user_id,
            )
        except MatrixError as exc:
            if exc.status == 404:
                return None
            raise

    async def set_state(
        self,
        room_id: str,
        event_type: str,
        content: dict[str, Any],
        state_key: str = "",
        *,
        user_id: str | None = None,
    ) -> str:
        data = await self.request(
            "PUT",
            f"{CS}/rooms/{_q(room_id)}/state/{_q(event_type)}/{_q(state_key)}",
            user_id=user_id,
            body=content,
        )
        return str(data["event_id"])

    async def resolve_alias(self, alias: str) -> str | None:
        try:
            data = await self.request("GET", f"{CS}/directory/room/{_q(alias)}")
        except MatrixError as exc:
            if exc.status == 404:
                return None
            raise
        return str(data["room_id"])

    async def join(self, room: str, user_id: str) -> str:
        data = await self.request("POST", f"{CS}/join/{_q(room)}", user_id=user_id, body={})
        return str(data["room_id"])

    async def send(
        self, room_id: str, event_type: str, txn_id: str, content: dict[str, Any], user_id: str
    ) -> str:
        with timed(metrics.MATRIX_SEND_SECONDS, metrics.MATRIX_SEND_FAILURES):
            data = await self.request(
                "PUT",
                f"{CS}/rooms/{_q(room_id)}/send/{_q(event_type)}/{_q(txn_id)}",
                user_id=user_id,
                body=content,
            )
        return str(data["event_id"])

    async def redact(
        self, room_id: str, event_id: str, txn_id: str, user_id: str, reason: str | None = None
    ) -> str:
        body: dict[str, Any] = {"reason": reason} if reason else {}
        data = await self.request(
            "PUT",
            f"{CS}/rooms/{_q(room_id)}/redact/{_q(event_id)}/{_q(txn_id)}",
            user_id=user_id,
            body=body,
        )
        return str(data["event_id"])

    async def recent_events(
        self, room_id: str, *, user_id: str, senders: list[str], limit: int = 50
    ) -> list[dict[str, Any]]:
        """The room's newest events from `senders`, newest first."""
        data = await self.request(
            "GET",
            f"{CS}/rooms/{_q(room_id)}/messages",
            user_id=user_id,
            params={
                "dir": "b",
                "limit": str(limit),
                "filter": json.dumps({"senders": senders, "types": ["m.room.message"]}),
            },
        )
        chunk = data.get("chunk", [])
        return [e for e in chunk if isinstance(e, dict)]

    async def relations(
        self, room_id: str, event_id: str, rel_type: str, event_type: str, *, user_id: str
    ) -> list[dict[str, Any]]:
        """The newest events relating to `event_id` with `rel_type` (one page, 100)."""
        data = await self.request(
            "GET",
            f"/_matrix/client/v1/rooms/{_q(room_id)}/relations/{_q(event_id)}"
            f"/{_q(rel_type)}/{_q(event_type)}",
            user_id=user_id,
            params={"limit": "100", "dir": "b"},
        )
        chunk = data.get("chunk", [])
        return [e for e in chunk if isinstance(e, dict)]

    async def event(self, room_id: str, event_id: str, *, user_id: str) -> dict[str, Any] | None:
        """One event of a room (None if Synapse does not know it)."""
        try:
            return await self.request(
                "GET", f"{CS}/rooms/{_q(room_id)}/event/{_q(event_id)}", user_id=user_id
            )
        except MatrixError as exc:
            if exc.status == 404:
                return None
            raise
