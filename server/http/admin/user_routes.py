"""`DELETE /admin/api/users/{wa_id}`: forget a customer everywhere (server/operations/erasure.py).

The number is accepted as people type it and normalised like the blacklist's; a
number that is not valid is refused with 422 and nothing changes. The answer lists
what was deleted and the erasure id that the audit log keeps instead of the number.
404 when nothing was stored about them (a second request, a typo); 409 when one of
their turns kept running past the wait, in which case nothing was erased.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request

from server.abuse.validation import normalize_customer_id
from server.http.admin.auth import require_admin
from server.http.dependencies import services_of
from server.operations.erasure import ErasureBusy, forget_customer

router = APIRouter(tags=["users"])

Admin = Annotated[str, Depends(require_admin)]


@router.delete("/users/{wa_id}")
async def forget_user(request: Request, wa_id: str, admin: Admin) -> dict[str, Any]:
    services = services_of(request)
    try:
        customer = normalize_customer_id(wa_id, services.settings.phone_region)
    except ValueError as exc:
        raise HTTPException(422, f"wa_id: {exc}") from exc
    try:
        report = await forget_customer(
            services.pool,
            customer,
            actor=admin,
            remote_addr=request.client.host if request.client else None,
            limiter=services.abuse.limiter,
        )
    except ErasureBusy as busy:
        raise HTTPException(409, f"a turn of this customer is running ({busy}); retry") from busy
    if not report.found:
        raise HTTPException(404, "nothing is stored about this customer")
    return report.as_json()
