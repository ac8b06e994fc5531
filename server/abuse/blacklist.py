"""The blacklist and the penalty ladder in Postgres, and the cache kept in the limiter.

Postgres is the source of truth: what survives a restart, a flushed Redis, or a Redis
that never had persistence. Every change is written there first, with its audit row in
the same transaction, then to the cache; the cache is also rebuilt from Postgres at
start and every `WA_AGENT_BLACKLIST_SYNC_S`, which repairs a cache write that failed and
carries `wa-agent block` (another process) to an in-process limiter.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

import psycopg
import structlog

from graph.infra.database import Pool
from server.abuse.rate_policy import Clock, LimiterUnavailable, PenaltyState, Verdict
from server.audit import record_audit

log = structlog.get_logger(__name__)

Source = Literal["manual", "automatic"]


class Limiter(Protocol):
    """What the gate and the blacklist need from a limiter (Redis or in-process)."""

    description: str
    clock: Clock

    async def hit(self, user: str, weight: int) -> Verdict: ...
    async def add_tokens(self, user: str, tokens: int) -> None: ...
    async def tokens_today(self, user: str) -> int: ...
    async def set_blacklisted(self, user: str, until_ms: int) -> None: ...
    async def forget(self, user: str) -> None: ...
    async def replace_blacklist(self, entries: dict[str, int]) -> None: ...
    async def restore_penalty(self, user: str, state: PenaltyState) -> None: ...
    async def penalty(self, user: str) -> PenaltyState | None: ...
    async def aclose(self) -> None: ...


@dataclass(frozen=True)
class BlacklistEntry:
    wa_id: str
    reason: str
    source: str
    created_by: str
    created_at: datetime
    expires_at: datetime | None

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def to_datetime(ms: int) -> datetime | None:
    return datetime.fromtimestamp(ms / 1000, UTC) if ms else None


def to_ms(moment: datetime | None) -> int:
    return int(moment.timestamp() * 1000) if moment else 0


_COLUMNS = "wa_id, reason, source, created_by, created_at, expires_at"
_ACTIVE = "(expires_at IS NULL OR expires_at > %(now)s)"


class Blacklist:
    def __init__(self, pool: Pool, limiter: Limiter) -> None:
        self.pool = pool
        self.limiter = limiter
        self._changes = 0  # bumped by every add/remove in this process

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.limiter.clock(), UTC)

    async def add(
        self,
        wa_id: str,
        *,
        reason: str,
        source: Source,
        actor: str,
        expires_at: datetime | None = None,
        remote_addr: str | None = None,
        action: str = "blacklist.add",
    ) -> BlacklistEntry:
        """Block `wa_id` (again: a second add replaces reason and expiry)."""
        self._changes += 1
        async with self.pool.connection() as conn, conn.transaction():
            cur = await conn.execute(
                f"INSERT INTO blacklist ({_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s)"
                " ON CONFLICT (wa_id) DO UPDATE SET reason = EXCLUDED.reason,"
                " source = EXCLUDED.source, created_by = EXCLUDED.created_by,"
                " created_at = EXCLUDED.created_at, expires_at = EXCLUDED.expires_at"
                f" RETURNING {_COLUMNS}",
                (wa_id, reason, source, actor, self.now(), expires_at),
            )
            row = await cur.fetchone()
            await conn.execute("DELETE FROM abuse_penalties WHERE wa_id = %s", (wa_id,))
            details = {"reason": reason, "source": source, "expires_at": expires_at}
            await record_audit(
                conn,
                actor=actor,
                action=action,
                target=wa_id,
                details=details,
                remote_addr=remote_addr,
            )
        assert row is not None
        await self._update_cache(self.limiter.set_blacklisted(wa_id, to_ms(expires_at)))
        return BlacklistEntry(**row)

    async def remove(self, wa_id: str, *, actor: str, remote_addr: str | None = None) -> bool:
        """Unblock `wa_id` and forget its penalty ladder; False when nothing was there."""
        self._changes += 1
        async with self.pool.connection() as conn, conn.transaction():
            cur = await conn.execute(
                f"DELETE FROM blacklist WHERE wa_id = %s RETURNING {_COLUMNS}", (wa_id,)
            )
            removed = await cur.fetchone()
            cur = await conn.execute("DELETE FROM abuse_penalties WHERE wa_id = %s", (wa_id,))
            penalties = cur.rowcount
            if removed is not None or penalties:
                details = {"was_blacklisted": removed is not None, "penalties_cleared": penalties}
                await record_audit(
                    conn,
                    actor=actor,
                    action="blacklist.remove",
                    target=wa_id,
                    details=details,
                    remote_addr=remote_addr,
                )
        await self._update_cache(self.limiter.forget(wa_id))
        return removed is not None or bool(penalties)

    async def entry(self, wa_id: str) -> BlacklistEntry | None:
        """The entry in force for `wa_id` (expired entries do not count)."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                f"SELECT {_COLUMNS} FROM blacklist WHERE wa_id = %(wa_id)s AND {_ACTIVE}",
                {"wa_id": wa_id, "now": self.now()},
            )
            row = await cur.fetchone()
        return BlacklistEntry(**row) if row else None

    async def active(self, limit: int = 10_000) -> list[BlacklistEntry]:
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                f"SELECT {_COLUMNS} FROM blacklist WHERE {_ACTIVE}"
                " ORDER BY created_at DESC LIMIT %(limit)s",
                {"now": self.now(), "limit": limit},
            )
            rows = await cur.fetchall()
        return [BlacklistEntry(**row) for row in rows]

    async def sync_cache(self) -> int:
        """Make the limiter's blacklist equal to Postgres; returns how many are listed.

        A change made here while Postgres was being read would be undone by writing the
        older picture, so the sync then leaves the cache alone until its next turn.
        """
        changes = self._changes
        entries = await self.active(limit=1_000_000)
        if changes == self._changes:
            await self.limiter.replace_blacklist({e.wa_id: to_ms(e.expires_at) for e in entries})
        return len(entries)

    async def save_penalty(
        self, conn: psycopg.AsyncConnection[Any], wa_id: str, state: PenaltyState
    ) -> None:
        await conn.execute(
            "INSERT INTO abuse_penalties (wa_id, level, blocks, blocked_until, last_violation_at)"
            " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (wa_id) DO UPDATE SET"
            " level = EXCLUDED.level, blocks = EXCLUDED.blocks,"
            " blocked_until = EXCLUDED.blocked_until,"
            " last_violation_at = EXCLUDED.last_violation_at, updated_at = now()",
            (
                wa_id,
                state.level,
                state.blocks,
                to_datetime(state.until_ms),
                to_datetime(state.last_ms),
            ),
        )

    async def restore_penalties(self, reset_seconds: int, into: Limiter | None = None) -> int:
        """Give the limiter (or `into`, the gate's stand-in during a Redis outage) the
        ladders Postgres remembers: a restart forgives nobody, and neither does an
        outage. A ladder the limiter already holds is left alone."""
        target = into or self.limiter
        async with self.pool.connection() as conn:
            await conn.execute(  # ladders nobody climbed for a reset period are forgotten
                "DELETE FROM abuse_penalties"
                " WHERE (blocked_until IS NULL OR blocked_until <= %(now)s)"
                " AND last_violation_at <= %(now)s - make_interval(secs => %(reset)s)",
                {"now": self.now(), "reset": reset_seconds},
            )
            cur = await conn.execute(
                "SELECT wa_id, level, blocks, blocked_until, last_violation_at"
                " FROM abuse_penalties WHERE blocked_until > %(now)s"
                " OR last_violation_at > %(now)s - make_interval(secs => %(reset)s)",
                {"now": self.now(), "reset": reset_seconds},
            )
            rows = await cur.fetchall()
        for row in rows:
            state = PenaltyState(
                row["level"],
                row["blocks"],
                to_ms(row["blocked_until"]),
                to_ms(row["last_violation_at"]),
            )
            await target.restore_penalty(row["wa_id"], state)
        return len(rows)

    async def _update_cache(self, write: Any) -> None:
        """Postgres has the change; a cache that cannot take it now is repaired by the
        next sync, so this only logs."""
        try:
            await write
        except LimiterUnavailable as exc:
            log.warning(
                "abuse.blacklist_cache_stale", error=str(exc)[:200], repaired_by="next sync"
            )
