"""Where a turn's replies go: the one thing channels differ in.

Every turn, whatever its channel, goes inbox → claim → graph → outbox → transport. A
conversation's channel is its business number (`agent_conversations.phone_number_id`):
a WhatsApp number, or one of the names below for conversations held elsewhere. The
transport sends one reply part and marks a message read; the outbox around it keeps
each part sent at most once, in order, whatever the channel.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from graph.composition.event_stream import TurnEvent
from graph.state import Reply
from server.whatsapp.numbers import WhatsAppNumbers

# Business "numbers" of the channels that are not WhatsApp.
TERMINAL = "terminal"  # `wa-agent chat`
WEB = "web"  # the SSE streaming API (server/http/web_conversations.py)
NOT_WHATSAPP = frozenset({TERMINAL, WEB})


class Transport(Protocol):
    async def send_reply(self, to: str, reply: Reply) -> str:
        """Deliver one part to `to`; the channel's id of the message sent."""
        ...

    async def mark_read(self, message_id: str, *, typing: bool = True) -> None:
        """The customer's message seen (and, where the channel can, "typing…")."""
        ...


@runtime_checkable
class Watched(Protocol):
    """A transport someone watches live (the web stream): it also hears the turn's
    steps and tokens as the graph makes them, and why a turn was refused."""

    async def on_event(self, event: TurnEvent) -> None: ...

    async def refused(self, reason: str, message: str | None) -> None: ...


class Stored:
    """The web channel as a worker sees it: nobody is watching, so a reply is delivered
    by being stored (the outbox and the transcript), where the web chat reads it."""

    async def send_reply(self, to: str, reply: Reply) -> str:
        return f"stored-{uuid.uuid4().hex}"

    async def mark_read(self, message_id: str, *, typing: bool = True) -> None:
        """Nothing to show."""


@dataclass(frozen=True)
class Channels:
    """The transport of each conversation, by its business number: a WhatsApp number
    speaks through its own client, so each customer is answered from the number they
    wrote to."""

    whatsapp: WhatsAppNumbers
    others: Mapping[str, Transport] = field(default_factory=dict)

    def for_number(self, phone_number_id: str) -> Transport | None:
        if phone_number_id in NOT_WHATSAPP:
            return self.others.get(phone_number_id)
        return self.whatsapp.transport(phone_number_id)


def channel_name(phone_number_id: str) -> str:
    """The channel's name in traces and the run's context: whatsapp, terminal or web."""
    return phone_number_id if phone_number_id in NOT_WHATSAPP else "whatsapp"


def answer_queue(phone_number_id: str, wa_id: str) -> str:
    """The queue a conversation's jobs wait in. A terminal conversation is answered only
    by the `wa-agent chat` process holding it (its replies are printed there); the rest
    by any worker."""
    return f"{TERMINAL}:{wa_id}" if phone_number_id == TERMINAL else DEFAULT_QUEUE


DEFAULT_QUEUE = "default"  # procrastinate's, where configure_task defers by default
