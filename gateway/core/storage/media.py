"""SQL for media from Matrix: the attachment a stored message has for a file."""

from __future__ import annotations

from gateway.core.models import Attachment
from gateway.core.storage import Executor


async def find_attachment(db: Executor, server_name: str, media_id: str) -> Attachment | None:
    """The newest message's attachment for `mxc://server_name/media_id`, if any.

    Served by ix_city_room_messages_media (migrations/0008_replies_media.sql).
    """
    value = await db.fetchval(
        """select attachment from city_room_messages
           where attachment is not null
             and attachment->>'media_id' = $2 and attachment->>'server_name' = $1
           order by seq desc limit 1""",
        server_name,
        media_id,
    )
    return Attachment.from_stored(value) if value is not None else None
