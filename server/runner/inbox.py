"""The webhook's only work: store what Meta sent and enqueue the answer, atomically
(the statuses of our own messages are the outbox's: server/runner/outbox.py).

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
from server.whatsapp.models import InboundEvent

# Kinds stored for the record but never answered: a reaction or a number change is
# not a request, and replying to one would feel like a bot talking to itself.
SILENT_KINDS = frozenset({"reaction", "system"})


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
