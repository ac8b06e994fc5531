"""The webhook's only work: store what Meta sent and enqueue the answer, atomically.

Everything here runs inside the webhook request, so it does no model call and no
outbound HTTP: a few indexed writes in one transaction, then the 200.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from server.runner.queue import ANSWER_TASK
from server.runner.transport import answer_queue
from server.whatsapp.models import InboundEvent, MessageStatus

# Kinds stored for the record but never answered: a reaction or a number change is
# not a request, and replying to one would feel like a bot talking to itself.
SILENT_KINDS = frozenset({"reaction", "system"})

# Statuses only move forward; Meta delivers them out of order.
STATUS_RANK = {"pending": 0, "sending": 1, "unknown": 1, "sent": 2, "delivered": 3, "read": 4}


@dataclass(frozen=True)
class InboxResult:
    stored: int = 0
    duplicates: int = 0
    enqueued: int = 0
    statuses: int = 0


async def record_inbound(
    conn: psycopg.AsyncConnection[Any], event: InboundEvent, *, answered_here: bool = False
) -> tuple[bool, bool]:
    """Store one message and make sure a job will answer it: one statement,
    `wa_record_inbound` (migration 0023), so the message and its job commit together.
    Returns (stored, enqueued): a message Meta delivered again, or one of an erased
    customer, is not stored; a job already waiting for the conversation covers it.
    `answered_here`: no job, the caller answers it now (the web stream, under the
    conversation's lock)."""
    message = event.message
    silent = message.kind in SILENT_KINDS or not message.expects_reply
    cur = await conn.execute(
        "SELECT * FROM wa_record_inbound(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (
            message.id,
            event.phone_number_id,
            event.sender_id,
            event.user_id,
            event.profile_name,
            message.kind,
            message.as_text(),
            message.is_supported,
            getattr(message, "reply_id", None),
            Jsonb(message.model_dump(mode="json", by_alias=True)),
            message.occurred_at,
            silent,
            None if answered_here else answer_queue(event.phone_number_id, event.sender_id),
            ANSWER_TASK,
        ),
    )
    row = await cur.fetchone()
    return (bool(row["stored"]), bool(row["enqueued"])) if row else (False, False)


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
