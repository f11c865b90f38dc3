"""Media from Matrix (SPEC §13): which files the city serves, and how big they may be.

A Matrix m.image / m.file / m.video / m.audio becomes a city message with an
`Attachment` (gateway/core/models.py); GET /city/media/{server_name}/{media_id}
streams that file from the homeserver through the appservice (the bridge's
`MatrixMedia`, gateway.core.ports). Only media that a stored message references is
served: the appservice can read any media of the federation, and without this rule
the gateway would be an open, anonymous proxy for all of it. A message deleted (or
redacted in Matrix) takes its file out of reach with it.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

from gateway.core.errors import AppError, not_found
from gateway.core.models import Attachment, AttachmentKind
from gateway.core.ports import MatrixMedia, MediaDownload
from gateway.core.storage import Executor
from gateway.core.storage import media as media_sql

# mxc://{server_name}/{media_id}. A server name is a DNS name, IPv4 or [IPv6] literal
# with an optional port (Matrix spec, "Server name"); a media id is opaque but made of
# A-Z a-z 0-9 _ - (spec, "Matrix Content (mxc://) URIs"). Anything else is refused
# before it is stored or requested.
SERVER_NAME_RE = re.compile(
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?|\[[0-9A-Fa-f:.]{2,45}\])(?::[0-9]{1,5})?"
)
MEDIA_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,255}")
MEDIA_KINDS: dict[str, AttachmentKind] = {
    "m.image": "image",
    "m.file": "file",
    "m.video": "video",
    "m.audio": "audio",
}
NAME_MAX_CHARS = 255
MIMETYPE_MAX_CHARS = 255


class MediaTooLarge(Exception):
    """The file grew past CITY_MEDIA_MAX_BYTES while streaming (its headers are sent)."""


def too_large(max_bytes: int) -> AppError:
    return AppError(
        413, "payload_too_large", f"the file is larger than the limit of {max_bytes} bytes"
    )


def parse_mxc(url: object) -> tuple[str, str] | None:
    """(server_name, media_id) of a valid mxc:// URI, else None."""
    if not isinstance(url, str) or not url.startswith("mxc://"):
        return None
    server_name, _, media_id = url[len("mxc://") :].partition("/")
    if SERVER_NAME_RE.fullmatch(server_name) and MEDIA_ID_RE.fullmatch(media_id):
        return server_name, media_id
    return None


def attachment_from_content(content: dict[str, Any]) -> Attachment | None:
    """The attachment of an unencrypted Matrix media message (None for anything else)."""
    kind = MEDIA_KINDS.get(str(content.get("msgtype")))
    parts = parse_mxc(content.get("url"))
    if kind is None or parts is None:
        return None
    info = content.get("info")
    info = info if isinstance(info, dict) else {}
    mimetype = info.get("mimetype")
    size = info.get("size")
    return Attachment(
        kind=kind,
        name=file_name(content) or kind,
        mimetype=mimetype[:MIMETYPE_MAX_CHARS].replace("\x00", "")
        if isinstance(mimetype, str) and mimetype
        else None,
        size=size if isinstance(size, int) and not isinstance(size, bool) and size >= 0 else None,
        server_name=parts[0],
        media_id=parts[1],
    )


def file_name(content: dict[str, Any]) -> str | None:
    """The file's name: `filename` if given (then `body` is a caption), else `body`."""
    for key in ("filename", "body"):
        value = content.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip().replace("\x00", "")[:NAME_MAX_CHARS]
    return None


class MediaService:
    def __init__(self, db: Executor, source: MatrixMedia | None, *, max_bytes: int) -> None:
        self._db = db
        self._source = source  # None without the bridge
        self.max_bytes = max_bytes

    async def find(self, server_name: str, media_id: str) -> Attachment:
        """The attachment a stored message has for this file: 422 `invalid_media_id` for
        what cannot be an mxc:// URI, 404 `media_not_found` for what no message has."""
        if not (SERVER_NAME_RE.fullmatch(server_name) and MEDIA_ID_RE.fullmatch(media_id)):
            raise AppError(422, "invalid_media_id", "not a Matrix server name and media id")
        found = await media_sql.find_attachment(self._db, server_name, media_id)
        if found is None:
            raise not_found("media_not_found", "no message has this file")
        return found

    async def open(self, attachment: Attachment) -> MediaDownload:
        """Start the download; 413 when the declared size is over the limit."""
        if attachment.size is not None and attachment.size > self.max_bytes:
            raise too_large(self.max_bytes)  # as the sender declared it: no request made
        if self._source is None:
            raise AppError(503, "matrix_unavailable", "the Matrix bridge is not configured")
        download = await self._source.download(attachment.server_name, attachment.media_id)
        length = download.content_length
        if length is not None and length > self.max_bytes:
            await download.aclose()
            raise too_large(self.max_bytes)
        return download

    def limited(self, download: MediaDownload) -> AsyncIterator[bytes]:
        """The body, cut off with MediaTooLarge past the limit, closed at the end."""
        return _limited(download, self.max_bytes)


async def _limited(download: MediaDownload, max_bytes: int) -> AsyncIterator[bytes]:
    seen = 0
    try:
        async for chunk in download.chunks():
            seen += len(chunk)
            if seen > max_bytes:
                # Headers are out: aborting the response is the only honest answer
                # (ending it normally would hand the client a truncated file).
                raise MediaTooLarge(f"media over {max_bytes} bytes")
            yield chunk
    finally:
        await download.aclose()
