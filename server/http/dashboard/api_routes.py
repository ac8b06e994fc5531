"""`/admin/api/console/...`: the console's figures, totals, search and timelines as JSON.

Everything the dashboard pages show comes from these routes (or the existing admin
routes for conversations, agents, flags and the blacklist), so a script with an admin
token sees what the operator sees.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request

from server.abuse.validation import normalize_customer_id
from server.http.admin.auth import require_admin
from server.http.dashboard import aggregates, timeline
from server.http.dashboard.aggregates import Window
from server.http.dependencies import services_of
from server.outcomes.alerts import alert_states
from server.runner.accounting import conversation_totals, customer_day_totals

router = APIRouter(prefix="/console", tags=["console"])

Admin = Annotated[str, Depends(require_admin)]
Days = Annotated[int, Query(ge=1, le=365, description="today and the days before it (UTC)")]


def _window(request: Request, days: int | None) -> Window:
    return Window.last_days(days or services_of(request).settings.dashboard_days)


@router.get("/overview")
async def overview(request: Request, _: Admin, days: Days | None = None) -> dict[str, Any]:
    """Per-day figures, totals, agents and routing: the dashboard's overview."""
    return await aggregates.overview(services_of(request).pool, _window(request, days))


@router.get("/daily")
async def daily(request: Request, _: Admin, days: Days | None = None) -> list[dict[str, Any]]:
    """Conversations, turns, tokens, cost (per conversation mean/p95), error and
    escalation rates, prompt-cache rate, per UTC day."""
    return await aggregates.daily(services_of(request).pool, _window(request, days))


@router.get("/agents")
async def agents(request: Request, _: Admin, days: Days | None = None) -> list[dict[str, Any]]:
    """Per agent: calls, error rate, latency p50/p95, tokens, cost, success rate."""
    return await aggregates.agents(services_of(request).pool, _window(request, days))


@router.get("/routing")
async def routing(request: Request, _: Admin, days: Days | None = None) -> list[dict[str, Any]]:
    """The router's decisions by intent and method, with their share."""
    return await aggregates.routing(services_of(request).pool, _window(request, days))


@router.get("/tools")
async def tools(request: Request, _: Admin, days: Days | None = None) -> list[dict[str, Any]]:
    """Per tool: calls, success rate, duration mean/p95."""
    return await aggregates.tools(services_of(request).pool, _window(request, days))


@router.get("/customers")
async def top_customers(
    request: Request,
    _: Admin,
    days: Days | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 20,
) -> list[dict[str, Any]]:
    """The customers who cost most in the window (numbers masked)."""
    window = _window(request, days)
    return await aggregates.customers(services_of(request).pool, window, limit=limit)


@router.get("/conversation-costs")
async def conversation_costs(
    request: Request,
    _: Admin,
    days: Days | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 20,
) -> list[dict[str, Any]]:
    """The window's costliest conversations: turns, model calls, prompt tokens split into
    new and cached (served from the provider's prompt cache), completion tokens, cost."""
    window = _window(request, days)
    return await aggregates.conversation_costs(services_of(request).pool, window, limit=limit)


@router.get("/conversations")
async def search_conversations(
    request: Request,
    _: Admin,
    q: Annotated[str, Query(max_length=100)] = "",
    status: Annotated[str | None, Query(pattern="^(active|escalated)$")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> list[dict[str, Any]]:
    """Search by the customer's name or the end of their number (as masked numbers
    show it: `3456` finds ********3456); numbers come back masked."""
    return await timeline.search(services_of(request).pool, q, status=status, limit=limit)


@router.get("/conversations/{conversation_id}/timeline")
async def conversation_timeline(
    request: Request, conversation_id: uuid.UUID, _: Admin
) -> dict[str, Any]:
    """The transcript with the agent of each reply, routing decisions, handoffs,
    escalations, model calls and tool calls with their timings, in order."""
    found = await timeline.conversation(services_of(request).pool, str(conversation_id))
    if found is None:
        raise HTTPException(404, "no such conversation")
    return found


@router.get("/alerts")
async def alerts(request: Request, _: Admin) -> list[dict[str, Any]]:
    """Alert conditions firing now (active) and those resolved, newest first."""
    return await alert_states(services_of(request).pool)


@router.get("/conversations/{conversation_id}/totals")
async def totals_of_conversation(
    request: Request, conversation_id: uuid.UUID, _: Admin
) -> dict[str, Any]:
    """All of a conversation's model usage: calls, prompt tokens (new and cached),
    completion tokens, cost."""
    totals = await conversation_totals(services_of(request).pool, str(conversation_id))
    return totals.as_json()


@router.get("/customers/{wa_id}/totals")
async def totals_of_customer_today(request: Request, wa_id: str, _: Admin) -> dict[str, Any]:
    """Today's (UTC) model usage of one customer, over all their conversations."""
    services = services_of(request)
    try:
        customer = normalize_customer_id(wa_id, services.settings.phone_region)
    except ValueError as exc:
        raise HTTPException(422, f"wa_id: {exc}") from exc
    return (await customer_day_totals(services.pool, customer)).as_json()
