"""`/admin/api/blacklist`: block and unblock customers, see where they stand.

Numbers are accepted as people type them (`+250 788 123 456`) and normalised with
phonenumbers to the wa_id the service keys on; a number that is not valid is refused
with 422 and nothing changes. Unknown fields are refused too. Every change is audited
with the admin's token name and address.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from server.abuse.blacklist import to_datetime
from server.abuse.rate_policy import LimiterUnavailable, PenaltyState
from server.abuse.validation import normalize_customer_id
from server.http.admin.auth import require_admin
from server.http.dependencies import services_of
from server.services import Services

router = APIRouter(tags=["blacklist"])

Admin = Annotated[str, Depends(require_admin)]

TEN_YEARS_S = 10 * 365 * 86400


class BlockRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    wa_id: str = Field(min_length=5, max_length=64, description="phone number or user id")
    reason: str = Field(min_length=3, max_length=500)
    expires_in_seconds: int | None = Field(
        default=None, ge=60, le=TEN_YEARS_S, description="omit for until unblocked"
    )


def _customer(services: Services, raw: str) -> str:
    try:
        return normalize_customer_id(raw, services.settings.phone_region)
    except ValueError as exc:
        raise HTTPException(422, f"wa_id: {exc}") from exc


def _address(request: Request) -> str | None:
    return request.client.host if request.client else None


@router.get("/blacklist")
async def list_blacklist(request: Request, _: Admin) -> list[dict[str, Any]]:
    """Everyone blocked right now, newest first."""
    entries = await services_of(request).abuse.blacklist.active()
    return [entry.as_json() for entry in entries]


@router.get("/blacklist/{wa_id}")
async def customer_standing(request: Request, wa_id: str, _: Admin) -> dict[str, Any]:
    """A customer's blacklist entry and penalty ladder (404: nothing against them).

    The entry comes from Postgres, the live ladder from the limiter. With the limiter
    unreachable (Redis down) the operator still gets the entry, with `"penalty":
    "unknown"` and `"limiter": "unavailable"` — and no 404, since nobody can say then
    that nothing stands against the customer."""
    services = services_of(request)
    customer = _customer(services, wa_id)
    entry = await services.abuse.blacklist.entry(customer)
    blacklisted = entry.as_json() if entry else None
    try:
        penalty = await services.abuse.limiter.penalty(customer)
    except LimiterUnavailable:
        return {
            "wa_id": customer,
            "blacklisted": blacklisted,
            "penalty": "unknown",
            "limiter": "unavailable",
        }
    if entry is None and penalty is None:
        raise HTTPException(404, "no blacklist entry or penalty for this customer")
    return {
        "wa_id": customer,
        "blacklisted": blacklisted,
        "penalty": _ladder(penalty) if penalty else None,
        "limiter": "available",
    }


def _ladder(penalty: PenaltyState) -> dict[str, Any]:
    return {
        "warned": penalty.level > 0,
        "blocks": penalty.blocks,
        "blocked_until": to_datetime(penalty.until_ms),
        "last_violation_at": to_datetime(penalty.last_ms),
    }


@router.post("/blacklist", status_code=201)
async def block_customer(request: Request, block: BlockRequest, admin: Admin) -> dict[str, Any]:
    services = services_of(request)
    customer = _customer(services, block.wa_id)
    expires_at = None
    if block.expires_in_seconds is not None:
        expires_at = services.abuse.blacklist.now() + timedelta(seconds=block.expires_in_seconds)
    entry = await services.abuse.blacklist.add(
        customer,
        reason=block.reason,
        source="manual",
        actor=admin,
        expires_at=expires_at,
        remote_addr=_address(request),
    )
    return entry.as_json()


@router.delete("/blacklist/{wa_id}", status_code=204)
async def unblock_customer(request: Request, wa_id: str, admin: Admin) -> Response:
    """Unblock and forget the penalty ladder; 404 when there was nothing to lift."""
    services = services_of(request)
    customer = _customer(services, wa_id)
    if not await services.abuse.blacklist.remove(
        customer, actor=admin, remote_addr=_address(request)
    ):
        raise HTTPException(404, "this customer is neither blacklisted nor penalised")
    return Response(status_code=204)
