"""The audit log: who did what, when, from where.

Every admin action, blacklist change, rate-limit escalation, erasure, webhook signature
failure, dashboard login and refused admin login leaves one row. Rows are never
deleted and never rewritten, with one exception: an erasure pseudonymises the rows that
name the customer (server/operations/erasure.py), and triggers refuse everything else
(migrations/0016_audit_pseudonymise.sql). Failures an outsider can trigger at will are
folded by `AuditThrottle` (one row per address per interval, carrying the count), so
the audit log cannot be turned into a way to flood the database.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import psycopg
import structlog
from psycopg.types.json import Jsonb

from graph.infra.database import Pool

log = structlog.get_logger(__name__)


def _json(value: Any) -> str:
    return json.dumps(value, default=str).replace("\\u0000", "")


async def record_audit(
    conn: psycopg.AsyncConnection[Any],
    *,
    actor: str,
    action: str,
    target: str | None,
    details: Mapping[str, Any],
    remote_addr: str | None,
) -> None:
    """Write one row on the caller's connection, inside the caller's transaction when
    there is one: the action and its record commit together or not at all."""
    await conn.execute(
        "INSERT INTO audit_log (actor, action, target, details, remote_addr)"
        " VALUES (%s, %s, %s, %s, %s)",
        (actor, action, target, Jsonb(dict(details), dumps=_json), remote_addr),
    )


class AuditThrottle:
    """At most one row per (action, key) per `interval_seconds`; the next row that is let
    through says how many were folded into it (`folded`)."""

    def __init__(self, interval_seconds: float, *, max_keys: int = 10_000) -> None:
        self.interval_seconds = interval_seconds
        self.max_keys = max_keys
        self._windows: dict[tuple[str, str], tuple[float, int]] = {}

    def admit(self, action: str, key: str) -> int | None:
        """The number of earlier events folded into this one, or None: do not write."""
        now = time.monotonic()
        started, folded = self._windows.get((action, key), (float("-inf"), 0))
        if now - started < self.interval_seconds:
            self._windows[(action, key)] = (started, folded + 1)
            return None
        self._windows.pop((action, key), None)
        self._windows[(action, key)] = (now, 0)
        if len(self._windows) > self.max_keys:
            for stale in list(self._windows)[: self.max_keys // 2]:
                del self._windows[stale]
        return folded


async def record_folded(
    pool: Pool,
    throttle: AuditThrottle,
    *,
    action: str,
    key: str,
    target: str | None,
    details: Mapping[str, Any],
    remote_addr: str | None,
) -> None:
    """A refusal an outsider can repeat at will (a wrong token, a locked-out login):
    one row per `key` per interval, carrying how many were folded into it. Never
    raises: the refusal itself matters more than its record."""
    folded = throttle.admit(action, key)
    if folded is None:
        return
    try:
        async with pool.connection() as conn:
            await record_audit(
                conn,
                actor="anonymous",
                action=action,
                target=target,
                details={**details, "folded": folded},
                remote_addr=remote_addr,
            )
    except Exception as exc:
        log.error("audit.write_failed", action=action, error=str(exc)[:200])


async def list_audit(
    conn: psycopg.AsyncConnection[Any],
    *,
    action: str | None = None,
    target: str | None = None,
    since: datetime | None = None,
    limit: int = 100,
) -> list[dict[str, Any]]:
    cur = await conn.execute(
        "SELECT id, occurred_at, actor, action, target, details, remote_addr FROM audit_log"
        " WHERE (%(action)s::text IS NULL OR action = %(action)s)"
        " AND (%(target)s::text IS NULL OR target = %(target)s)"
        " AND (%(since)s::timestamptz IS NULL OR occurred_at >= %(since)s)"
        " ORDER BY id DESC LIMIT %(limit)s",
        {"action": action, "target": target, "since": since, "limit": limit},
    )
    return [dict(row) for row in await cur.fetchall()]
