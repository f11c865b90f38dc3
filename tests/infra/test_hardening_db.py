"""A PostgreSQL outage answers 503 and keeps connections (issue 9, item 12; SPEC §5).

During a PostgreSQL stop, posts used to get 500 `internal_error` and GET routes
reset the keep-alive connection after each 500. Now every route answers 503
`database_unavailable` with `Retry-After`, on the same connection, and works again
when the database is back; a retried post with the same `client_msg_id` is stored
once.

The outage is real: a private PostgreSQL cluster (the dev stack's helper,
devstack/postgres.py) on a free port, stopped and restarted inside the
test, so the machine's shared server is untouched.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import httpx
import pytest
import redis.exceptions

from devstack.postgres import PrivatePostgres
from tests.conftest import GatewayFactory
from tests.servers import free_port, wait_until

ROOM = "room_city_general"
MSG_PATH = f"/city/rooms/{ROOM}/messages"


@pytest.fixture
async def private_pg() -> AsyncIterator[PrivatePostgres]:
    # Under /tmp itself: as root the cluster runs as `postgres`, which must be able
    # to enter the directory (pytest's tmp_path is private to root).
    root = Path(tempfile.mkdtemp(prefix="city-pg-outage-", dir="/tmp"))
    pg = PrivatePostgres(root, free_port())
    try:
        await pg.start()
        yield pg
    finally:
        await pg.stop()
        shutil.rmtree(root, ignore_errors=True)


def _local_port(response: httpx.Response) -> int:
    """The client-side port of the TCP connection that carried `response`."""
    stream = response.extensions["network_stream"]
    return int(stream.get_extra_info("client_addr")[1])


def _assert_unavailable(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert response.json()["code"] == "database_unavailable", response.text
    assert int(response.headers["Retry-After"]) >= 1


async def _chunked(body: bytes) -> AsyncIterator[bytes]:
    yield body  # no Content-Length: the FastAPI route, not the fast path


async def test_postgres_outage_answers_503_on_the_same_connection(
    gateway_factory: GatewayFactory, private_pg: PrivatePostgres
) -> None:
    gw = await gateway_factory(database_url=private_pg.url("city_outage"))
    auth = gw.auth("u_outage")
    # One connection for everything: a dropped one would show as a new local port.
    async with httpx.AsyncClient(
        base_url=gw.base_url,
        timeout=30,
        limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
    ) as client:
        r = await client.get("/city/rooms")
        assert r.status_code == 200, r.text
        port = _local_port(r)

        await private_pg.stop()
        post = {"body": "during the outage", "client_msg_id": "outage-1"}
        for _ in range(3):
            requests = [
                client.post(MSG_PATH, json=post, headers=auth),  # the fast path
                client.post(  # the same route through FastAPI (chunked body)
                    MSG_PATH,
                    content=_chunked(b'{"body": "chunked", "client_msg_id": "outage-2"}'),
                    headers={**auth, "Content-Type": "application/json"},
                ),
                client.get("/city/rooms"),
                client.get(MSG_PATH),
                client.get(f"/city/rooms/{ROOM}"),
                client.get("/city/feed"),
            ]
            for request in requests:
                r = await request
                _assert_unavailable(r)
                assert _local_port(r) == port, "the connection was dropped"
        r = await client.get("/healthz")
        assert r.status_code == 200 and _local_port(r) == port

        await private_pg.start()

        async def posted() -> httpx.Response | None:
            r = await client.post(MSG_PATH, json=post, headers=auth)
            return r if r.status_code != 503 else None

        first = await wait_until(posted, timeout=30, interval=0.2)
        assert first.status_code == 201, first.text
        again = await client.post(MSG_PATH, json=post, headers=auth)
        assert again.status_code == 200, again.text
        assert again.json()["id"] == first.json()["id"]
        r = await client.get(MSG_PATH)
        assert r.status_code == 200
        stored = [m for m in r.json() if m["body"] == "during the outage"]
        assert len(stored) == 1, stored
        assert _local_port(r) == port


def test_what_counts_as_an_outage() -> None:
    """The mapping is precise: outages are 503, our own bugs stay 500s."""
    # Imported here: the names are new, and the test above must run on older code.
    from gateway.core.errors import unavailable_error
    from gateway.infra.db import DatabaseUnavailable

    for gone in (
        DatabaseUnavailable("cannot connect to PostgreSQL: refused"),
        asyncpg.ConnectionDoesNotExistError("closed in the middle of operation"),
        asyncpg.AdminShutdownError("terminating connection"),
        asyncpg.CannotConnectNowError("the database system is starting up"),
        asyncpg.InterfaceError("connection is closed"),
        asyncpg.InterfaceError("pool is closing"),
    ):
        error = unavailable_error(gone)
        assert error is not None and error.code == "database_unavailable", gone
        assert error.status == 503 and error.headers and "Retry-After" in error.headers
    redis_down = unavailable_error(redis.exceptions.ConnectionError("refused"))
    assert redis_down is not None and redis_down.code == "redis_unavailable"
    # Found inside exception groups and explicit causes too.
    group = ExceptionGroup("tasks", [ValueError("x"), DatabaseUnavailable("refused")])
    assert unavailable_error(group) is not None
    try:
        raise RuntimeError("wrapped") from asyncpg.AdminShutdownError("bye")
    except RuntimeError as wrapped:
        assert unavailable_error(wrapped) is not None
    # API misuse and ordinary errors are not outages.
    assert unavailable_error(asyncpg.InterfaceError("another operation is in progress")) is None
    assert unavailable_error(asyncpg.UniqueViolationError("duplicate")) is None
    assert unavailable_error(OSError("disk full")) is None
