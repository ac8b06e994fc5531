"""`/metrics`: this process's Prometheus figures, the pool's and the queue's read on scrape.

Open to anyone who can reach it, like every Prometheus endpoint: the queue's figures are
cached (`WA_AGENT_METRICS_CACHE_S`) so a flood of scrapes cannot take the pool.
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import REGISTRY

from server.http.dependencies import ServicesDep
from server.runner.queue_figures import QUEUE_COLLECTOR
from server.telemetry import POOL_COLLECTOR

router = APIRouter()


@router.get("/metrics")
async def metrics(services: ServicesDep) -> Response:
    POOL_COLLECTOR.pool = services.pool
    await QUEUE_COLLECTOR.refresh_if_stale(services.pool, services.settings.metrics_cache_seconds)
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)
