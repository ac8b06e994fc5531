"""Forget a customer everywhere: `wa-agent forget WA_ID` and `DELETE /admin/api/users/{wa_id}`.

What goes, in one transaction (checkpoints just before it, through the checkpointer's
own `adelete_thread`):

- their long-term memories and the cached vectors of their words;
- every conversation, with its checkpoints, inbound and outbound messages, runs and
  transcript; the metrics and tool records keyed to those conversations;
- their queued jobs (turns, operator actions, memory extraction), finished or not;
- their contact row and, through it, bookings, payments and support tickets;
- their blacklist entry and penalty ladder (also in the rate limiter);
- their STOP/START choice about proactive messages (it would cascade from the contact
  row; named here so the report counts it).

What stays of their messages is a tombstone each: the SHA-256 of the message id
(migrations/0018_erased_wamids.sql), so a delivery Meta repeats later is recognised as
a duplicate instead of bringing the customer back; it says nothing about them.

The audit log is not deleted from: every administrative action must stay traceable to
its moment and its author, "alice blocked them" included. The rows that name the
customer are pseudonymised instead — their wa_id, user id and conversation ids in
`target` and `details` become `erasure:<erasure id>`, while actor, action, time and the
operator's address stay (migrations/0016_audit_pseudonymise.sql, the only rewrite the
audit log accepts). The erasure itself is audited under the same pseudonym, the random
erasure id the operator can give the customer as proof.

A turn being answered at that moment would write after the erasure, so the erasure
takes the conversations' row locks (which the webhook and the runner take too) and,
while any job of theirs is running, waits for it (`ErasureBusy` after `wait_seconds`).
"""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import psycopg
import structlog

from graph.infra.database import Pool, create_checkpointer, open_pool, resolve_database_url
from graph.settings import Settings
from server.abuse import build_limiter
from server.abuse.commands import cli_actor
from server.abuse.validation import normalize_customer_id
from server.audit import record_audit

log = structlog.get_logger(__name__)

ERASURE_ACTION = "customer.erased"


class ErasureBusy(Exception):
    """A job of this customer's is still running; nothing was erased. Try again."""


class _JobsRunning(Exception):
    pass


class ForgettingLimiter(Protocol):
    async def forget(self, user: str) -> None: ...


def pseudonym(erasure_id: str) -> str:
    """What the audit log says instead of the customer: also the erasure row's target,
    so `GET /admin/api/audit?target=erasure:<id>` lists the erasure with what came before."""
    return f"erasure:{erasure_id}"


@dataclass(frozen=True)
class ErasureReport:
    erasure_id: str
    wa_id: str
    conversations: int
    deleted: dict[str, int] = field(default_factory=dict)
    pseudonymised_audit_rows: int = 0

    @property
    def found(self) -> bool:
        return any(self.deleted.values()) or self.pseudonymised_audit_rows > 0

    def as_json(self) -> dict[str, Any]:
        return {
            "erasure_id": self.erasure_id,
            "conversations": self.conversations,
            "deleted": self.deleted,
            "pseudonymised_audit_rows": self.pseudonymised_audit_rows,
        }


