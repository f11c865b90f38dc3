"""Client for Agents Core, the service that answers Second Me.

Agents Core is someone else's service, so everything about it is treated as
unreliable: every call is bounded by one total timeout, every answer is checked,
and every failure becomes `AgentUnavailable` (or `AgentTimeout`) with a message a
person can act on. The service layer maps those to 502 `agent_unavailable` /
504 `agent_timeout`; nothing here knows about HTTP status codes of our own API.

Two transports, same contract (the core's `AgentsCore` port,
gateway.core.secondme.ports): HTTP (the default) and NATS request-reply on
`agents.invoke`.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Sequence
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import httpx

from gateway.core.secondme.ports import AgentsCore, AgentTimeout, AgentUnavailable, HistoryItem
from gateway.infra.settings import ConfigError

if TYPE_CHECKING:
    from gateway.infra.settings import Settings

log = logging.getLogger(__name__)

# An answer bigger than this is not a chat reply; refuse it instead of buffering it.
DEFAULT_MAX_RESPONSE_BYTES = 1024 * 1024
NATS_SUBJECT = "agents.invoke"


def _describe(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, str):
        return "an empty string"
    return f"of type {type(value).__name__}"


def extract_reply(data: object) -> str:
    """Pull the reply text out of an Agents Core answer or raise AgentUnavailable.

    Accepts `{"reply": str}`, `{"output": str}` and the `agents.reply` envelope
    `{"payload": {...}}`; `reply` wins over `output` when both are usable.
    """
    if not isinstance(data, dict):
        raise AgentUnavailable(f"Agents Core answered JSON {_describe(data)} instead of an object")
    fields: dict[Any, Any] = data
    payload = data.get("payload")
    if "reply" not in data and "output" not in data and isinstance(payload, dict):
        fields = payload
    problems = []
    for key in ("reply", "output"):
        if key in fields:
            value = fields[key]
            if isinstance(value, str) and value.strip():
                return value
            problems.append(f"'{key}' is {_describe(value)}")
    if not problems:
        raise AgentUnavailable("Agents Core answer has no 'reply' or 'output' field")
    raise AgentUnavailable("Agents Core answer has no usable reply text: " + ", ".join(problems))


def _parse_json(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:  # includes UnicodeDecodeError
        snippet = raw[:60].decode("utf-8", "replace")
        raise AgentUnavailable(
            f"Agents Core answered something that is not JSON: {snippet!r}"
        ) from None


class HttpAgentsCore:
    """`POST {base_url}/agents/{agent_id}/invoke` over one shared connection pool."""

    def __init__(
        self,
        base_url: str,
        token: str | None,
        connect_timeout: float,
        total_timeout: float,
        max_connections: int = 100,
        *,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
    ) -> None:
        self._base_url = base_url.rstrip("/")
        self._total_timeout = total_timeout
        self._max_response_bytes = max_response_bytes
        headers = {"Accept": "application/json", "User-Agent": "city-gateway"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        # httpx's own timeouts are per phase (a trickling body never trips the read
        # timeout); they stay as a backstop, the real bound is asyncio.timeout below.
        # The pool wait is bounded too, so a burst queues instead of piling up sockets.
        self._client = httpx.AsyncClient(
            headers=headers,
            timeout=httpx.Timeout(total_timeout, connect=connect_timeout),
            limits=httpx.Limits(
                max_connections=max_connections,
                max_keepalive_connections=min(max_connections, 20),
            ),
            follow_redirects=False,
        )

    async def invoke(
        self, *, agent_id: str, user_id: str, prompt: str, history: Sequence[HistoryItem]
    ) -> str:
        url = f"{self._base_url}/agents/{quote(agent_id, safe='')}/invoke"
        body = {
            "input": prompt,
            "context": {
                "user_id": user_id,
                "kind": "secondme",
                "history": [{"role": h.role, "content": h.content} for h in history],
            },
        }
        try:
            async with asyncio.timeout(self._total_timeout):
                raw = await self._post(url, body)
        except TimeoutError:
            raise self._fail(
                AgentTimeout(f"Agents Core did not answer within {self._total_timeout:g} s"),
                agent_id,
            ) from None
        except httpx.TimeoutException as exc:
            raise self._fail(
                AgentTimeout(f"Agents Core timed out ({type(exc).__name__})"), agent_id
            ) from None
        except httpx.ConnectError as exc:
            raise self._fail(
                AgentUnavailable(f"cannot connect to Agents Core: {exc}"), agent_id
            ) from None
        except httpx.HTTPError as exc:
            raise self._fail(
                AgentUnavailable(f"Agents Core connection failed: {type(exc).__name__}"),
                agent_id,
            ) from None
        except AgentUnavailable as exc:
            raise self._fail(exc, agent_id) from None
        try:
            return extract_reply(_parse_json(raw))
        except AgentUnavailable as exc:
            raise self._fail(exc, agent_id) from None

    async def _post(self, url: str, body: dict[str, Any]) -> bytes:
        async with self._client.stream("POST", url, json=body) as response:
            if not response.is_success:
                raise AgentUnavailable(f"Agents Core answered HTTP {response.status_code}")
            chunks: list[bytes] = []
            size = 0
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > self._max_response_bytes:
                    raise AgentUnavailable(
                        f"Agents Core answer is larger than {self._max_response_bytes} bytes"
                    )
                chunks.append(chunk)
            return b"".join(chunks)

    @staticmethod
    def _fail(exc: AgentUnavailable, agent_id: str) -> AgentUnavailable:
        # The message never holds the token or URL, so it is safe to log as is.
        log.warning("agents core call failed: agent_id=%s: %s", agent_id, exc.message)
        return exc

    async def aclose(self) -> None:
        await self._client.aclose()


class NatsAgentsCore:
    """Request-reply on `agents.invoke` with the seed's payload (plus `history`)."""

    def __init__(
        self,
        nats_url: str,
        timeout: float,
        *,
        subject: str = NATS_SUBJECT,
        connect_timeout: float = 5.0,
    ) -> None:
        self._url = nats_url
        self._timeout = timeout
        self._connect_timeout = connect_timeout
        self._subject = subject
        self._nc: Any = None
        self._lock = asyncio.Lock()

    async def _connection(self) -> Any:
        import nats  # imported lazily: only deployments using NATS pay for it

        async with self._lock:
            if self._nc is not None and not self._nc.is_closed:
                return self._nc

            async def quiet(exc: Exception) -> None:
                # nats-py's default callback logs a traceback per failed attempt.
                log.warning("agents core NATS connection error: %s", type(exc).__name__)

            try:
                async with asyncio.timeout(self._connect_timeout):
                    # Few, quick reconnect attempts: a dead server fails the call
                    # fast, and a client that gave up is replaced on the next call.
                    self._nc = await nats.connect(
                        self._url,
                        connect_timeout=self._connect_timeout,
                        max_reconnect_attempts=1,
                        reconnect_time_wait=0.25,
                        error_cb=quiet,
                        name="city-gateway-agents-core",
                    )
            except (OSError, TimeoutError, nats.errors.Error) as exc:
                raise AgentUnavailable(
                    f"cannot connect to NATS for Agents Core ({type(exc).__name__})"
                ) from None
            return self._nc

    async def invoke(
        self, *, agent_id: str, user_id: str, prompt: str, history: Sequence[HistoryItem]
    ) -> str:
        import nats

        message = {
            "event": "agents.invoke",
            "agent_id": agent_id,
            "payload": {
                "input": prompt,
                "user_id": user_id,
                "source": "secondme",
                "history": [{"role": h.role, "content": h.content} for h in history],
            },
        }
        try:
            async with asyncio.timeout(self._timeout):
                nc = await self._connection()
                reply = await nc.request(
                    self._subject, json.dumps(message).encode(), timeout=self._timeout
                )
            return extract_reply(_parse_json(reply.data))
        except AgentUnavailable as exc:
            failure = exc
        except nats.errors.NoRespondersError:
            failure = AgentUnavailable(
                f"no Agents Core is listening on NATS subject {self._subject!r}"
            )
        except TimeoutError:  # asyncio's and nats.errors.TimeoutError alike
            failure = AgentTimeout(f"Agents Core did not answer within {self._timeout:g} s")
        except nats.errors.Error as exc:
            failure = AgentUnavailable(f"NATS request to Agents Core failed ({type(exc).__name__})")
        log.warning("agents core call failed: agent_id=%s: %s", agent_id, failure.message)
        raise failure

    async def aclose(self) -> None:
        async with self._lock:
            if self._nc is not None and not self._nc.is_closed:
                await self._nc.close()
            self._nc = None


