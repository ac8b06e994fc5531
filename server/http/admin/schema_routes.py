"""`GET /admin/api/openapi.json`: the API's schema, for operators only.

FastAPI serves `/openapi.json` to anyone by default, and that lists every admin route,
its parameters and its models — a map for whoever probes the service. The public one
is switched off (server/app.py); a script or an operator with an admin token still
gets the whole schema here, to generate a client or read what a route takes.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request

from server.http.admin.auth import require_admin

router = APIRouter(tags=["schema"])


@router.get("/openapi.json", include_in_schema=False)
async def openapi_schema(
    request: Request, _: Annotated[str, Depends(require_admin)]
) -> dict[str, Any]:
    schema: dict[str, Any] = request.app.openapi()
    return schema
