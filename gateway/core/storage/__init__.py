"""SQL only: asyncpg queries returning frozen records. No rules live here.

Functions take an `Executor` — a pool or a connection inside a transaction — so
callers decide the transaction boundary.
"""

from __future__ import annotations

from typing import Any

import asyncpg

Executor = asyncpg.Pool | asyncpg.Connection
Row = Any  # asyncpg.Record
