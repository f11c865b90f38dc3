"""What the core needs from outside, as Protocols (implemented by adapters)."""

from __future__ import annotations

from typing import Protocol


class OnlineMembers(Protocol):
    """Counts distinct users connected to rooms (across every process)."""

    async def counts(self, room_ids: list[str]) -> dict[str, int]: ...


class NoOnlineMembers:
    async def counts(self, room_ids: list[str]) -> dict[str, int]:
        return dict.fromkeys(room_ids, 0)
