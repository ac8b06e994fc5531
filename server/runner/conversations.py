"""The conversation row: who it is with, where it stands, who has it.

Every change of a conversation's standing is written here — opened, waiting for a
person, taken over by an operator, handed back, assigned — so the rules between them
(a conversation an operator took over stays theirs until handed back) live in one
place. The web stream, a replay, the operator's reply and the admin API read the same
few columns (the customer, their name, the business number, the status) here too.
WhatsApp conversations are opened by the inbox's `wa_record_inbound` (one call per
delivery, migrations/0023).
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg
from psycopg.rows import DictRow

from graph.infra.database import Pool


@dataclass(frozen=True)
class ConversationRow:
    conversation_id: str
    wa_id: str  # the customer's key (a phone number, `web:<visitor>`, or a user id)
    customer_name: str | None
    phone_number_id: str  # the business number (or channel) it runs on
    status: str  # "active", or "escalated" while a person has it


async def find_conversation(pool: Pool, conversation_id: str) -> ConversationRow | None:
    """The conversation, or None when there is none with that id."""
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT c.wa_id, k.profile_name, c.phone_number_id, c.status"
            " FROM agent_conversations c JOIN contacts k USING (wa_id) WHERE c.id = %s",
            (conversation_id,),
        )
        row = await cur.fetchone()
    if row is None:
        return None
    return ConversationRow(
        conversation_id=conversation_id,
        wa_id=str(row["wa_id"]),
        customer_name=row["profile_name"],
        phone_number_id=str(row["phone_number_id"]),
        status=str(row["status"]),
    )


async def open_conversation(
    conn: psycopg.AsyncConnection[DictRow],
    phone_number_id: str,
    wa_id: str,
    customer_name: str | None,
) -> str:
    """The customer's conversation on that number, created with its contact when new;
    its id. Runs in the caller's transaction."""
    await conn.execute(
        "INSERT INTO contacts (wa_id, profile_name) VALUES (%s, %s)"
        " ON CONFLICT (wa_id) DO UPDATE"
        " SET profile_name = coalesce(EXCLUDED.profile_name, contacts.profile_name)",
        (wa_id, customer_name),
    )
    cur = await conn.execute(
        "INSERT INTO agent_conversations (phone_number_id, wa_id) VALUES (%s, %s)"
        " ON CONFLICT (phone_number_id, wa_id) DO UPDATE SET updated_at = now()"
        " RETURNING id",
        (phone_number_id, wa_id),
    )
    row = await cur.fetchone()
    assert row is not None
    return str(row["id"])


async def record_waiting(pool: Pool, conversation_id: str, status: str) -> None:
    """After a turn: "escalated" while the graph waits for a person, else "active". A
    conversation an operator took over stays theirs until handed back."""
    async with pool.connection() as conn:
        await conn.execute(
            "UPDATE agent_conversations SET status = %s, updated_at = now()"
            " WHERE id = %s AND status <> %s AND taken_over_at IS NULL",
            (status, conversation_id, status),
        )


async def mark_taken_over(pool: Pool, conversation_id: str, operator: str) -> bool:
    """The conversation is the operator's from now on (and assigned to them): the bot's
    replies not sent yet are withheld. False when it already waits for a person."""
    async with pool.connection() as conn:
        cur = await conn.execute(
            "UPDATE agent_conversations SET status = 'escalated', taken_over_at = now(),"
            " assigned_to = %s, updated_at = now() WHERE id = %s AND status <> 'escalated'",
            (operator, conversation_id),
        )
        return bool(cur.rowcount)


async def mark_handed_back(pool: Pool, conversation_id: str) -> None:
    """The bot answers the conversation again."""
    async with pool.connection() as conn:
        await conn.execute(
            "UPDATE agent_conversations SET status = 'active', taken_over_at = NULL,"
            " updated_at = now() WHERE id = %s",
            (conversation_id,),
        )


async def assign(pool: Pool, conversation_id: str, operator: str | None) -> None:
    """The conversation's assignee (None: nobody)."""
    async with pool.connection() as conn:
        await conn.execute(
            "UPDATE agent_conversations SET assigned_to = %s WHERE id = %s",
            (operator, conversation_id),
        )


async def remember_language(pool: Pool, wa_id: str, language: str) -> None:
    """The language the customer now writes in: notices follow it from this turn on."""
    async with pool.connection() as conn:
        await conn.execute(
            "UPDATE contacts SET language = %s WHERE wa_id = %s AND language IS DISTINCT FROM %s",
            (language, wa_id, language),
        )
