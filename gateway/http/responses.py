"""The JSON response class every city route returns (orjson; datetimes as RFC 3339)."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import Response


class JSONResponse(Response):
    """A response rendered with orjson.

    Routes return these directly so the hot paths skip response-model
    validation; the routes still declare response models for the OpenAPI docs.
    """

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)
