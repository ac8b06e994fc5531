"""The outbox: a run's replies become numbered parts, each sent at most once.

A part is written before anything is sent, claimed (`pending` → `sending`) in its own
committed statement just before its HTTP call, and settled after. A retryable refusal
(429/5xx after the client's own retries) puts the part back to `pending` and raises
`DeliveryDeferred`: the run is postponed and sends it later, in order, until the part
is older than the give-up age (then it is `failed`: past WhatsApp's 24-hour window a
late answer could not be sent anyway). A worker that dies in between leaves the part
`sending`; the resumed run marks it `unknown` and never sends it again — a duplicate
reply is worse than a log line an operator can act on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import psycopg
import structlog
from psycopg.types.json import Jsonb

from graph.infra.database import Pool
from graph.state import Reply, reply_text
from server.runner.transport import Transport
from server.whatsapp.client import split_text
from server.whatsapp.graph_errors import WhatsAppError
from server.whatsapp.models import MessageStatus

log = structlog.get_logger(__name__)


# Statuses only move forward; Meta delivers them out of order.
STATUS_RANK = {"pending": 0, "sending": 1, "unknown": 1, "sent": 2, "delivered": 3, "read": 4}

# Parts older than this are given up on when Meta refuses them again: the customer
# service window is 24 hours, after which only templates may be sent.
DEFAULT_GIVE_UP = timedelta(hours=24)


class DeliveryDeferred(Exception):
    """Meta refused a part for now (429/5xx); `retry_after` is its own hint, if any."""

    def __init__(self, retry_after: float | None) -> None:
        super().__init__("WhatsApp refused the send for now")
        self.retry_after = retry_after


def reply_parts(replies: Sequence[Reply]) -> list[Reply]:
    """One WhatsApp message per part: long texts cut at paragraph/sentence boundaries."""
    parts: list[Reply] = []
    for reply in replies:
        if reply["kind"] == "text":
            parts.extend({"kind": "text", "text": chunk} for chunk in split_text(reply["text"]))
        else:
            parts.append(reply)
    return parts


def reply_transcript(parts: Sequence[Reply]) -> str:
    return "\n\n".join(reply_text(part) for part in parts)


@dataclass(frozen=True)
class StagedPart:
    """A part in the outbox, as the sender needs it."""

    id: int
    wa_id: str
    payload: Reply
    expired: bool = False


async def stage_parts(
    pool: Pool,
    *,
    conversation_id: str,
    run_id: str,
    wa_id: str,
    parts: Sequence[Reply],
    agent: str | None = None,
) -> list[StagedPart]:
    """Write every part, once per (run, part), with the transcript line, and mark the run
    staged (a resumed run then only sends) — one statement. Returns the parts written
    now, in order; staging again writes nothing and returns nothing."""
    rows = [{"part": i, "kind": part["kind"], "payload": part} for i, part in enumerate(parts)]
    async with pool.connection() as conn:
        cur = await conn.execute(
            _STAGE,
            {
                "conversation": conversation_id,
                "run": run_id,
                "wa_id": wa_id,
                "agent": agent,
                "parts": Jsonb(rows),
                "transcript": reply_transcript(parts),
            },
        )
        written = await cur.fetchall()
    by_part = {row["part"]: row["id"] for row in written}
    return [StagedPart(by_part[i], wa_id, part) for i, part in enumerate(parts) if i in by_part]


_STAGE = """
WITH parts AS (
    INSERT INTO outbound_messages (conversation_id, run_id, part, wa_id, kind, payload)
    SELECT %(conversation)s, %(run)s, p.part, %(wa_id)s, p.kind, p.payload
    FROM jsonb_to_recordset(%(parts)s) AS p(part integer, kind text, payload jsonb)
    ON CONFLICT (run_id, part) DO NOTHING
    RETURNING id, part
), transcript AS (
    INSERT INTO agent_messages (conversation_id, run_id, role, agent, content)
    SELECT %(conversation)s, %(run)s, 'agent', %(agent)s, %(transcript)s
    WHERE EXISTS (SELECT 1 FROM parts)
), staged AS (
    UPDATE conversation_runs SET staged_at = now(), retry_at = NULL, waiting_on = NULL
    WHERE id = %(run)s
)
SELECT id, part FROM parts ORDER BY part
"""


async def deliver_parts(
    pool: Pool,
    transport: Transport | None,
    run_id: str,
    *,
    give_up_after: timedelta = DEFAULT_GIVE_UP,
    staged: Sequence[StagedPart] | None = None,
    unless_taken_over: bool = False,
) -> int:
    """Send the run's pending parts in order; returns how many were sent. `staged`: the
    parts just written by `stage_parts` (a fresh run: nothing to read back or mark).
    `unless_taken_over`: the bot's own replies — from the moment an operator takes the
    conversation over (server/operations/operator_inbox.py), each part not sent yet is
    withheld, never sent; the check is part of claiming it, not a statement more.

    Raises `DeliveryDeferred` when Meta refuses a part for now: that part and the ones
    after it stay `pending`, so order holds when the run sends again.
    """
    pending = list(staged) if staged is not None else await _pending(pool, run_id, give_up_after)
    sent = withheld = 0
    for part in pending:
        status = await _claim(pool, part.id, unless_taken_over=unless_taken_over)
        if status == "sending":
            sent += await _send_one(pool, transport, part)
        elif status == "withheld":
            withheld += 1
    if withheld:
        log.info("run.withheld", parts=withheld, reason="an operator took the conversation over")
    return sent


async def _pending(pool: Pool, run_id: str, give_up_after: timedelta) -> list[StagedPart]:
    """A resumed run's parts still to send; a part left `sending` by a worker that died
    mid-send may have been delivered: it becomes `unknown`, never sent again."""
    async with pool.connection() as conn:
        cur = await conn.execute(
            "UPDATE outbound_messages SET status = 'unknown', updated_at = now()"
            " WHERE run_id = %s AND status = 'sending' RETURNING part",
            (run_id,),
        )
        for row in await cur.fetchall():
            log.error("outbox.part_state_unknown", run_id=run_id, part=row["part"])
        cur = await conn.execute(
            "SELECT id, wa_id, payload, created_at < now() - %s AS expired"
            " FROM outbound_messages WHERE run_id = %s AND status = 'pending' ORDER BY part",
            (give_up_after, run_id),
        )
        rows = await cur.fetchall()
    return [StagedPart(r["id"], r["wa_id"], r["payload"], r["expired"]) for r in rows]


async def _claim(pool: Pool, outbound_id: int, *, unless_taken_over: bool) -> str | None:
    """The part's new status: `sending` (it is this sender's to send), `withheld`, or
    None when it is not pending any more (another sender has it)."""
    async with pool.connection() as conn:
        cur = await conn.execute(
            _CLAIM_UNLESS_TAKEN_OVER if unless_taken_over else _CLAIM, (outbound_id,)
        )
        row = await cur.fetchone()
    return str(row["status"]) if row else None


_CLAIM = (
    "UPDATE outbound_messages SET status = 'sending', updated_at = now()"
    " WHERE id = %s AND status = 'pending' RETURNING status"
)
_CLAIM_UNLESS_TAKEN_OVER = """
UPDATE outbound_messages o
SET status = CASE WHEN c.status = 'escalated' AND c.taken_over_at IS NOT NULL
                  THEN 'withheld' ELSE 'sending' END,
    updated_at = now()
