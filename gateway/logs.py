"""Logging: one JSON object per line in production, readable lines for `make dev`.

Every record logged while a request or WebSocket is handled carries its request id
and, once the caller is authenticated, its user id: the HTTP middleware
(gateway/metrics.py) and `bind_user_id` (gateway/auth.py) set two contextvars, and
`ContextFilter` copies them onto each record. asyncio gives every request its own
context, so concurrent requests never see each other's ids.
"""

from __future__ import annotations

import logging
import sys
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import TextIO

import orjson

from gateway.settings import Settings

REQUEST_ID: ContextVar[str | None] = ContextVar("city_request_id", default=None)
USER_ID: ContextVar[str | None] = ContextVar("city_user_id", default=None)

# Record attributes copied into the JSON object when present (set by the filter or
# passed as `extra=`).
_EXTRA_KEYS = ("request_id", "user_id", "room_id", "status", "duration_ms")


def bind_user_id(user_id: str | None) -> None:
    """Name the authenticated user in the logs of the current request."""
    if user_id is not None:
        USER_ID.set(user_id)


class ContextFilter(logging.Filter):
    """Adds `request_id` / `user_id` from the current context (unless given)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            record.request_id = REQUEST_ID.get()
        if getattr(record, "user_id", None) is None:
            record.user_id = USER_ID.get()
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key in _EXTRA_KEYS:
            value = getattr(record, key, None)
            if value is not None:
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


class HumanFormatter(logging.Formatter):
    """`12:00:01 INFO  gateway.access: GET /city/rooms 200 1.2ms [req 1a2b… u_1]`."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-5s %(name)s: %(message)s", "%H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        request_id = getattr(record, "request_id", None)
        user_id = getattr(record, "user_id", None)
        if request_id is None and user_id is None:
            return line
        tags = " ".join(v for v in (request_id and f"req {request_id}", user_id) if v)
        first, newline, rest = line.partition("\n")  # keep tracebacks below the tag
        return f"{first} [{tags}]{newline}{rest}"


def configure_logging(settings: Settings, stream: TextIO | None = None) -> None:
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.addFilter(ContextFilter())
    if settings.log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(HumanFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level.upper())
    # httpx logs every request at INFO (each Matrix and Agents Core call): too much.
    for chatty in ("httpx", "httpcore"):
        logging.getLogger(chatty).setLevel(max(logging.WARNING, root.level))
