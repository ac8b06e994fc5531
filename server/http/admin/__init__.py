"""The admin JSON API under `/admin/api`, every route behind `require_admin`.

Each route module exposes a `router` without prefix; a new one is added here. The
dashboard's own figures (server/http/dashboard/api_routes.py) live under the same prefix.
"""

from __future__ import annotations

from fastapi import APIRouter

from server.http.admin import (
    agent_routes,
    audit_routes,
    blacklist_routes,
    conversation_routes,
    flag_routes,
    inbox_routes,
    media_routes,
    number_routes,
    outcome_routes,
    replay_routes,
    schema_routes,
    template_routes,
    user_routes,
)
from server.http.dashboard import api_routes as dashboard_api_routes

router = APIRouter(prefix="/admin/api")
for routes in (
    blacklist_routes,
    audit_routes,
    conversation_routes,
    media_routes,
    inbox_routes,
    agent_routes,
    flag_routes,
    number_routes,
    user_routes,
    outcome_routes,
    replay_routes,
    template_routes,
    dashboard_api_routes,
    schema_routes,
):
    router.include_router(routes.router)
