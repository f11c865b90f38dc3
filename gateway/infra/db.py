"""PostgreSQL connection pool, and creating the database on first start."""

from __future__ import annotations

import asyncio
import logging
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import orjson

log = logging.getLogger(__name__)

# A new connection that takes longer than this is treated as an outage (asyncpg's
# default is 60 s, long enough for every request to pile up behind it).
CONNECT_TIMEOUT_SECONDS = 10.0

# What opening a connection raises when the server cannot be reached: refused or
# reset sockets, DNS failures, timeouts, and a server that is starting up or
# shutting down. (A wrong password or database name is a configuration error and
# stays what it is.)
_CONNECT_FAILURES: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.TooManyConnectionsError,
)


class DatabaseUnavailable(ConnectionError):
    """PostgreSQL could not be reached when opening a connection (raised by `_connect` below).

    A ConnectionError (so an OSError), as the errors it replaces were: code that
    already catches those keeps working.
    """


async def _init_connection(conn: asyncpg.Connection) -> None:
    # jsonb columns come back as Python objects; orjson is faster than json.
    await conn.set_type_codec(
        "jsonb",
        encoder=lambda v: orjson.dumps(v).decode(),
        decoder=orjson.loads,
        schema="pg_catalog",
    )


class PooledConnection(asyncpg.Connection):  # type: ignore[misc]
    """A pool connection released without the session-reset round trip.

    asyncpg resets every connection on release (UNLISTEN, RESET ALL, unlock all
    advisory locks...), which is a second round trip for every one-statement
    request and was ~13% of the message write path. Our code never leaves session
    state on a pooled connection: advisory locks are transaction-scoped or released
    in `finally`, and LISTEN uses a dedicated connection. Open transactions are
    still rolled back by asyncpg on release.
    """

    def get_reset_query(self) -> str:
        return ""


async def _connect(*args: Any, **kwargs: Any) -> asyncpg.Connection:
    """asyncpg.connect for the pool, with outages raised as `DatabaseUnavailable`.

    The pool opens connections lazily inside `acquire()`, so during an outage the
    failure surfaces in whatever request needed a connection; one exception type
    lets gateway/http/errors.py answer 503 `database_unavailable` precisely, without
    treating every OSError anywhere as a database problem.
    """
    try:
        return await asyncpg.connect(*args, **kwargs)
    except asyncio.CancelledError:
        raise
    except _CONNECT_FAILURES as exc:
        raise DatabaseUnavailable(f"cannot connect to PostgreSQL: {exc}") from exc


async def create_pool(database_url: str, size: int) -> asyncpg.Pool:
    await ensure_database(database_url)
    pool = await asyncpg.create_pool(
        database_url,
        min_size=min(2, size),
        max_size=size,
        init=_init_connection,
        connection_class=PooledConnection,
        connect=_connect,
        timeout=CONNECT_TIMEOUT_SECONDS,
    )
    assert pool is not None
    return pool


async def ensure_database(database_url: str) -> None:
    """Create the database named in the URL if it does not exist yet."""
    parts = urlsplit(database_url)
    name = parts.path.lstrip("/")
    if not name:
        return
    try:
        conn = await asyncpg.connect(database_url)
    except asyncpg.InvalidCatalogNameError:
        pass
    else:
        await conn.close()
        return
    admin_url = urlunsplit(parts._replace(path="/postgres"))
    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(f'CREATE DATABASE "{name.replace(chr(34), "")}"')
        log.info("created database %s", name)
    except (asyncpg.DuplicateDatabaseError, asyncpg.UniqueViolationError):
        pass  # another process won the race (reported either way)
    finally:
        await conn.close()
