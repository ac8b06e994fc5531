"""`GET /admin/api/outcomes`: are customers satisfied, are their problems solved, how
fast, and what did the bot save — over a period (default: the last 30 days).
`GET /admin/api/episodes`: the episodes behind those figures, newest first."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request

from server.http.admin.auth import require_admin
from server.http.dependencies import services_of
from server.outcomes.figures import list_episodes, outcome_figures

router = APIRouter(tags=["outcomes"])

Admin = Annotated[str, Depends(require_admin)]
DEFAULT_PERIOD = timedelta(days=30)
LONGEST_PERIOD = timedelta(days=400)


@router.get("/outcomes")
async def get_outcomes(
    request: Request,
    _: Admin,
    since: Annotated[
        datetime | None, Query(description="ISO 8601; default until - 30 days")
    ] = None,
    until: Annotated[datetime | None, Query(description="ISO 8601; default now")] = None,
) -> dict[str, Any]:
    services = services_of(request)
    until = _aware(until) if until else datetime.now(UTC)
    since = _aware(since) if since else until - DEFAULT_PERIOD
    if since >= until:
        raise HTTPException(422, "since must be before until")
    if until - since > LONGEST_PERIOD:
        raise HTTPException(422, f"a period is at most {LONGEST_PERIOD.days} days")
    return await outcome_figures(services.pool, since, until)


@router.get("/episodes")
async def get_episodes(
    request: Request,
    _: Admin,
    outcome: Literal["resolved_bot", "resolved_human", "abandoned", "error", "open"] | None = None,
    conversation_id: uuid.UUID | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> list[dict[str, Any]]:
    services = services_of(request)
    return await list_episodes(
        services.pool,
        outcome=outcome,
        conversation_id=str(conversation_id) if conversation_id else None,
        limit=limit,
    )


def _aware(moment: datetime) -> datetime:
    """A time without a zone is read as UTC."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
