"""Feature flags for operators: see each flag's state, switch it, roll it out by %."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request
from pydantic import BaseModel, ConfigDict, Field

from graph.context import FLAG_DEFAULTS
from server.audit import record_audit
from server.http.admin.auth import require_admin
from server.http.dependencies import services_of

router = APIRouter(tags=["flags"])

Admin = Annotated[str, Depends(require_admin)]


class FlagChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool
    rollout_percent: int = Field(default=100, ge=0, le=100)
    description: str = Field(default="", max_length=300)


@router.get("/flags")
async def list_flags(request: Request, _: Admin) -> list[dict[str, Any]]:
    services = services_of(request)
    async with services.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT name, enabled, rollout_percent, description, updated_at FROM feature_flags"
        )
        rows = {row["name"]: dict(row) for row in await cur.fetchall()}
    for name, default in FLAG_DEFAULTS.items():
        rows.setdefault(name, {"name": name, "enabled": default, "rollout_percent": 100})
    overrides = services.flags.overrides
    return [{**row, "forced_by_environment": overrides.get(name)} for name, row in rows.items()]


@router.put("/flags/{name}")
async def set_flag(request: Request, name: str, change: FlagChange, admin: Admin) -> dict[str, Any]:
    if name not in FLAG_DEFAULTS:
        raise HTTPException(404, f"no flag named {name!r}; known: {', '.join(FLAG_DEFAULTS)}")
    services = services_of(request)
    async with services.pool.connection() as conn, conn.transaction():
        cur = await conn.execute(
            """
            INSERT INTO feature_flags (name, enabled, rollout_percent, description)
            VALUES (%(name)s, %(enabled)s, %(rollout_percent)s, %(description)s)
            ON CONFLICT (name) DO UPDATE SET enabled = EXCLUDED.enabled,
                rollout_percent = EXCLUDED.rollout_percent,
                description = EXCLUDED.description, updated_at = now()
            RETURNING name, enabled, rollout_percent, description, updated_at
            """,
            {"name": name, **change.model_dump()},
        )
        row = await cur.fetchone()
        await record_audit(
            conn,
            actor=admin,
            action="flag.update",
            target=name,
            details=change.model_dump(exclude={"description"}),
            remote_addr=request.client.host if request.client else None,
        )
    services.flags.invalidate()
    return dict(row or {})
