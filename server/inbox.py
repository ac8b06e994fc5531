"""The webhook's only work: store what Meta sent and enqueue the answer, atomically.

Everything here runs inside the webhook request, so it does no model call and no
outbound HTTP: a few indexed writes in one transaction, then the 200.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from server.queue import enqueue_answer
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
    conn: psycopg.AsyncConnection[Any], queue: Any, event: InboundEvent
) -> tuple[bool, bool]:
    """Store one message and make sure a job will answer it. Returns (stored, enqueued).

    Must run inside the caller's transaction: the conversation row is locked first, and
    the job that claims this conversation's messages takes the same lock, so a job can
    never read the inbox between this insert and its commit and miss the message.
    """
    message = event.message
    # An erased customer's message that Meta delivers again must not bring them back:
    # erasure keeps the message's SHA-256 (server/erasure.py). The contact row lock waits
    # for an erasure in progress, so its tombstones are visible to the check after it.
    await conn.execute("SELECT 1 FROM contacts WHERE wa_id = %s FOR KEY SHARE", (event.sender_id,))
    cur = await conn.execute(
        "SELECT 1 FROM erased_wamids"
        " WHERE wamid_sha256 = encode(sha256(convert_to(%s, 'UTF8')), 'hex')",
        (message.id,),
    )
    if await cur.fetchone() is not None:
        return False, False
    conversation_id = await _upsert_conversation(conn, event)
    silent = message.kind in SILENT_KINDS or not message.expects_reply
    cur = await conn.execute(
        """
        INSERT INTO inbound_messages
            (wamid, conversation_id, wa_id, kind, text, supported, reply_id, payload, sent_at,
             processed_at)
        VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, CASE WHEN %s THEN now() END)
        ON CONFLICT (wamid) DO NOTHING
        RETURNING id
        """,
        (
            message.id,
            conversation_id,
            event.sender_id,
            message.kind,
            message.as_text(),
            message.is_supported,
            getattr(message, "reply_id", None),
            Jsonb(message.model_dump(mode="json", by_alias=True)),
            message.occurred_at,
            silent,
        ),
    )
    if await cur.fetchone() is None:
        return False, False
    if silent:
        return True, False
    return True, await enqueue_answer(queue, conn, conversation_id)


async def _upsert_conversation(conn: psycopg.AsyncConnection[Any], event: InboundEvent) -> str:
    await conn.execute(
        """
        INSERT INTO contacts (wa_id, user_id, profile_name) VALUES (%s, %s, %s)
        ON CONFLICT (wa_id) DO UPDATE SET
            user_id = COALESCE(EXCLUDED.user_id, contacts.user_id),
            profile_name = COALESCE(EXCLUDED.profile_name, contacts.profile_name),
            last_seen_at = now()
        """,
        (event.sender_id, event.user_id, event.profile_name),
    )
    cur = await conn.execute(
        """
        INSERT INTO agent_conversations (phone_number_id, wa_id, last_inbound_at)
        VALUES (%s, %s, now())
        ON CONFLICT (phone_number_id, wa_id) DO UPDATE SET
            last_inbound_at = now(), updated_at = now()
        RETURNING id
        """,
        (event.phone_number_id, event.sender_id),
    )
    row = await cur.fetchone()
    assert row is not None
    return str(row["id"])


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
