"""What the presence engine answers: statuses, states, transitions, refusals.

Shared by the engine (which parses its Lua script's replies into these), the
presence service that announces transitions, and the ports that read states.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

Status = Literal["online", "away", "offline"]
_STATUSES: dict[str, Status] = {"online": "online", "away": "away", "offline": "offline"}

TransitionSink = Callable[[list["PresenceTransition"]], Awaitable[None]]


class PresenceRefused(Exception):
    """A heartbeat over a limit: ``too_many_devices`` or ``rate_limited``."""

    def __init__(self, code: str, retry_after_ms: int) -> None:
        super().__init__(f"presence heartbeat refused: {code}")
        self.code = code
        self.retry_after_ms = retry_after_ms


@dataclass(frozen=True, slots=True)
class PresenceState:
    user_id: str
    status: Status
    last_active_ago: int  # ms; 0 for a user never seen


@dataclass(frozen=True, slots=True)
class PresenceTransition:
    user_id: str
    previous: Status
    status: Status
    last_active_ago: int  # ms


def parse_status(value: object) -> Status:
    """A status from a script reply; anything else is a bug in the script."""
    try:
        return _STATUSES[str(value)]
    except KeyError:
        raise RuntimeError(f"presence script returned unknown status {value!r}") from None


def outcome(user_id: str, reply: Any) -> tuple[PresenceState, PresenceTransition | None]:
    """The user's state and transition (if any) from a per-user script reply.

    Raises :class:`PresenceRefused` for a heartbeat the script refused.
    """
    if len(reply) == 2:
        raise PresenceRefused(str(reply[0]), int(reply[1]))
    previous, status, ago = parse_status(reply[0]), parse_status(reply[1]), int(reply[2])
    transition = None
    if previous != status:
        transition = PresenceTransition(user_id, previous, status, ago)
    return PresenceState(user_id, status, ago), transition
