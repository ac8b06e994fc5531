"""Where a turn's replies go: the one thing channels differ in.

Every turn, whatever its channel, goes inbox → claim → graph → outbox → transport. A
conversation's channel is its business number (`agent_conversations.phone_number_id`):
a WhatsApp number, or one of the names below for conversations held elsewhere. The
transport sends one reply part and marks a message read; the outbox around it keeps
each part sent at most once, in order, whatever the channel.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from graph.state import Reply

# Business "numbers" of the channels that are not WhatsApp.
TERMINAL = "terminal"  # `wa-agent chat`
WEB = "web"  # the SSE streaming API (server/web_conversations.py)
NOT_WHATSAPP = frozenset({TERMINAL, WEB})


class Transport(Protocol):
    async def send_reply(self, to: str, reply: Reply) -> str:
        """Deliver one part to `to`; the channel's id of the message sent."""
        ...

    async def mark_read(self, message_id: str, *, typing: bool = True) -> None:
        """The customer's message seen (and, where the channel can, "typing…")."""
        ...


@dataclass(frozen=True)
class Channels:
    """The transport of each conversation, by its business number."""

    whatsapp: Transport | None
    others: Mapping[str, Transport] = field(default_factory=dict)

    def for_number(self, phone_number_id: str) -> Transport | None:
        if phone_number_id in NOT_WHATSAPP:
            return self.others.get(phone_number_id)
        return self.whatsapp


def answer_queue(phone_number_id: str, wa_id: str) -> str:
    """The queue a conversation's jobs wait in. A terminal conversation is answered only
    by the `wa-agent chat` process holding it (its replies are printed there); the rest
    by any worker."""
    return f"{TERMINAL}:{wa_id}" if phone_number_id == TERMINAL else DEFAULT_QUEUE


DEFAULT_QUEUE = "default"  # procrastinate's, where configure_task defers by default
