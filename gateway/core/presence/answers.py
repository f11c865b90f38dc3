"""What presence answers: the `presence.update` frame, and its 503 and 429 errors."""

from __future__ import annotations

import math

from gateway.core.errors import AppError
from gateway.core.metrics import RATE_LIMITED
from gateway.core.presence.types import PresenceRefused
from gateway.infra.jsonio import dumps

# How long one presence call may wait on Redis before it is answered 503.
REDIS_TIMEOUT_SECONDS = 2.0
_REFUSED_LABELS = {"too_many_devices": "presence_devices", "rate_limited": "heartbeats"}
_REFUSED_MESSAGES = {
    "too_many_devices": "this user has too many live presence devices",
    "rate_limited": "too many heartbeats from this device",
}


def presence_unavailable() -> AppError:
    return AppError(
        503, "presence_unavailable", "presence is unavailable (Redis cannot be reached)"
    )


def refused(exc: PresenceRefused) -> AppError:
    """429 for a heartbeat over a limit (SPEC §12), with Retry-After in seconds."""
    RATE_LIMITED.labels(_REFUSED_LABELS.get(exc.code, exc.code)).inc()
    return AppError(
        429,
        exc.code,
        _REFUSED_MESSAGES.get(exc.code, "presence heartbeat refused"),
        headers={"Retry-After": str(max(1, math.ceil(exc.retry_after_ms / 1000)))},
    )


def update_frame(user_id: str, status: str, last_active_ago: int) -> str:
    """`presence.update`, the frame every presence socket gets (and the channel payload)."""
    return dumps(
        {
            "event": "presence.update",
            "user_id": user_id,
            "status": status,
            "last_active_ago": last_active_ago,
        }
    ).decode()
