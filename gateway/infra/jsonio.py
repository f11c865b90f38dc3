"""JSON encoding in one place: orjson for speed (datetimes as RFC 3339)."""

from __future__ import annotations

from typing import Any

import orjson


def dumps(value: Any) -> bytes:
    return orjson.dumps(value)
