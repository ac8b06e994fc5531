"""`/healthz` (the process answers) and `/readyz` (it can do its job)."""

from __future__ import annotations

import asyncio
from dataclasses import asdict

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from graph.infra.database import PoolStats, migration_status
from server.http.dependencies import services_of
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
    schema is reachable; the pool's figures come along for whoever is debugging. Both
    checks run at once, each bounded, so an unreachable database is said in time."""
    services = services_of(request)
    database, queue = await asyncio.gather(_check_database(services), _check_queue(services))
    checks: dict[str, object] = {**database, **queue}
    if services.worker_task is not None:
        checks["worker"] = "stopped" if services.worker_task.done() else "ok"
    ready = all(checks.get(name, "ok") == "ok" for name in ("database", "migrations", "queue"))
    ready = ready and checks.get("worker", "ok") == "ok"
    body = {"ready": ready, "checks": checks, "pool": asdict(PoolStats.of(services.pool))}
    return JSONResponse(body, status_code=200 if ready else 503)


async def _check_database(services: Services) -> dict[str, object]:
    try:
        async with asyncio.timeout(_CHECK_TIMEOUT_S):
            status = await migration_status(services.pool)
    except Exception as exc:
        return {"database": f"unreachable: {_reason(exc)}"}
    checks: dict[str, object] = {
        "database": "ok",
        "migrations": "ok" if not status.pending else {"pending": status.pending},
    }
    if status.waiting_for_extension:
        checks["waiting_for_extension"] = status.waiting_for_extension
    return checks


async def _check_queue(services: Services) -> dict[str, object]:
    try:
        async with asyncio.timeout(_CHECK_TIMEOUT_S):
            queue_ok = await services.queue.check_connection_async()
    except Exception as exc:
        return {"queue": f"unreachable: {_reason(exc)}"}
    return {"queue": "ok" if queue_ok else "schema missing"}
