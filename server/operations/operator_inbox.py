"""What operators keep beside a conversation: internal notes and the business's canned
replies. This module owns that SQL; the conversation's assignee and whether an operator
took it over are the conversation row's (server/runner/conversations.py).

Notes are for the team: nothing here is ever staged in the outbox, and a note goes
with its conversation (erasure, retention). A canned reply is only text an operator
picks; sending it is an ordinary operator reply (server/runner/operators.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from graph.infra.database import Pool


@dataclass(frozen=True)
class Note:
    id: int
    author: str
    text: str
    created_at: datetime


async def add_note(pool: Pool, conversation_id: str, author: str, text: str) -> Note:
    async with pool.connection() as conn:
        cur = await conn.execute(
            "INSERT INTO conversation_notes (conversation_id, author, text) VALUES (%s, %s, %s)"
            " RETURNING id, author, text, created_at",
            (conversation_id, author, text),
        )
        row = await cur.fetchone()
    assert row is not None  # an INSERT … RETURNING returns its row
    return Note(**row)


async def notes_of(pool: Pool, conversation_id: str) -> list[Note]:
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT id, author, text, created_at FROM conversation_notes"
            " WHERE conversation_id = %s ORDER BY id",
            (conversation_id,),
        )
        return [Note(**row) for row in await cur.fetchall()]


async def save_canned_reply(pool: Pool, name: str, text: str, author: str) -> None:
    async with pool.connection() as conn:
        await conn.execute(
            "INSERT INTO canned_replies (name, text, updated_by) VALUES (%s, %s, %s)"
            " ON CONFLICT (name) DO UPDATE SET text = EXCLUDED.text,"
            " updated_by = EXCLUDED.updated_by, updated_at = now()",
            (name, text, author),
        )


async def delete_canned_reply(pool: Pool, name: str) -> bool:
    async with pool.connection() as conn:
        cur = await conn.execute("DELETE FROM canned_replies WHERE name = %s", (name,))
        return bool(cur.rowcount)


async def canned_replies(pool: Pool) -> list[dict[str, Any]]:
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT name, text, updated_by, updated_at FROM canned_replies ORDER BY name"
        )
        return [dict(row) for row in await cur.fetchall()]


async def canned_reply(pool: Pool, name: str) -> str | None:
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT text FROM canned_replies WHERE name = %s", (name,))
        row = await cur.fetchone()
    return str(row["text"]) if row else None