FROM agent_conversations c
WHERE o.id = %s AND o.status = 'pending' AND c.id = o.conversation_id
RETURNING o.status
"""


async def _send_one(pool: Pool, transport: Transport | None, part: StagedPart) -> int:
    try:
        if transport is None:
            raise WhatsAppError(title="no transport for this channel", status_code=0)
        result = await transport.send_reply(part.wa_id, part.payload)
    except WhatsAppError as exc:
        if exc.maybe_delivered and not exc.retryable:
            await _settle_unknown(pool, part.id, exc)
            return 0
        if exc.retryable and not part.expired:
            await _release(pool, part.id)
            raise DeliveryDeferred(exc.retry_after) from exc
        await _settle_failed(pool, part.id, exc)
        return 0
    except ValueError as exc:
        await _settle_failed(pool, part.id, exc)
        return 0
    async with pool.connection() as conn:
        await conn.execute(
            "UPDATE outbound_messages SET status = 'sent', wamid = %s, sent_at = now(),"
            " updated_at = now() WHERE id = %s AND status = 'sending'",
            (result, part.id),
        )
    return 1


async def _settle_unknown(pool: Pool, outbound_id: int, exc: WhatsAppError) -> None:
    """The connection broke after the request left: it may have been delivered. Not
    resent (a duplicate is worse); the status webhook, if it comes, cannot be matched
    without the wamid, so the operator sees `unknown`."""
    log.error("outbox.delivery_unknown", outbound_id=outbound_id, title=exc.title)
    async with pool.connection() as conn:
        await conn.execute(
            "UPDATE outbound_messages SET status = 'unknown', error_title = %s,"
            " updated_at = now() WHERE id = %s",
            (exc.title, outbound_id),
        )


async def _release(pool: Pool, outbound_id: int) -> None:
    """Meta answered with a retryable error, so the part was not accepted: send it later."""
    async with pool.connection() as conn:
        await conn.execute(
            "UPDATE outbound_messages SET status = 'pending', updated_at = now() WHERE id = %s",
            (outbound_id,),
        )


async def _settle_failed(pool: Pool, outbound_id: int, exc: Exception) -> None:
    code = exc.code if isinstance(exc, WhatsAppError) else None
    title = exc.title if isinstance(exc, WhatsAppError) else type(exc).__name__
    details = exc.details if isinstance(exc, WhatsAppError) else str(exc)
    log.error("outbox.send_failed", outbound_id=outbound_id, code=code, title=title)
    async with pool.connection() as conn:
        await conn.execute(
            "UPDATE outbound_messages SET status = 'failed', error_code = %s, error_title = %s,"
            " error_details = %s, updated_at = now() WHERE id = %s",
            (code, title, details[:1000], outbound_id),
        )


async def stage_partial_part(
    pool: Pool, conversation_id: str, run_id: str, part: int, wa_id: str, text: str
) -> None:
    """One part of an answer the model is still writing, numbered ahead of the rest of
    the run's parts (server/runner/partial_delivery.py); staged once whatever retries."""
    payload = {"kind": "text", "text": text, "partial": True}
    async with pool.connection() as conn:
        await conn.execute(
            "INSERT INTO outbound_messages"
            " (conversation_id, run_id, part, wa_id, kind, payload)"
            " VALUES (%s, %s, %s, %s, 'text', %s) ON CONFLICT (run_id, part) DO NOTHING",
            (conversation_id, run_id, part, wa_id, Jsonb(payload)),
        )


async def record_status(conn: psycopg.AsyncConnection[Any], status: MessageStatus) -> bool:
    """Move an outbound message's status forward; a failure records Meta's error."""
    if status.status == "failed":
        error = status.errors[0] if status.errors else None
        cur = await conn.execute(
            """
            UPDATE outbound_messages SET status = 'failed', updated_at = now(),
                error_code = %s, error_title = %s, error_details = %s
            WHERE wamid = %s
            """,
            (
                error.code if error else None,
                error.title if error else None,
                error.detail_text if error else None,
                status.id,
            ),
        )
        return cur.rowcount > 0
    rank = STATUS_RANK.get(status.status)
    if rank is None:
        return False
    behind = [name for name, r in STATUS_RANK.items() if r < rank]
    cur = await conn.execute(
        "UPDATE outbound_messages SET status = %s, updated_at = now()"
        " WHERE wamid = %s AND status = ANY(%s)",
        (status.status, status.id, behind),
    )
    return cur.rowcount > 0
