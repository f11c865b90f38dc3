"""Logging: one JSON object per line in production, readable lines for `make dev`.

Every record logged while a request or WebSocket is handled carries its request id
and, once the caller is authenticated, its user id: the HTTP middleware
(gateway/http/middleware.py) and `bind_user_id` (gateway/core/auth.py) set two contextvars, and
`ContextFilter` copies them onto each record. asyncio gives every request its own
context, so concurrent requests never see each other's ids.

`LogHygiene` keeps what clients send from harming the logs, in both formats: query
strings are dropped from every logged URL or path (WebSockets carry the user's JWT
as `?token=`, appservice calls the hs_token as `?access_token=`), anything that
still looks like a credential is masked, and control characters in a message are
escaped so a `%0a` in a path cannot forge a log line. It is installed on the
loggers that log request URLs (so every handler, pytest's included, sees clean
records) and on our handler (so nothing else slips through).
"""

from __future__ import annotations

import logging
import re
import sys
import traceback
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import TextIO

import orjson

from gateway.infra.settings import Settings

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


# A path (a `/` starting a token) or an absolute URL, then its query string.
_QUERY_RE = re.compile(r"((?:\b[A-Za-z][A-Za-z0-9+.-]*://|(?<![\w.])/)[^\s\"'?#<>]*)\?[^\s\"'#<>]*")
# Credentials wherever they still appear: key=value pairs, Bearer values, JWTs.
_SECRET_PARAM_RE = re.compile(
    r"(?i)\b((?:access_|hs_|as_|id_|refresh_)?token|password|secret|sig|signature)"
    r"=[^\s&\"';,]+"
)
_BEARER_RE = re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9._~+/=-]+")
_JWT_RE = re.compile(r"\beyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
# C0, DEL, C1 and the Unicode line/paragraph separators some log viewers honour.
_CONTROL_RE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def drop_query(text: str) -> str:
    """`GET /ws/x?token=abc HTTP/1.1` -> `GET /ws/x HTTP/1.1` (also absolute URLs)."""
    return _QUERY_RE.sub(r"\1", text) if "?" in text else text


def mask_secrets(text: str) -> str:
    """Query strings dropped, then credentials that remain in any shape masked."""
    text = drop_query(text)
    if "=" in text:
        text = _SECRET_PARAM_RE.sub(r"\1=<redacted>", text)
    if "earer" in text or "EARER" in text:
        text = _BEARER_RE.sub(r"\1 <redacted>", text)
    if "eyJ" in text:
        text = _JWT_RE.sub("<jwt>", text)
    return text


def escape_control(text: str) -> str:
    """Control characters as `\\xNN` / `\\uNNNN`: one record stays one line."""
    return _CONTROL_RE.sub(_escape_one, text)


def _escape_one(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


class LogHygiene(logging.Filter):
    """Rewrites a record's message (and traceback) without secrets or control chars.

    Idempotent and cheap for ordinary messages (a few substring checks). The
    message is rendered once and stored with `args=None`, so every handler and
    formatter afterwards sees only the cleaned text.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "_city_clean", False):
            return True  # cleaned by a logger's filter before reaching our handler
        record._city_clean = True
        try:
            message = record.getMessage()
        except Exception:  # a broken format string: leave it to logging's own report
            return True
        # uvicorn ends "Exception in ASGI application\n" with a newline of its own.
        clean = escape_control(mask_secrets(message.rstrip("\n")))
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:
            # Exception messages may quote URLs (with their query strings); newlines
            # are the traceback's own, so only secrets are masked here.
            record.exc_text = "".join(traceback.format_exception(*record.exc_info)).rstrip()
        if record.exc_text:
            record.exc_text = mask_secrets(record.exc_text)
        return True


# The loggers that write request URLs or paths: uvicorn's ("WebSocket /path?query
# [accepted]", its access log, "Invalid HTTP request") and ours.
_URL_LOGGERS = (
    "uvicorn.error",
    "uvicorn.access",
    "gateway.access",
    "gateway.core.errors",
    "gateway.http.errors",
    "gateway.http.fastpath",
)


def install_log_hygiene() -> None:
    """Put `LogHygiene` on the loggers that write request data (idempotent).

    A logger's filters run before the record reaches any handler, pytest's capture
    included; `configure_logging` also puts one on our handler, which covers every
    other logger's records (filters on a parent logger do not apply to children).
    """
    for name in _URL_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, LogHygiene) for f in logger.filters):
            logger.addFilter(LogHygiene())


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
        if record.exc_text:
            entry["exc"] = record.exc_text  # already rendered (and cleaned) by LogHygiene
        elif record.exc_info:
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


def make_handler(log_format: str, stream: TextIO | None = None) -> logging.Handler:
    """The handler `configure_logging` installs: context, hygiene, the format."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.addFilter(ContextFilter())
    handler.addFilter(LogHygiene())
    handler.setFormatter(JsonFormatter() if log_format == "json" else HumanFormatter())
    return handler


def configure_logging(settings: Settings, stream: TextIO | None = None) -> None:
    handler = make_handler(settings.log_format, stream)
    install_log_hygiene()
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level.upper())
    # httpx logs every request at INFO (each Matrix and Agents Core call): too much.
    for chatty in ("httpx", "httpcore"):
        logging.getLogger(chatty).setLevel(max(logging.WARNING, root.level))
