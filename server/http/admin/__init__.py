"""The admin JSON API under `/admin/api`, every route behind `require_admin`.

`router` is assembled on first access rather than at import: the route modules need
`server.services`, while the worker side (`server.abuse`) imports `server.audit`
and `server.http.admin.auth` from inside `server.services`' own import. Importing the
package therefore stays cheap and cycle-free; `server.app` asks for `router` once the
services module is complete.

A new route module is added to `ROUTE_MODULES`; each exposes a `router` without prefix.
"""

from __future__ import annotations

import importlib

from fastapi import APIRouter

ROUTE_MODULES = (
    "server.http.admin.blacklist_routes",
    "server.http.admin.audit_routes",
    "server.http.admin.conversation_routes",
    "server.http.admin.agent_routes",
    "server.http.admin.flag_routes",
    "server.http.admin.user_routes",
    "server.http.admin.outcome_routes",
    "server.http.admin.replay_routes",
    "server.http.dashboard.api_routes",
    "server.http.admin.schema_routes",
)

_router: APIRouter | None = None


def build_router() -> APIRouter:
    router = APIRouter(prefix="/admin/api")
    for name in ROUTE_MODULES:
        router.include_router(importlib.import_module(name).router)
    return router


def __getattr__(name: str) -> APIRouter:
    global _router
    if name != "router":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    if _router is None:
        _router = build_router()
    return _router
