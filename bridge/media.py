"""Matrix media through the appservice: gateway.core.ports.MatrixMedia for the city.

Authenticated media first (`GET /_matrix/client/v1/media/download/{server}/{id}`,
Matrix v1.11, with the appservice's as_token, as mautrix bridges download media);
a homeserver that does not know that endpoint (404 / M_UNRECOGNIZED, before v1.11)
is asked at the legacy `/_matrix/media/v3/download/…`. The body streams (httpx
`stream`), never buffered: the city's route (gateway/http/media.py) passes it on as
it arrives and cuts it at CITY_MEDIA_MAX_BYTES.

One httpx client of its own: a download holds its connection for as long as the
reader takes, and must never take a connection the outbox needs.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from urllib.parse import quote

import httpx

from gateway.core.errors import AppError, not_found
from gateway.infra.settings import Settings

log = logging.getLogger(__name__)

AUTHENTICATED = "/_matrix/client/v1/media/download"
LEGACY = "/_matrix/media/v3/download"
CHUNK_BYTES = 64 * 1024


def _unavailable(detail: str) -> AppError:
    return AppError(503, "matrix_unavailable", f"the homeserver is unreachable: {detail}")


def _failed(status: int) -> AppError:
    return AppError(502, "media_unavailable", f"the homeserver answered {status} for this file")


class Download:
    """An open response whose body is read by `chunks()`; `aclose()` frees it."""

    def __init__(self, response: httpx.Response) -> None:
        self._response = response

    @property
    def content_type(self) -> str | None:
        value: str | None = self._response.headers.get("content-type")
        return value

    @property
    def content_length(self) -> int | None:
        if "content-encoding" in self._response.headers:
            return None  # the length of the encoded body, not of the file
        value = self._response.headers.get("content-length", "")
        return int(value) if value.isdigit() else None

    async def chunks(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._response.aiter_bytes(CHUNK_BYTES):
                yield chunk
        except httpx.HTTPError as exc:
            log.warning("media download broke off: %s: %s", type(exc).__name__, exc)
            raise

    async def aclose(self) -> None:
        await self._response.aclose()


class AppserviceMedia:
    def __init__(
        self,
        base_url: str,
        as_token: str,
        *,
        timeout: float,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._http = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            headers={"Authorization": f"Bearer {as_token}", "Accept-Encoding": "identity"},
            # `timeout` bounds each wait (connect, each read), not the whole download.
            timeout=httpx.Timeout(timeout, connect=min(timeout, 5.0)),
            follow_redirects=False,
            trust_env=False,
            transport=transport,
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def download(self, server_name: str, media_id: str) -> Download:
        tail = f"/{quote(server_name, safe='')}/{quote(media_id, safe='')}"
        response = await self._get(AUTHENTICATED + tail)
        if response.status_code != 200 and await _ask_legacy(response):
            response = await self._get(LEGACY + tail)
        if response.status_code == 200:
            return Download(response)
        status = response.status_code
        await response.aclose()
        if status == 404:
            raise not_found("media_not_found", "the homeserver has no such file")
        raise _failed(status)

    async def _get(self, path: str) -> httpx.Response:
        request = self._http.build_request("GET", path)
        try:
            return await self._http.send(request, stream=True)
        except httpx.TransportError as exc:
            raise _unavailable(type(exc).__name__) from None


async def _ask_legacy(response: httpx.Response) -> bool:
    """Whether a failed authenticated-media answer sends us to the legacy endpoint:
    the endpoint is unknown (M_UNRECOGNIZED; an older server's plain 404/405), or the
    file is not found there. The (small, JSON) error body is read and released."""
    try:
        await response.aread()
    except httpx.HTTPError:
        return False
    finally:
        await response.aclose()
    if response.status_code == 404:
        return True
    try:
        errcode = response.json().get("errcode")
    except (ValueError, AttributeError):
        errcode = None
    return response.status_code in (400, 405) and errcode in (None, "M_UNRECOGNIZED")


def start_matrix_media(settings: Settings, stack: AsyncExitStack) -> AppserviceMedia | None:
    """Starter: the media source (None unless the bridge is configured)."""
    if not settings.matrix_enabled:
        return None
    assert settings.matrix_homeserver_url is not None and settings.matrix_as_token is not None
    media = AppserviceMedia(
        settings.matrix_homeserver_url,
        settings.matrix_as_token.get_secret_value(),
        timeout=settings.matrix_request_timeout_seconds,
    )
    stack.push_async_callback(media.aclose)
    return media
