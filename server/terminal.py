"""`wa-agent chat`: the terminal as a channel, on the production path.

A line typed is a message in the inbox, answered by the same runner as WhatsApp's —
claim, gate, graph, outbox, this transport — so caps, limits, confirmations, the menu's
actions and human takeover behave as they do for customers. A tap is its id typed as
shown (`[menu:booking]` → `menu:booking`). The conversation's jobs wait in a queue of
its own that only this process takes, so its replies are printed here; history lives in
Postgres, so a conversation goes on across sessions. The demo business is loaded on
first use, so a newcomer has something to book.
"""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TextIO

import structlog

from graph.settings import Settings
from graph.state import Reply, reply_text
from server.runner.inbox import record_inbound
from server.runner.transport import TERMINAL, answer_queue
from server.services import Services, open_services
from server.whatsapp.messages import (
    InteractiveMessage,
    InteractivePayload,
    ReplyOption,
    TextBody,
    TextMessage,
)
from server.whatsapp.models import InboundEvent
from tools.demo import seed_demo

log = structlog.get_logger(__name__)

_ANSWER_TIMEOUT_S = 120.0


def render_reply(reply: Reply) -> str:
    """A reply as the terminal shows it: buttons and list rows with the ids to type."""
    if reply["kind"] == "text":
        return f"bot> {reply['text']}"
    if reply["kind"] == "template":
        return f"bot> [template {reply['name']}] {reply['body']}"
    if reply["kind"] == "buttons":
        buttons = [f"    [{button['id']}] {button['title']}" for button in reply["buttons"]]
        return "\n".join([f"bot> {reply['body']}", *buttons])
    if reply["kind"] == "image" or reply["kind"] == "document":
        where = reply.get("link") or reply.get("media_id")
        return f"bot> {reply_text(reply)} <{where}>"
    if reply["kind"] == "location":
        return f"bot> {reply_text(reply)} <{reply['latitude']}, {reply['longitude']}>"
    rows = [f"    [{row['id']}] {row['title']}" for s in reply["sections"] for row in s["rows"]]
    return "\n".join([f"bot> {reply['body']}", *rows])


@dataclass
class TerminalTransport:
    """Replies printed; the options last shown kept, so a typed id can be a tap."""

    out: TextIO = field(default_factory=lambda: sys.stdout)
    options: dict[str, str] = field(default_factory=dict)  # id → title

    async def send_reply(self, to: str, reply: Reply) -> str:
        if reply["kind"] == "buttons":
            self.options = {b["id"]: b["title"] for b in reply["buttons"]}
        elif reply["kind"] == "menu":
            self.options = {r["id"]: r["title"] for s in reply["sections"] for r in s["rows"]}
        print(render_reply(reply), file=self.out, flush=True)
        return f"terminal-{uuid.uuid4().hex}"

    async def mark_read(self, message_id: str, *, typing: bool = True) -> None:
        """Nothing to show: the answer follows at once."""


def customer_key(name: str) -> str:
    """The terminal customer's key: its own namespace, never a phone number."""
    return f"chat-{name}"


def typed_event(customer: str, name: str, line: str, options: dict[str, str]) -> InboundEvent:
    """A typed line as the webhook would have parsed it: a tap when it is an id shown."""
    text = line.strip()
    common = {"id": f"terminal-{uuid.uuid4().hex}", "from": customer, "timestamp": _now()}
    message: TextMessage | InteractiveMessage
    if text in options:
        tap = ReplyOption(id=text, title=options[text])
        message = InteractiveMessage(
            **common,
            type="interactive",
            interactive=InteractivePayload(type="button_reply", button_reply=tap),
        )
    else:
        message = TextMessage(**common, type="text", text=TextBody(body=line))
    return InboundEvent(TERMINAL, TERMINAL, customer, None, name, None, message)


def _now() -> str:
    return str(int(time.time()))


async def chat_in_terminal(settings: Settings, name: str) -> int:
    customer = customer_key(name)
    transport = TerminalTransport()
    async with open_services(
        settings,
        run_worker_here=True,
        channels={TERMINAL: transport},
        worker_queues=(answer_queue(TERMINAL, customer),),
    ) as services:
        await _demo_on_first_use(services)
        print(f"Talking to wa-agent as '{name}'. Ctrl-D to leave.", file=sys.stderr)
        while (line := await asyncio.to_thread(_prompt)) is not None:
            if line.strip():
                await say(services, typed_event(customer, name, line, transport.options))
    return 0


async def say(services: Services, event: InboundEvent) -> None:
    """Into the inbox, then wait until the runner has answered it (or given up)."""
    async with services.pool.connection() as conn:
        await record_inbound(conn, event)
    deadline = time.monotonic() + _ANSWER_TIMEOUT_S
    while time.monotonic() < deadline:
        if await _answered(services, event.message.id):
            return
        await asyncio.sleep(0.05)
    print("(no answer yet: it will be printed when it comes)", file=sys.stderr)


async def _answered(services: Services, wamid: str) -> bool:
    async with services.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT processed_at IS NOT NULL AS done FROM inbound_messages WHERE wamid = %s",
            (wamid,),
        )
        row = await cur.fetchone()
    return bool(row and row["done"])


async def _demo_on_first_use(services: Services) -> None:
    async with services.pool.connection() as conn:
        cur = await conn.execute("SELECT EXISTS (SELECT 1 FROM catalog_items) AS found")
        row = await cur.fetchone()
    if row and not row["found"]:
        report = await seed_demo(services.pool, timezone=services.settings.business_timezone)
        print(f"(demo business loaded: {report.summary()})", file=sys.stderr)


def _prompt() -> str | None:
    try:
        return input("you> " if sys.stdin.isatty() else "")
    except EOFError:
        return None


__all__: Sequence[str] = ("TerminalTransport", "chat_in_terminal", "render_reply", "say")