# (label, statement): run in order, inside the erasure's transaction. %(wa_id)s is the
# customer, %(ids)s their conversations (uuid[]), %(texts)s the same ids as text[].
_DELETIONS: Sequence[tuple[str, str]] = (
    (
        "jobs",
        "DELETE FROM procrastinate_jobs WHERE args ->> 'conversation_id' = ANY(%(texts)s)",
    ),
    ("memories", "DELETE FROM agent_embeddings WHERE user_id = %(wa_id)s"),
    ("embedding_cache", "DELETE FROM embedding_cache WHERE scope = %(wa_id)s"),
    ("metrics", "DELETE FROM agent_metrics WHERE conversation_id = ANY(%(ids)s)"),
    (
        "tool_executions",
        "DELETE FROM agent_tool_executions WHERE conversation_id = ANY(%(ids)s)",
    ),
    ("turn_events", "DELETE FROM agent_turn_events WHERE conversation_id = ANY(%(ids)s)"),
    (
        "console_rollups",
        "DELETE FROM console_conversation_days WHERE conversation_id = ANY(%(ids)s)",
    ),
    ("transcript", "DELETE FROM agent_messages WHERE conversation_id = ANY(%(ids)s)"),
    ("inbound_messages", "DELETE FROM inbound_messages WHERE wa_id = %(wa_id)s"),
    ("outbound_messages", "DELETE FROM outbound_messages WHERE wa_id = %(wa_id)s"),
    ("conversations", "DELETE FROM agent_conversations WHERE wa_id = %(wa_id)s"),
    ("consent", "DELETE FROM proactive_consent WHERE wa_id = %(wa_id)s"),
    ("contact", "DELETE FROM contacts WHERE wa_id = %(wa_id)s"),
    ("blacklist", "DELETE FROM blacklist WHERE wa_id = %(wa_id)s"),
    ("penalties", "DELETE FROM abuse_penalties WHERE wa_id = %(wa_id)s"),
)


# Before the messages go: the digest of every wamid of theirs, as the webhook computes
# it (server/runner/inbox.py), so a redelivery is a duplicate rather than a new customer.
_TOMBSTONES = b"""
    INSERT INTO erased_wamids (wamid_sha256)
    SELECT encode(sha256(convert_to(wamid, 'UTF8')), 'hex') FROM inbound_messages
    WHERE wa_id = %(wa_id)s
    ON CONFLICT (wamid_sha256) DO NOTHING
"""


async def forget_customer(
    pool: Pool,
    wa_id: str,
    *,
    actor: str,
    remote_addr: str | None = None,
    limiter: ForgettingLimiter | None = None,
    wait_seconds: float = 30.0,
) -> ErasureReport:
    """Erase everything about `wa_id` (already normalised); see the module docstring."""
    deadline = time.monotonic() + wait_seconds
    while True:
        try:
            report = await _erase(pool, wa_id, actor, remote_addr)
            break
        except _JobsRunning as running:
            if time.monotonic() >= deadline:
                raise ErasureBusy(str(running)) from None
            await asyncio.sleep(0.25)
    if limiter is not None:
        try:
            await limiter.forget(wa_id)
        except Exception as exc:  # the limiter's counters expire on their own
            log.warning("erasure.limiter_forget_failed", error=str(exc)[:200])
    log.info("customer.erased", erasure_id=report.erasure_id, **report.deleted)
    return report


async def _erase(pool: Pool, wa_id: str, actor: str, remote_addr: str | None) -> ErasureReport:
    erasure_id = str(uuid.uuid4())
    async with pool.connection() as conn, conn.transaction():
        user_id = await _lock_contact(conn, wa_id)
        ids = await _lock_conversations(conn, wa_id)
        texts = [str(i) for i in ids]
        await _refuse_running_jobs(conn, texts)
        deleted = {"checkpoints": await _delete_threads(pool, conn, texts)}
        params = {"wa_id": wa_id, "ids": ids, "texts": texts}
        await conn.execute(_TOMBSTONES, params)
        for label, statement in _DELETIONS:
            cur = await conn.execute(statement.encode(), params)
            deleted[label] = max(cur.rowcount, 0)
        # The database refuses identifiers under 5 characters (a fragment would blank
        # half the log); a wa_id is at least 7 digits, Meta's user ids are longer.
        identifiers = [wa_id, *texts, *([user_id] if user_id and len(user_id) >= 5 else [])]
        rewritten = await _pseudonymise_audit(conn, identifiers, pseudonym(erasure_id))
        if any(deleted.values()) or rewritten:
            await record_audit(
                conn,
                actor=actor,
                action=ERASURE_ACTION,
                target=pseudonym(erasure_id),
                details={
                    "conversations": len(ids),
                    "deleted": deleted,
                    "pseudonymised_audit_rows": rewritten,
                },
                remote_addr=remote_addr,
            )
    return ErasureReport(erasure_id, wa_id, len(ids), deleted, rewritten)


