"""Partial delivery (flag `partial_delivery`): a long answer reaches WhatsApp in up to
`partial_max_parts` messages cut at paragraph breaks while the model is still writing,
the first as soon as its paragraph is complete, the typing indicator shown in between.

Every part goes through the outbox under the run's id and its part number, like any
reply, so a part is sent at most once; the parts sent early are marked `"partial": true`
in their payload. When the run ends, `parts_after_partial` turns its replies into the
rest: what follows the parts already sent. If the final answer does not continue them
(the model failed mid-stream and the fallback answered, or the run gave up), the
customer gets a short apology instead — never a cut sentence, never a repeat.

Pacing: parts to one customer are at least `partial_min_interval_seconds` apart
(WhatsApp's per-user limit, 131056). A part Meta refuses for now stays pending and
stops early delivery: the run's normal delivery sends it, and the rest, in order.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import structlog

from graph.composition.builder import ConversationGraph
from graph.composition.event_stream import StreamingGraph, TurnEvent
from graph.composition.turns import TurnGraph
from graph.infra.database import Pool
from graph.settings import Settings
from graph.state import Reply, text_reply
from server.runner.outbox import deliver_parts, stage_partial_part
from server.runner.transport import Transport
from server.whatsapp.graph_errors import WhatsAppError
from server.whatsapp.outbound import TEXT_LIMIT

log = structlog.get_logger(__name__)

FLAG = "partial_delivery"
PARAGRAPH_BREAK = "\n\n"


@dataclass(frozen=True)
class PartialOptions:
    """What partial delivery needs of the settings: how parts are cut and spaced."""

    max_parts: int
    first_chars: int
    later_chars: int
    min_interval_seconds: float

    @classmethod
    def from_settings(cls, settings: Settings) -> PartialOptions:
        return cls(
            max_parts=settings.partial_max_parts,
            first_chars=settings.partial_min_chars,
            later_chars=settings.partial_later_chars,
            min_interval_seconds=settings.partial_min_interval_seconds,
        )


class ParagraphCutter:
    """Cuts one streamed answer at paragraph breaks: the first part as soon as it holds
    `first_chars`, later ones once they hold `later_chars` (at the last break that
    keeps them within WhatsApp's 4,096), the rest at the end."""

    def __init__(self, max_parts: int, first_chars: int, later_chars: int) -> None:
        self.max_parts = max_parts
        self.first_chars = first_chars
        self.later_chars = later_chars
        self.text = ""  # the answer so far, as streamed
        self.consumed = 0  # how much of it the parts cover
        self.parts: list[str] = []
        self.message_id: str | None = None
        self.closed = False

    def feed(self, text: str, message_id: str | None) -> list[str]:
        """Add streamed text; the parts it completed."""
        if message_id != self.message_id:
            self._new_message(message_id)
        if self.closed:
            return []
        self.text += text
        completed: list[str] = []
        while len(self.parts) < self.max_parts - 1 and (cut := self._next_break()) is not None:
            part = self.text[self.consumed : cut].strip()
            self.consumed = cut + len(PARAGRAPH_BREAK)
            self.parts.append(part)
            completed.append(part)
        return completed

    def tool_call(self) -> None:
        """The message being streamed calls a tool: it is not the answer."""
        if self.parts:
            self.closed = True  # already sent text cannot be taken back
        else:
            self.text, self.consumed = "", 0

    def _new_message(self, message_id: str | None) -> None:
        """Another model message (after a tool or a handoff): only an answer that has
        not started being delivered may be replaced."""
        self.message_id = message_id
        if self.parts:
            self.closed = True
        else:
            self.text, self.consumed = "", 0

    def _next_break(self) -> int | None:
        """Where the next part ends: the first paragraph break past the wanted size, or
        the one before it if that would make a message longer than WhatsApp allows."""
        wanted = self.later_chars if self.parts else self.first_chars
        start, previous = self.consumed, None
        while (cut := self.text.find(PARAGRAPH_BREAK, start)) >= 0:
            size = len(self.text[self.consumed : cut].strip())
            if size > TEXT_LIMIT:
                return previous
            if size >= wanted:
                return cut
            previous = cut if size else previous
            start = cut + len(PARAGRAPH_BREAK)
        return None


class PartialDelivery:
    """Receives a turn's events (graph/composition/event_stream.py) and sends completed parts."""

    def __init__(
        self,
        pool: Pool,
        transport: Transport | None,
        options: PartialOptions,
        *,
        conversation_id: str,
        run_id: str,
        wa_id: str,
        typing_on: str | None,
    ) -> None:
        self.pool = pool
        self.transport = transport
        self.interval = options.min_interval_seconds
        self.conversation_id = conversation_id
        self.run_id = run_id
        self.wa_id = wa_id
        self.typing_on = typing_on  # the customer's message the typing indicator sits on
        self.cutter = ParagraphCutter(options.max_parts, options.first_chars, options.later_chars)
        self._parts: asyncio.Queue[str | None] = asyncio.Queue()
        self._stopped = False
        self._last_sent = float("-inf")

    async def on_event(self, event: TurnEvent) -> None:
        if event.kind == "token":
            for part in self.cutter.feed(str(event.data["text"]), event.data.get("id")):
                self._parts.put_nowait(part)
        elif event.kind == "tool_call_started":
            self.cutter.tool_call()

    async def send_parts(self) -> None:
        """Until `None`: stage and send each part, in order, paced."""
        index = 0
        while (part := await self._parts.get()) is not None:
            if self._stopped:
                continue
            loop = asyncio.get_running_loop()
            await asyncio.sleep(max(0.0, self._last_sent + self.interval - loop.time()))
            await self._stage(index, part)
            index += 1
            try:
                await deliver_parts(self.pool, self.transport, self.run_id, unless_taken_over=True)
            except WhatsAppError as exc:  # retryable: left pending for the run's delivery
                log.warning("partial.deferred", code=exc.code, title=exc.title)
                self._stopped = True
                continue
            self._last_sent = loop.time()
            await self._show_typing()

    def finish(self) -> None:
        self._parts.put_nowait(None)

    async def _stage(self, index: int, part: str) -> None:
        await stage_partial_part(
            self.pool, self.conversation_id, self.run_id, index, self.wa_id, part
        )

    async def _show_typing(self) -> None:
        """The indicator disappears with each message: show it again for the next part."""
        if self.transport is None or self.typing_on is None:
            return
        try:
            await self.transport.mark_read(self.typing_on, typing=True)
        except Exception as exc:  # cosmetic
            log.warning("partial.typing_failed", error=str(exc)[:200])


@contextlib.asynccontextmanager
async def partial_delivery(
    pool: Pool,
    transport: Transport | None,
    options: PartialOptions,
    **run: Any,
) -> AsyncIterator[PartialDelivery]:
    """Parts are sent while the block runs; on exit every completed part is handled."""
    delivery = PartialDelivery(pool, transport, options, **run)
    sender = asyncio.create_task(delivery.send_parts())
    try:
        yield delivery
    finally:
        delivery.finish()
        await sender


async def parts_after_partial(
    pool: Pool, run_id: str, replies: Sequence[Reply], cut_short: Callable[[], Awaitable[str]]
) -> list[Reply]:
    """The run's replies as the outbox should stage them: unchanged when nothing was
    sent early; else the parts already sent (they hold the first part numbers), the
    rest of the answer they began, then the run's other replies — or, when no reply
    continues them, the apology `cut_short` writes."""
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT payload->>'text' AS text FROM outbound_messages"
            " WHERE run_id = %s AND (payload->>'partial')::boolean ORDER BY part",
            (run_id,),
        )
        sent = [str(row["text"]) for row in await cur.fetchall()]
    if not sent:
        return list(replies)
    early = [text_reply(part) for part in sent]
    for index, reply in enumerate(replies):
        rest = _rest_after(reply["text"], sent) if reply["kind"] == "text" else None
        if rest is not None:
            others = [*replies[:index], *replies[index + 1 :]]
            return [*early, *([text_reply(rest)] if rest else []), *others]
    log.warning("partial.answer_changed", parts_sent=len(sent))
    return [*early, text_reply(await cut_short())]


def _rest_after(answer: str, sent: Sequence[str]) -> str | None:
    """What `answer` says after the parts `sent`; None if it does not begin with them."""
    position = 0
    for part in sent:
        found = answer.find(part, position)
        if found < 0 or answer[position:found].strip():
            return None
        position = found + len(part)
    return answer[position:].strip()


@contextlib.asynccontextmanager
async def partial_delivery_if(
    enabled: bool,
    pool: Pool,
    transport: Transport | None,
    options: PartialOptions,
    **run: Any,
) -> AsyncIterator[PartialDelivery | None]:
    """`partial_delivery(...)` when enabled, else nothing (the turn is not streamed)."""
    if not enabled:
        yield None
        return
    async with partial_delivery(pool, transport, options, **run) as delivery:
        yield delivery


def streamed_for(graph: ConversationGraph, delivery: PartialDelivery | None) -> TurnGraph:
    """The graph a turn runs on: streamed into `delivery` when there is one."""
    return StreamingGraph(graph, delivery.on_event) if delivery is not None else graph
