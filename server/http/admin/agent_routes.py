"""Agents as data: an operator reads and edits a specialist's prompt, tools, model and
switch; every process picks the change up within the directory's cache time."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request
from pydantic import BaseModel, ConfigDict, Field

from server.audit import record_audit
from server.http.admin.auth import require_admin
from server.http.dependencies import services_of
from server.services import Services

router = APIRouter(tags=["agents"])

Admin = Annotated[str, Depends(require_admin)]


class AgentChanges(BaseModel):
    """Only these fields can change; anything else is refused (422), nothing is saved."""

    model_config = ConfigDict(extra="forbid")

    system_prompt: str | None = Field(default=None, min_length=20, max_length=20_000)
    tools: list[str] | None = Field(default=None, max_length=40)
    model: str | None = Field(default=None, min_length=3, max_length=120)
    temperature: float | None = Field(default=None, ge=0, le=2)
    enabled: bool | None = None


@router.get("/agents")
async def list_agents(request: Request, _: Admin) -> list[dict[str, Any]]:
    agents = await services_of(request).agents.current()
    return [asdict(agent) for agent in agents.values()]


@router.patch("/agents/{name}")
async def change_agent(
    request: Request, name: str, changes: AgentChanges, admin: Admin
) -> dict[str, Any]:
    services = services_of(request)
    if name not in services.agents.defaults:
        raise HTTPException(404, f"no agent named {name!r}")
    fields = changes.model_dump(exclude_unset=True)
    unknown = sorted(set(fields.get("tools") or ()) - services.tool_names)
    if unknown:
        raise HTTPException(422, f"unknown tools: {', '.join(unknown)}")
    if fields.get("enabled") is False and await _last_enabled(services, name):
        raise HTTPException(409, "at least one agent must stay enabled")
    if not fields:
        raise HTTPException(422, "nothing to change")
    async with services.pool.connection() as conn, conn.transaction():
        await services.agents.save_changes(conn, name, fields)
        await record_audit(
            conn,
            actor=admin,
            action="agent.update",
            target=name,
            details={k: v for k, v in fields.items() if k != "system_prompt"},
            remote_addr=request.client.host if request.client else None,
        )
    services.agents.invalidate()
    return asdict((await services.agents.current())[name])


async def _last_enabled(services: Services, name: str) -> bool:
    agents = await services.agents.current()
    return [a.name for a in agents.values() if a.enabled] == [name]
