"""GET /city/media/{server_name}/{media_id}: a file from Matrix, streamed (SPEC §13).

Public, like room history: whoever may read a room may see its attachments. What
makes serving files that Matrix users uploaded safe in a browser:

- `X-Content-Type-Options: nosniff` and `Content-Security-Policy: default-src 'none';
  sandbox` on every answer: an uploaded HTML or SVG can neither be sniffed into
  something runnable nor run script, even when opened directly.
- `Content-Disposition: attachment` (a download), except raster images of a type
  browsers never execute (SAFE_INLINE; SVG is not one of them), which are `inline`
  so that an `<img>` shows them.
- Only files that a stored message references (gateway/core/media.py), so the
  gateway is not a proxy for arbitrary media of the federation.

Media ids are immutable, so the answer is cached for a year (`immutable`) with an
ETag; a matching `If-None-Match` is answered 304 without asking the homeserver.
"""

from __future__ import annotations

import re
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Path, Request
from starlette.background import BackgroundTask
from starlette.responses import Response, StreamingResponse

from gateway.core.media import MEDIA_ID_RE, SERVER_NAME_RE
from gateway.core.models import Attachment
from gateway.http.deps import RuntimeDep
from gateway.http.schemas import error_responses

router = APIRouter(prefix="/city/media", tags=["media"])

# Raster image types no browser executes; anything else is a download.
SAFE_INLINE = frozenset(
    {"image/png", "image/jpeg", "image/gif", "image/webp", "image/avif", "image/apng"}
)
CSP = "default-src 'none'; sandbox"
CACHE = "public, max-age=31536000, immutable"
_NOT_TOKEN = re.compile(r"[^A-Za-z0-9!#$&+.^_`|~-]")

ServerNamePath = Annotated[
    str,
    Path(
        description="the server part of the file's mxc:// URI",
        json_schema_extra={"pattern": f"^{SERVER_NAME_RE.pattern}$"},
    ),
]
MediaIdPath = Annotated[
    str,
    Path(
        description="the media id of the file's mxc:// URI",
        json_schema_extra={"pattern": f"^{MEDIA_ID_RE.pattern}$"},
    ),
]


@router.get(
    "/{server_name}/{media_id}",
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "the file, streamed",
            "content": {"application/octet-stream": {"schema": {"type": "string"}}},
        },
        304: {"description": "`If-None-Match` matched the ETag"},
        **error_responses(404, 422, 502, 503),
    },
)
async def get_media(
    server_name: ServerNamePath, media_id: MediaIdPath, request: Request, rt: RuntimeDep
) -> Response:
    """A file a Matrix message attached (its `attachment.url`), through the appservice.

    413 `payload_too_large` when it is larger than CITY_MEDIA_MAX_BYTES (known from
    its declared size; a file that turns out larger while streaming is cut off).
    """
    attachment = await rt.media.find(server_name, media_id)
    etag = f'"{server_name}/{media_id}"'
    common = {"ETag": etag, "Cache-Control": CACHE, "X-Content-Type-Options": "nosniff"}
    if etag in _etags(request.headers.get("if-none-match")):
        return Response(status_code=304, headers=common)
    download = await rt.media.open(attachment)
    media_type = download.content_type or attachment.mimetype or "application/octet-stream"
    essence = media_type.split(";", 1)[0].strip().lower()
    headers = {
        **common,
        "Content-Security-Policy": CSP,
        "Content-Disposition": _disposition(
            "inline" if essence in SAFE_INLINE else "attachment", attachment
        ),
    }
    if download.content_length is not None:
        headers["Content-Length"] = str(download.content_length)
    return StreamingResponse(
        rt.media.limited(download),
        media_type=media_type,
        headers=headers,
        background=BackgroundTask(download.aclose),  # also when the client went away
    )


def _etags(header: str | None) -> list[str]:
    if not header:
        return []
    return [tag.strip().removeprefix("W/") for tag in header.split(",")]


def _disposition(kind: str, attachment: Attachment) -> str:
    """`kind; filename="ascii"; filename*=UTF-8''utf8` (RFC 6266): both forms, so
    every browser gets a name and none can be tricked by quotes or separators."""
    name = attachment.name.replace("/", "_").replace("\\", "_") or attachment.kind
    ascii_name = _NOT_TOKEN.sub("_", name)[:200]
    return f"{kind}; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name[:200], safe='')}"
