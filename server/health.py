"""`/healthz` (the process answers) and `/readyz` (it can do its job)."""

from __future__ import annotations

from dataclasses import asdict

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from graph.persistence import PoolStats, migration_status
from server.services import Services

router = APIRouter()


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
        status = await migration_status(services.pool)
        missing = status.pending
        checks["database"] = "ok"
        checks["migrations"] = "ok" if not missing else {"pending": missing}
        if status.waiting_for_extension:
            checks["waiting_for_extension"] = status.waiting_for_extension
    except Exception as exc:
        checks["database"] = f"error: {type(exc).__name__}"
        missing = ["unknown"]
    try:
        queue_ok = await services.queue.check_connection_async()
        checks["queue"] = "ok" if queue_ok else "schema missing"
    except Exception as exc:
        queue_ok = False
        checks["queue"] = f"error: {type(exc).__name__}"
    if services.worker_task is not None:
        checks["worker"] = "stopped" if services.worker_task.done() else "ok"
    ready = checks["database"] == "ok" and not missing and queue_ok
    ready = ready and checks.get("worker", "ok") == "ok"
    body = {"ready": ready, "checks": checks, "pool": asdict(PoolStats.of(services.pool))}
    return JSONResponse(body, status_code=200 if ready else 503)
