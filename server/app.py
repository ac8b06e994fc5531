"""The FastAPI application: webhook, health, and the lifespan that opens services."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from graph.settings import Settings, get_settings
from server.http import (
    admin,
    body_limit,
    health,
    prometheus,
    web_conversations,
    web_stream,
    webhook,
)
from server.http.admin.auth import check_token_strength
from server.http.admin.security import SecurityHeadersMiddleware
from server.http.dashboard import pages as dashboard
from server.http.shield import FloodShield
from server.services import open_services


def create_app(settings: Settings | None = None, *, run_worker_here: bool = False) -> FastAPI:
    """The HTTP app; with `run_worker_here` the queue's worker runs in this process too
    (tests, and `WA_AGENT_WORKER_PROCESSES=0`); `wa-agent serve` otherwise supervises
    worker processes (server/runner/supervisor.py). Raises `WeakToken` when a configured admin
    or stream token is too short."""
    settings = settings or get_settings()
    check_token_strength(settings)  # a short token faces the internet: refuse to start
    with_worker = run_worker_here

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with open_services(settings, run_worker_here=with_worker) as services:
            app.state.services = services
            yield

    # No public schema or docs: /openapi.json would list every admin route to anyone.
    # Operators read it at /admin/api/openapi.json with a token
    # (server/http/admin/schema_routes.py).
    app = FastAPI(
        title="wa-agent", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None
    )
    app.include_router(webhook.router)
    app.include_router(health.router)
    app.include_router(prometheus.router)
    app.include_router(admin.router)
    app.include_router(dashboard.router)  # the /admin pages (server/http/dashboard)
    app.include_router(web_conversations.router)
    app.include_router(web_stream.router)
    app.add_middleware(FloodShield)  # drops a flooding sender's deliveries before routing
    app.add_middleware(body_limit.BodyLimitMiddleware, webhook_limit=settings.max_body_bytes)
    app.add_middleware(SecurityHeadersMiddleware)
    return app
