"""The business's message templates, kept where every process can read them.

Meta's listing is the truth (`sync_templates`: the account's templates replace the
previous listing); a service without a business account id declares its templates in a
YAML file instead (`declare_templates`). Between syncs the webhook applies Meta's status
changes (`apply_status_update`): a template paused for low quality stops being offered
at once, not at the next sync. This module owns the `message_templates` table's SQL.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Literal

import structlog
import yaml

from graph.infra.database import Pool
from server.whatsapp.templates import MessageTemplate, TemplateStatusUpdate, parse_listed_template

log = structlog.get_logger(__name__)

Source = Literal["cloud", "configured"]

_COLUMNS = "name, language, status, category, body, variables, unsupported"


async def sync_templates(pool: Pool, listed: Iterable[dict[str, Any]]) -> int:
    """Replace the templates listed by Meta with this listing; returns how many."""
    templates = [t for t in map(parse_listed_template, listed) if t is not None]
    async with pool.connection() as conn, conn.transaction():
        await conn.execute("DELETE FROM message_templates WHERE source = 'cloud'")
        await _upsert(conn, templates, "cloud")
    log.info("templates.synced", templates=len(templates))
    return len(templates)


async def declare_templates(pool: Pool, path: Path) -> int:
    """The templates of a YAML file (a list of name, language, body, category), each
    taken as approved: the business says it is. Replaces the previous declaration."""
    entries = yaml.safe_load(await asyncio.to_thread(path.read_text, encoding="utf-8")) or []
    if not isinstance(entries, list):
        raise ValueError(f"{path}: expected a list of templates")
    templates = []
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise ValueError(f"{path}: template {index + 1} is not a mapping")
        listed = {
            "name": entry.get("name"),
            "language": entry.get("language"),
            "status": "APPROVED",
            "category": entry.get("category", "UTILITY"),
            "components": [{"type": "BODY", "text": str(entry.get("body") or "")}],
        }
        template = parse_listed_template(listed)
        if template is None:
            raise ValueError(f"{path}: template {index + 1} needs a name and a language")
        templates.append(template)
    async with pool.connection() as conn, conn.transaction():
        await conn.execute("DELETE FROM message_templates WHERE source = 'configured'")
        await _upsert(conn, templates, "configured")
    return len(templates)


async def _upsert(conn: Any, templates: Sequence[MessageTemplate], source: Source) -> None:
    async with conn.cursor() as cur:
        await cur.executemany(
            f"INSERT INTO message_templates ({_COLUMNS}, source)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
            " ON CONFLICT (name, language) DO UPDATE SET status = EXCLUDED.status,"
            " category = EXCLUDED.category, body = EXCLUDED.body,"
            " variables = EXCLUDED.variables, unsupported = EXCLUDED.unsupported,"
            " source = EXCLUDED.source, reason = NULL, updated_at = now()",
            [
                (
                    t.name,
                    t.language,
                    t.status,
                    t.category,
                    t.body,
                    list(t.variables),
                    t.unsupported,
                    source,
                )
                for t in templates
            ],
        )


async def apply_status_update(conn: Any, update: TemplateStatusUpdate) -> bool:
    """Meta changed a template's status; True when we know the template. One unknown
    (created after the last sync) waits for the next sync, which brings its body."""
    cur = await conn.execute(
        "UPDATE message_templates SET status = %s, reason = %s, updated_at = now()"
        " WHERE name = %s AND language = %s",
        (update.status, update.reason, update.name, update.language),
    )
    known = bool(cur.rowcount)
    log.info(
        "templates.status_changed",
        template=update.name,
        language=update.language,
        status=update.status,
        known=known,
    )
    return known


async def list_templates(pool: Pool, *, sendable_only: bool = False) -> list[MessageTemplate]:
    """Every template, by name and language; only those that can be sent now if asked."""
    where = " WHERE status = 'APPROVED' AND unsupported = ''" if sendable_only else ""
    async with pool.connection() as conn:
        cur = await conn.execute(
            f"SELECT {_COLUMNS} FROM message_templates{where} ORDER BY name, language"
        )
        return [_template(row) for row in await cur.fetchall()]


async def find_template(pool: Pool, name: str, language: str) -> MessageTemplate | None:
    async with pool.connection() as conn:
        cur = await conn.execute(
            f"SELECT {_COLUMNS} FROM message_templates WHERE name = %s AND language = %s",
            (name, language),
        )
        row = await cur.fetchone()
    return _template(row) if row else None


def _template(row: dict[str, Any]) -> MessageTemplate:
    return MessageTemplate(
        name=row["name"],
        language=row["language"],
        status=row["status"],
        category=row["category"],
        body=row["body"],
        variables=tuple(row["variables"]),
        unsupported=row["unsupported"],
    )
