"""`GET /admin/api/audit`: the audit log for operators, newest first."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request

from server.audit import list_audit
from server.http.admin.auth import require_admin
from server.http.dependencies import services_of

router = APIRouter(tags=["audit"])


@router.get("/audit")
async def read_audit(
    request: Request,
    _: Annotated[str, Depends(require_admin)],
    action: Annotated[str | None, Query(max_length=100)] = None,
    target: Annotated[str | None, Query(max_length=200)] = None,
    since: datetime | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[dict[str, Any]]:
    """The newest rows first; filter by action, target and time."""
    async with services_of(request).pool.connection() as conn:
        return await list_audit(conn, action=action, target=target, since=since, limit=limit)
