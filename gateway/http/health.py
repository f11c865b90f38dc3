"""Liveness, readiness and metrics for operators."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter
from fastapi.responses import PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from gateway.http.deps import RuntimeDep
from gateway.http.responses import JSONResponse
from gateway.http.schemas import HealthOut, JSONOut, NotReadyOut, ReadyOut, error_responses

router = APIRouter(tags=["operations"], default_response_class=JSONOut)
READY_TIMEOUT_SECONDS = 2.0


@router.get("/healthz", response_model=HealthOut, responses=error_responses())
async def healthz() -> JSONResponse:
    """The process is alive (no dependency is asked)."""
    return JSONResponse({"status": "ok"})


@router.get(
    "/readyz",
    response_model=ReadyOut,
    responses={
        **error_responses(),
        503: {"model": NotReadyOut, "description": "a dependency does not answer"},
    },
)
async def readyz(rt: RuntimeDep) -> JSONResponse:
    """PostgreSQL, Redis and (when configured) Synapse answer within 2 s each."""

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


class MetricsText(PlainTextResponse):
    media_type = CONTENT_TYPE_LATEST


@router.get(
    "/metrics",
    response_class=MetricsText,
    response_description="Prometheus text exposition format",
    responses={
        413: {
            "description": "Request body over the configured limit",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorOut"}}},
        }
    },
)
async def metrics(rt: RuntimeDep) -> PlainTextResponse:
    """Prometheus metrics (`city_*`, plus the process's own)."""
    await rt.metrics.refresh()  # outbox/inbox gauges from PostgreSQL, cached
    return MetricsText(generate_latest())
