"""Rules for city rooms: naming, creation, defaults, and what a room page shows."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from gateway.core.errors import AppError, not_found
from gateway.core.events import CityHooks
from gateway.core.ids import SLUG_RE, room_id_for_slug
from gateway.core.models import Message, Room
from gateway.core.ports import OnlineMembers
from gateway.core.ratelimit import TokenBucket
from gateway.core.storage import Executor
from gateway.core.storage import messages as message_sql
from gateway.core.storage import rooms as room_sql
from gateway.core.text import clean_text

log = logging.getLogger(__name__)

ROOM_PAGE_MESSAGES = 50


@dataclass(frozen=True, slots=True)
class RoomPage:
    room: Room
    messages: list[Message]
    members_online: int


def check_slug(slug: str) -> str:
    if not SLUG_RE.match(slug):
        raise AppError(
            422,
            "invalid_slug",
            "slug must be 2-64 characters: lowercase letters, digits, '-' or '_',"
            " starting with a letter or digit",
        )
    return slug


class RoomService:
    def __init__(
        self,
        db: Executor,
        hooks: CityHooks,
        members: OnlineMembers,
        limiter: TokenBucket | None = None,
    ) -> None:
        self._db = db
        self._hooks = hooks
        self.members = members
        # Rooms created per user (SPEC §12): each one is also a Matrix room.
        self._limiter = limiter

    async def list_rooms(self, limit: int, offset: int) -> list[tuple[Room, int]]:
        rooms = await room_sql.list_rooms(self._db, limit, offset)
        counts = await self.members.counts([r.id for r in rooms])
        return [(r, counts.get(r.id, 0)) for r in rooms]

    async def get(self, room_id: str) -> Room:
        room = await room_sql.get_room(self._db, room_id)
        if room is None:
            raise not_found("room_not_found", f"room {room_id!r} does not exist")
        return room

    async def page(self, room_id: str) -> RoomPage:
        room = await self.get(room_id)
        messages = await message_sql.latest_messages(self._db, room_id, ROOM_PAGE_MESSAGES)
        counts = await self.members.counts([room_id])
        return RoomPage(room, messages, counts.get(room_id, 0))

    async def create(
        self, *, name: str, slug: str, description: str | None, created_by: str | None
    ) -> Room:
        check_slug(slug)
        name = clean_text(name, field="name", max_chars=100, code="invalid_name").strip()
        if description is not None:
            description = clean_text(
                description, field="description", max_chars=1000, code="invalid_description"
            ).strip()
        limiter = self._limiter if created_by is not None else None
        if limiter is not None and created_by is not None:
            decision = await limiter.take(created_by)
            if not decision.allowed:
                raise decision.error(
                    f"too many rooms created: at most {limiter.burst} per hour;"
                    f" retry after {decision.retry_after_header} s"
                )
        room = await room_sql.insert_room(
            self._db,
            room_id=room_id_for_slug(slug),
            slug=slug,
            name=name,
            description=description,
            is_default=False,
            created_by=created_by,
        )
        if room is None:
            if limiter is not None and created_by is not None:
                await limiter.refund(created_by)  # nothing was created
            raise AppError(409, "slug_taken", f"a room with slug {slug!r} already exists")
        await self._hooks.emit_room(room)
        return room

    async def record_matrix_mapping(
        self, room_id: str, matrix_room_id: str, alias: str, *, db: Executor | None = None
    ) -> None:
        """The room's Matrix copy (created by the bridge), shown on the room's JSON."""
        await room_sql.set_matrix_mapping(
            db if db is not None else self._db, room_id, matrix_room_id, alias
        )

    async def ensure_defaults(self, slugs: list[str]) -> list[Room]:
        """Create the configured default rooms if missing; safe to run concurrently."""
        rooms: list[Room] = []
        for slug in slugs:
            check_slug(slug)
            created = await room_sql.insert_room(
                self._db,
                room_id=room_id_for_slug(slug),
                slug=slug,
                name=slug.replace("_", " ").replace("-", " ").title(),
                description=None,
                is_default=True,
                created_by=None,
            )
            if created is not None:
                log.info("created default room %s", created.id)
                await self._hooks.emit_room(created)
                rooms.append(created)
            else:
                existing = await room_sql.get_room(self._db, room_id_for_slug(slug))
                if existing is not None:
                    rooms.append(existing)
        return rooms
