"""Worker processes for `city-gateway serve --workers N` (docs/operations.md, "Workers").

With N > 1, uvicorn's multiprocess supervisor binds the socket once in the parent and
spawns N workers that accept on it. Each worker imports the app afresh (spawned, not
forked), loads the settings from the same environment and builds its own Runtime in
its lifespan: its own pools, its own fanout subscriber, its own `process_id` for room
member leases and presence. So everything that holds between hosts (presence
transitions announced once, room fanout, the Matrix outbox and inbox, Second Me
claims, the limits) holds between workers, because nothing is shared in memory.

The parent only migrates (once, before the workers start) and supervises: it restarts
a worker that dies, and on SIGTERM/SIGINT forwards SIGTERM to every worker and waits
for them to drain (each closes its sockets with 1001, finishes requests, stops).
"""

from __future__ import annotations

import asyncio
import math
import os
from pathlib import Path
from typing import Any

from gateway.infra.settings import Settings

_CGROUP_V2_MAX = Path("/sys/fs/cgroup/cpu.max")
_CGROUP_V1_QUOTA = Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us")
_CGROUP_V1_PERIOD = Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us")


def _cgroup_cpu_limit() -> float | None:
    """The container's CPU quota in cores (`docker run --cpus`), None when unlimited."""
    try:
        quota, period = _CGROUP_V2_MAX.read_text().split()[:2]
        if quota != "max":
            return int(quota) / int(period)
        return None
    except (OSError, ValueError):
        pass
    try:
        quota_us = int(_CGROUP_V1_QUOTA.read_text())
        period_us = int(_CGROUP_V1_PERIOD.read_text())
    except (OSError, ValueError):
        return None
    return quota_us / period_us if quota_us > 0 and period_us > 0 else None


def available_cpus() -> int:
    """CPUs this process may run on: affinity mask, capped by a cgroup quota.

    `nproc`/`os.cpu_count()` in a container report the host's CPUs, not `--cpus`.
    """
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    limit = _cgroup_cpu_limit()
    if limit is not None:
        cpus = min(cpus, max(1, math.ceil(limit)))
    return max(1, cpus)


def resolve_workers(requested: int | str) -> int:
    """`--workers` / `CITY_WORKERS`: a number ≥ 1, or "auto" (one per available CPU)."""
    if requested == "auto":
        return available_cpus()
    workers = int(requested)
    if workers < 1:
        raise ValueError("--workers must be at least 1")
    return workers


async def migrate_database(settings: Settings) -> list[str]:
    """Create the database if missing and apply pending migrations (advisory lock)."""
    import asyncpg

    from gateway.infra.db import ensure_database
    from gateway.infra.migrate import migrate

    await ensure_database(settings.database_url)
    conn = await asyncpg.connect(settings.database_url)
    try:
        return await migrate(conn)
    finally:
        await conn.close()


def migrate_before_workers(settings: Settings) -> None:
    """Migrate once in the parent, and tell the workers not to (they inherit the env).

    Each worker would find nothing left to do (the advisory lock serialises them), but
    a failing migration then stops the service once, with one error, instead of every
    worker failing its start-up.
    """
    if settings.city_auto_migrate:
        asyncio.run(migrate_database(settings))
        os.environ["CITY_AUTO_MIGRATE"] = "false"


def serve_workers(workers: int, **options: Any) -> None:
    """uvicorn's supervisor with `workers` processes of `worker_app`; exits non-zero
    (3, uvicorn's STARTUP_FAILURE) when a worker could not start.

    `uvicorn.run(..., workers=N)` exits 0 even then, which would tell an orchestrator
    with an on-failure restart policy that all is well.
    """
    import uvicorn
    from uvicorn.config import STARTUP_FAILURE
    from uvicorn.supervisors import Multiprocess

    config = uvicorn.Config("gateway.app.main:worker_app", factory=True, workers=workers, **options)
    supervisor = Multiprocess(config, sockets=[config.bind_socket()])
    supervisor.run()
    if any(process.exitcode == STARTUP_FAILURE for process in supervisor.processes):
        raise SystemExit(STARTUP_FAILURE)
