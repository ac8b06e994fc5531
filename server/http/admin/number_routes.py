"""Business numbers for operators: list them, add or change one, stop answering one.

Only references to secrets travel here (`env:NAME`, `file:/path`); a request carrying
a token in their place is refused. Each change is audited and read at once by this
process; the others read it within their refresh (30 s) or at their next delivery for
the number.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request
from pydantic import BaseModel, ConfigDict, Field

from server.audit import record_audit
from server.http.admin.auth import require_admin
from server.http.dependencies import services_of
from server.operations.number_commands import unresolved
from server.whatsapp.number_book import BusinessNumber, NumberBook

router = APIRouter(tags=["numbers"])

Admin = Annotated[str, Depends(require_admin)]


class NumberChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    access_token_ref: str = Field(max_length=500)
    app_secret_ref: str = Field(max_length=500)
    display_number: str = Field(default="", max_length=32)
    default_language: str | None = None
    enabled: bool = True
    agents: list[str] | None = Field(default=None, max_length=20)
    flags: dict[str, bool] = Field(default_factory=dict)


@router.get("/numbers")
async def list_numbers(request: Request, _: Admin) -> list[dict[str, Any]]:
    services = services_of(request)
    listed: list[dict[str, Any]] = []
    environment = services.settings.whatsapp_phone_number_id
    if environment:
        listed.append({"phone_number_id": environment, "source": "environment"})
    for number in await NumberBook(services.pool).all():
        problems = unresolved(number)
        listed.append({**number.as_row(), "source": "table", "secret_problems": problems})
    return listed


@router.put("/numbers/{phone_number_id}")
async def save_number(
    request: Request, phone_number_id: str, change: NumberChange, admin: Admin
) -> dict[str, Any]:
    services = services_of(request)
    try:
        fields = change.model_dump()
        listed = fields.pop("agents")
        agents = tuple(listed) if listed is not None else None
        number = BusinessNumber(phone_number_id=phone_number_id, agents=agents, **fields)
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None
    async with services.pool.connection() as conn, conn.transaction():
        added = await NumberBook(services.pool).save(number, conn)
        await record_audit(
            conn,
            actor=admin,
            action="number.add" if added else "number.update",
            target=phone_number_id,
            details=number.as_row(),
            remote_addr=request.client.host if request.client else None,
        )
    await services.numbers.refresh()
    return {**number.as_row(), "added": added, "secret_problems": unresolved(number)}


@router.delete("/numbers/{phone_number_id}")
async def remove_number(request: Request, phone_number_id: str, admin: Admin) -> dict[str, str]:
    services = services_of(request)
    async with services.pool.connection() as conn, conn.transaction():
        if not await NumberBook(services.pool).remove(phone_number_id, conn):
            raise HTTPException(404, f"no business number {phone_number_id} in the table")
        await record_audit(
            conn,
            actor=admin,
            action="number.remove",
            target=phone_number_id,
            details={},
            remote_addr=request.client.host if request.client else None,
        )
    await services.numbers.refresh()
    return {"removed": phone_number_id}
