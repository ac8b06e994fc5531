"""WhatsApp's customer-service window: when a free-form message can still reach a customer.

Meta delivers a free-form message (text, buttons, lists) only within 24 hours of the
customer's last message to that business number; after that it refuses the send (error
131047) and only an approved template can reach them. An operator's reply queued after
the window closed would be accepted by us and then fail at Meta, out of the operator's
sight, so the admin API asks here first and refuses at once.

The customer's last message is Meta's own timestamp of it (`inbound_messages.sent_at`):
a webhook Meta delivers again, or late, does not move it, while the conversation's
`last_inbound_at` (the time of our last delivery) would. WhatsApp's system notices (a
changed number) are not the customer writing. Channels that are not WhatsApp (the
terminal, the web chat) have no window.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from graph.infra.database import Pool
from server.runner.conversations import ConversationRow
from server.runner.transport import NOT_WHATSAPP

SERVICE_WINDOW = timedelta(hours=24)


@dataclass(frozen=True)
class ServiceWindow:
    """The window of one conversation: when the customer last wrote, and so when it
    closes; `last_customer_at` None when nothing of theirs is left to say (never open)."""

    last_customer_at: datetime | None

    @property
    def closes_at(self) -> datetime | None:
        if self.last_customer_at is None:
            return None
        return self.last_customer_at + SERVICE_WINDOW

    def is_open(self, now: datetime | None = None) -> bool:
        closes = self.closes_at
        return closes is not None and (now or datetime.now(UTC)) < closes


async def service_window(pool: Pool, conversation: ConversationRow) -> ServiceWindow | None:
    """The conversation's window; None on a channel without one (always open)."""
    if conversation.phone_number_id in NOT_WHATSAPP:
        return None
    async with pool.connection() as conn:
        cur = await conn.execute(
            """
            SELECT coalesce(
                (SELECT max(m.sent_at) FROM inbound_messages m
                 WHERE m.conversation_id = c.id AND m.kind <> 'system'),
                c.last_inbound_at) AS last_customer_at
            FROM agent_conversations c WHERE c.id = %s
            """,
            (conversation.conversation_id,),
        )
        row = await cur.fetchone()
    return ServiceWindow(row["last_customer_at"] if row else None)
