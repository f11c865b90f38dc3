"""What Second Me needs from outside: an agent that answers, and a Matrix room to answer in.

`AgentsCore` is implemented by gateway.adapters.agents_core (HTTP or NATS);
`MatrixReplyChannel` by the bridge (bridge.secondme_channel). The composition root
passes them to the constructors; the core imports neither.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from gateway.core.storage.secondme import ReplyClaim


class AgentUnavailable(Exception):
    """Agents Core could not give a usable reply; `message` says why (no secrets)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class AgentTimeout(AgentUnavailable):
    """Agents Core did not answer in time."""


@dataclass(frozen=True)
class HistoryItem:
    role: str
    content: str


class AgentsCore(Protocol):
    async def invoke(
        self, *, agent_id: str, user_id: str, prompt: str, history: Sequence[HistoryItem]
    ) -> str:
        """Return the agent's reply text; `history` is oldest first and sent as given.

        Raises AgentUnavailable / AgentTimeout.
        """
        ...

    async def aclose(self) -> None: ...


class MatrixReplyChannel(Protocol):
    """Second Me's side of a Matrix room that is not bridged (a DM, a private group)."""

    async def send_dm(self, claim: ReplyClaim, text: str) -> str:
        """Post `text` into the claim's room as Second Me; returns the event id.

        Idempotent per claim (a take-over after a crash may send again).
        """
        ...

    async def room_context(self, claim: ReplyClaim, limit: int) -> list[HistoryItem]:
        """The room's messages (at most `limit`, oldest first) before the question."""
        ...