def build_agents_core(settings: Settings) -> AgentsCore | None:
    """The configured client, or None when Second Me has no Agents Core to talk to."""
    if settings.secondme_transport == "nats":
        if not settings.nats_url:
            raise ConfigError("invalid setting SECONDME_TRANSPORT: 'nats' requires NATS_URL")
        return NatsAgentsCore(
            settings.nats_url,
            settings.agents_core_timeout,
            connect_timeout=settings.agents_core_connect_timeout,
        )
    if not settings.agents_core_url:
        return None
    token = settings.agents_core_token
    return HttpAgentsCore(
        settings.agents_core_url,
        token.get_secret_value() if token else None,
        settings.agents_core_connect_timeout,
        settings.agents_core_timeout,
    )


def start_agents_core(settings: Settings, stack: AsyncExitStack) -> AgentsCore | None:
    """Starter: the configured client (closed on shutdown), or None when there is none."""
    client = build_agents_core(settings)
    if client is None:
        log.info("Second Me is off: AGENTS_CORE_URL is not set")
        return None
    stack.push_async_callback(client.aclose)
    return client


__all__ = [
    "AgentTimeout",
    "AgentUnavailable",
    "AgentsCore",
    "HistoryItem",
    "HttpAgentsCore",
    "NatsAgentsCore",
    "build_agents_core",
    "extract_reply",
    "start_agents_core",
]