async def _lock_contact(conn: psycopg.AsyncConnection[Any], wa_id: str) -> str | None:
    """Lock the contact row (the webhook takes it too) and return Meta's user id for
    them, which the audit log may name as well."""
    cur = await conn.execute("SELECT user_id FROM contacts WHERE wa_id = %s FOR UPDATE", (wa_id,))
    row = await cur.fetchone()
    return row["user_id"] if row else None


async def _lock_conversations(conn: psycopg.AsyncConnection[Any], wa_id: str) -> list[uuid.UUID]:
    """The customer's conversations, row-locked: the webhook (new messages) and the
    runner (claims) wait for the erasure, then find nothing."""
    cur = await conn.execute(
        "SELECT id FROM agent_conversations WHERE wa_id = %s ORDER BY id FOR UPDATE", (wa_id,)
    )
    return [row["id"] for row in await cur.fetchall()]


async def _pseudonymise_audit(
    conn: psycopg.AsyncConnection[Any], identifiers: list[str], replacement: str
) -> int:
    """Through the one rewrite the audit log's trigger allows (migration 0016)."""
    cur = await conn.execute(
        "SELECT audit_log_pseudonymise(%s::text[], %s) AS n", (identifiers, replacement)
    )
    row = await cur.fetchone()
    return int(row["n"]) if row else 0


async def _refuse_running_jobs(conn: psycopg.AsyncConnection[Any], texts: list[str]) -> None:
    """Lock the customer's jobs (a worker skips locked jobs when it fetches) and give
    up this attempt while one of them is running."""
    if not texts:
        return
    cur = await conn.execute(
        "SELECT id, task_name FROM procrastinate_jobs"
        " WHERE args ->> 'conversation_id' = ANY(%s) AND status = 'doing' FOR UPDATE",
        (texts,),
    )
    running = await cur.fetchall()
    await conn.execute(
        "SELECT id FROM procrastinate_jobs WHERE args ->> 'conversation_id' = ANY(%s) FOR UPDATE",
        (texts,),
    )
    if running:
        raise _JobsRunning(", ".join(f"{r['task_name']} #{r['id']}" for r in running))


async def _delete_threads(pool: Pool, conn: psycopg.AsyncConnection[Any], texts: list[str]) -> int:
    """Checkpoints go through the checkpointer (its tables are its own business)."""
    if not texts:
        return 0
    cur = await conn.execute(
        "SELECT count(*) AS n FROM checkpoints WHERE thread_id = ANY(%s)", (texts,)
    )
    row = await cur.fetchone()
    saver = create_checkpointer(pool)
    for thread_id in texts:
        await saver.adelete_thread(thread_id)
    return int(row["n"]) if row else 0


async def forget_from_terminal(settings: Settings, raw_wa_id: str) -> int:
    """`wa-agent forget WA_ID`: erase, audited as `cli:user@host`, and print what went."""
    try:
        wa_id = normalize_customer_id(raw_wa_id, settings.phone_region)
    except ValueError as exc:
        print(f"{raw_wa_id!r}: {exc}", file=sys.stderr)
        return 2
    database_url = await asyncio.to_thread(resolve_database_url, settings)
    limiter = build_limiter(settings)
    try:
        async with open_pool(database_url, settings) as pool:
            report = await forget_customer(pool, wa_id, actor=cli_actor(), limiter=limiter)
    except ErasureBusy as busy:
        print(f"{wa_id}: a job of theirs is still running ({busy}); try again", file=sys.stderr)
        return 1
    finally:
        await limiter.aclose()
    if not report.found:
        print(f"nothing was stored about {wa_id}")
        return 1
    counts = ", ".join(f"{label} {n}" for label, n in report.deleted.items() if n)
    if report.pseudonymised_audit_rows:
        counts += f"; audit rows pseudonymised {report.pseudonymised_audit_rows}"
    print(f"forgot {wa_id} (erasure {report.erasure_id}): {counts}")
    return 0
