"""Who a conversation is with, and where it stands: one read of one row.

The web stream, a replay, the operator's reply and the admin API all need the same
few columns of a conversation (the customer, their name, the business number, the
status); they read them here, so a renamed column is one change.
"""

from __future__ import annotations

from dataclasses import dataclass

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
