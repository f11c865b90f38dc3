"""Liveness, readiness and metrics for operators."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter
from fastapi.responses import PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from gateway.app.metrics import refresh_on_scrape
from gateway.http.deps import RuntimeDep
from gateway.infra.jsonio import JSONResponse

router = APIRouter(tags=["operations"])
READY_TIMEOUT_SECONDS = 2.0


@router.get("/healthz")
async def healthz() -> JSONResponse:
    return JSONResponse({"status": "ok"})


@router.get("/readyz")
async def readyz(rt: RuntimeDep) -> JSONResponse:
    async def run(check_name: str) -> tuple[str, str | None]:
        try:
            await asyncio.wait_for(rt.ready_checks[check_name](), READY_TIMEOUT_SECONDS)
        except Exception as exc:
            return check_name, f"{type(exc).__name__}: {exc}" or "unavailable"
        return check_name, None

    results = await asyncio.gather(*(run(name) for name in rt.ready_checks))
    checks = {name: ("ok" if err is None else err) for name, err in results}
    ready = all(err is None for _, err in results)
    if ready:
        return JSONResponse({"status": "ready", "checks": checks})
    # Shaped like every other error (a `code` and a `message`), plus the checks.
    failing = ", ".join(name for name, err in results if err is not None)
    return JSONResponse(
        {
            "status": "not_ready",
            "code": "not_ready",
            "message": f"not ready: {failing}",
            "checks": checks,
        },
        status_code=503,
    )


@router.get("/metrics")
async def metrics(rt: RuntimeDep) -> PlainTextResponse:
    await refresh_on_scrape(rt)  # outbox/inbox gauges from PostgreSQL, cached
    return PlainTextResponse(generate_latest(), media_type=CONTENT_TYPE_LATEST)
