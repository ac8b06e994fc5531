"""`/healthz` (the process answers) and `/readyz` (it can do its job)."""

from __future__ import annotations

import asyncio
from dataclasses import asdict

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from graph.persistence import PoolStats, migration_status
from server.services import Services

router = APIRouter()

# A load balancer's probe times out soon; say "not ready" before it does.
_CHECK_TIMEOUT_S = 1.5


def _reason(exc: BaseException) -> str:
    """What went wrong, without connection strings (psycopg's messages name the host)."""
    if isinstance(exc, TimeoutError):
        return f"no answer within {_CHECK_TIMEOUT_S:g} s"
    cause = exc.__cause__ or exc
    return type(cause).__name__


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(request: Request) -> JSONResponse:
    """Ready when the database answers, every migration is applied and the queue's
    schema is reachable; the pool's figures come along for whoever is debugging."""
    services: Services = request.app.state.services
    checks: dict[str, object] = {}
    try:
        async with asyncio.timeout(_CHECK_TIMEOUT_S):
            status = await migration_status(services.pool)
        missing = status.pending
        checks["database"] = "ok"
        checks["migrations"] = "ok" if not missing else {"pending": missing}
        if status.waiting_for_extension:
            checks["waiting_for_extension"] = status.waiting_for_extension
    except Exception as exc:
        checks["database"] = f"unreachable: {_reason(exc)}"
        missing = ["unknown"]
    try:
        async with asyncio.timeout(_CHECK_TIMEOUT_S):
            queue_ok = await services.queue.check_connection_async()
        checks["queue"] = "ok" if queue_ok else "schema missing"
    except Exception as exc:
        queue_ok = False
        checks["queue"] = f"unreachable: {_reason(exc)}"
    if services.worker_task is not None:
        checks["worker"] = "stopped" if services.worker_task.done() else "ok"
    ready = checks["database"] == "ok" and not missing and queue_ok
    ready = ready and checks.get("worker", "ok") == "ok"
    body = {"ready": ready, "checks": checks, "pool": asdict(PoolStats.of(services.pool))}
    return JSONResponse(body, status_code=200 if ready else 503)
