"""What the core needs from outside, as Protocols (implemented by adapters).

The composition root (gateway/app/runtime.py) builds the adapters and hands them to
the core's constructors; the core never imports an adapter, and nothing is attached
to a core object after it is built.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from gateway.core.presence.engine import PresenceState

# A check that raises when a dependency is not usable (`/readyz` runs each one).
ReadyCheck = Callable[[], Awaitable[None]]


class OnlineMembers(Protocol):
    """Counts distinct users connected to rooms (across every process)."""

    async def counts(self, room_ids: list[str]) -> dict[str, int]: ...


class NoOnlineMembers:
    async def counts(self, room_ids: list[str]) -> dict[str, int]:
        return dict.fromkeys(room_ids, 0)


class RoomPresence(Protocol):
    """Where presence sends `room.presence` (the realtime hub implements it)."""

    async def rooms_of_user(self, user_id: str) -> list[str]:
        """Rooms where the user has a socket on any process."""
        ...

    def publish_room_presence(self, room_id: str, user_id: str, status: str) -> None:
        """Send `room.presence {room_id, user_id, status}` to a room's sockets."""
        ...


class MatrixIdentity(Protocol):
    """A city user's Matrix id (the bridge's ghost), for presence answers.

    The bridge's naming is the one place that spells ghost ids; without a bridge
    configured every answer is None.
    """

    def matrix_user_id(self, user_id: str) -> str | None: ...


class NoMatrixIdentity:
    def matrix_user_id(self, user_id: str) -> str | None:
        return None


class PresenceDelivery(Protocol):
    """This process's presence sockets (the realtime edge implements it)."""

    def deliver(self, frame: str) -> None:
        """Queue an encoded `presence.update` frame on every local presence socket;
        never blocks (a socket that fell too far behind is dropped)."""
        ...


class PresenceStatuses(Protocol):
    """The city's presence of some users (the presence service implements it)."""

    async def statuses(self, user_ids: Sequence[str]) -> list[PresenceState]: ...


class MessageOutbox(Protocol):
    """Another network that city-authored messages must reach (the Matrix bridge).

    A transactional outbox without a second round trip: the adapter contributes one
    data-modifying statement that the core runs as a CTE of the very statement that
    stores the message (gateway/core/messages.py says why), so message, feed event
    and queue row commit together or not at all. Absent (None) without a bridge.
    """

    def queue_statement(self, stored: str, author_name: str) -> str:
        """SQL queueing the rows of the CTE named `stored` (columns of
        city_room_messages: id, room_id, ...); `author_name` is the placeholder of
        the author's display name from their token (text, may be null)."""
        ...

    def queue_change_statement(self, change: OutboxChange, stored: str) -> str:
        """SQL queueing a city user's change of the rows of the CTE named `stored`,
        run as a CTE of the statement that makes the change:

        - "edit": city_room_messages rows after the edit (the new body);
        - "redact": city_room_messages rows as they were before their delete;
        - "react" / "unreact": city_message_reactions rows added / as they were
          before their removal (id, message_id, room_id, key, user_id, ...).
        """
        ...


OutboxChange = Literal["edit", "redact", "react", "unreact"]


class MatrixRoomActivity(Protocol):
    """Where the bridge sends what Matrix users do in a bridged room (the realtime hub
    implements it): `room.typing` / `room.presence` frames with `matrix_user_id`."""

    def matrix_typing(self, room_id: str, matrix_user_id: str, typing: bool) -> None: ...

    def matrix_presence(self, room_id: str, matrix_user_id: str, status: str) -> None: ...


class ConnectedUsers(Protocol):
    """City users connected to a room right now, on any process (the realtime hub)."""

    async def users_in(self, room_id: str) -> list[str]: ...

    async def display_names(self, user_ids: list[str]) -> dict[str, str]:
        """The names their tokens carried, for those that had one."""
        ...


@dataclass(frozen=True, slots=True)
class MatrixMember:
    """A real Matrix user joined to a bridged room (not a ghost or bot of ours)."""

    matrix_user_id: str
    display_name: str | None
    status: str  # Matrix's names: online | unavailable | offline


class MatrixMembers(Protocol):
    """The Matrix side of a city room's members (the bridge implements it)."""

    async def members(self, city_room_id: str) -> list[MatrixMember]: ...


class NoMatrixMembers:
    async def members(self, city_room_id: str) -> list[MatrixMember]:
        return []


class MediaDownload(Protocol):
    """One file being fetched from the homeserver, not yet read (the body streams)."""

    @property
    def content_type(self) -> str | None: ...

    @property
    def content_length(self) -> int | None:
        """As the homeserver declared it; None when it streams without one."""
        ...

    def chunks(self) -> AsyncIterator[bytes]: ...

    async def aclose(self) -> None: ...


class MatrixMedia(Protocol):
    """Fetches Matrix media through the appservice (the bridge implements it)."""

    async def download(self, server_name: str, media_id: str) -> MediaDownload:
        """The file of `mxc://{server_name}/{media_id}`; raises gateway.core.errors.AppError
        (404 `media_not_found`, 502 `media_unavailable`, 503 `matrix_unavailable`)."""
        ...
