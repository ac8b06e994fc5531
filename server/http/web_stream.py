"""`POST /v1/conversations/{id}/stream`: one customer turn, answered as Server-Sent
Events — for a web chat or the dashboard's test console.

    event: started      {"run_id"}
    event: agent        {"agent", "intent", "confidence", "method"}   the router's pick
    event: token        {"text", "agent", "id"}                        as the model writes
    event: tool_call_started {"message_id"}                    the model began a tool call
    event: tool_call    {"agent", "name", "args", "id"}
    event: tool_result  {"name", "id", "status"}
    event: handoff      {"source", "target", "reason"}
    event: final        {"replies", "texts", "waiting"}
    event: error        {"code", "message"}      instead of a stream that just breaks

The turn meets the worker's abuse gate (server/abuse/gate.py) under the conversation's
lock, just before the model would be called: blacklisted, blocked, over the rate limit
or over today's token budget, the stream is a single `error` event whose code is the
gate's reason ("blacklisted", "blocked", "rate_limited", "over_budget", "unavailable")
and whose message is what the customer should read; the model is never called. An
error event rather than an HTTP 429 before the stream: the decision is taken where the
worker takes it — after the lock, so a stream refused as busy costs no place in the
rate limit, and never beside a worker's turn of the same customer — and a client
already reads every refusal of a started turn (busy, failed) from that event. The
tokens of an answered turn count against the customer's daily budget.

The turn is a real turn of the conversation on the production path: the message goes
into the inbox and the same runner answers it — claim, gate, spending caps, graph,
outbox — with this stream as the transport (server/runner/transport.py). It runs in this
process, under the queue's lock of the conversation (server/runner/turn_lock.py), so it never
runs beside a worker's turn. A client that disconnects does not cut the turn short: it
finishes, and its answer is in the thread, the outbox and the transcript. A turn that
cannot finish now (the model failed) is finished later by a worker, into the same
history.

Auth: the conversation's own token, which `POST /v1/conversations` gave the web chat's
backend (server/http/web_conversations.py). Only web conversations can be streamed: a
WhatsApp customer's thread answers 404 to every token, admin ones included.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Annotated

import structlog
from fastapi import APIRouter, Depends, HTTPException, Request
from langchain_core.runnables import RunnableConfig
from pydantic import BaseModel, ConfigDict, Field
from sse_starlette.sse import EventSourceResponse

from graph.composition.event_stream import TurnEvent
from graph.composition.turns import TurnOutcome, Waiting
from graph.context import ConversationContext
from graph.state import Reply, reply_text
from server.http.dependencies import services_of
from server.http.web_conversations import require_conversation_token
from server.runner.conversations import find_conversation
from server.runner.inbox import record_inbound
from server.runner.transport import WEB
from server.runner.turn_lock import ConversationBusy, conversation_turn_lock
from server.services import Services
from server.whatsapp.messages import TextBody, TextMessage
from server.whatsapp.models import InboundEvent

log = structlog.get_logger(__name__)

router = APIRouter(tags=["streaming"])

Emit = Callable[[TurnEvent], Awaitable[None]]

# Turns whose client went away keep running to their end; held here so they do.
_running: set[asyncio.Task[TurnOutcome]] = set()


class TurnRefused(RuntimeError):
    """The abuse gate refused the turn before any model call."""

    def __init__(self, reason: str, message: str | None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.message = message


class StreamTurn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str = Field(min_length=1, max_length=4096)


WebConversation = Annotated[str, Depends(require_conversation_token)]


@router.post("/v1/conversations/{conversation_id}/stream")
async def stream_turn(
    request: Request, body: StreamTurn, conversation: WebConversation
) -> EventSourceResponse:
    services = services_of(request)
    context = await _context(services, conversation)
    return EventSourceResponse(_events(services, context, body.text), ping=15)


async def _context(services: Services, conversation_id: str) -> ConversationContext:
    found = await find_conversation(services.pool, conversation_id)
    if found is None:
        raise HTTPException(404, "no such conversation")
    return ConversationContext(
        conversation_id=conversation_id,
        wa_id=found.wa_id,
        customer_name=found.customer_name,
        channel="web",
        agents=await services.agents.current(),
        flags=await services.flags.for_customer(found.wa_id),
    )


async def _events(
    services: Services, context: ConversationContext, text: str
) -> AsyncIterator[dict[str, str]]:
    events: asyncio.Queue[TurnEvent] = asyncio.Queue()
    turn = asyncio.create_task(streamed_turn(services, context, text, events.put))
    _running.add(turn)
    turn.add_done_callback(_running.discard)
    waiting: asyncio.Task[TurnEvent] | None = None
    try:
        while not (turn.done() and events.empty()):
            waiting = asyncio.create_task(events.get())
            await asyncio.wait({waiting, turn}, return_when=asyncio.FIRST_COMPLETED)
            if not waiting.done():
                waiting.cancel()
                continue
            yield _sse(waiting.result())
        yield _sse(_last_event(turn))
    finally:  # the client left: stop reading; the turn itself runs to its end
        if waiting is not None and not waiting.done():
            waiting.cancel()


def _last_event(turn: asyncio.Task[TurnOutcome]) -> TurnEvent:
    error = turn.exception()
    if isinstance(error, ConversationBusy):
        return TurnEvent("error", {"code": "busy", "message": str(error)})
    if isinstance(error, TurnRefused):
        return TurnEvent("error", {"code": error.reason, "message": error.message or ""})
    if error is not None and not isinstance(error, TurnNotFinished):
        log.error("stream.failed", error_type=type(error).__name__, error=str(error)[:200])
    if error is not None:
        message = "the turn failed; nothing was lost, please try again"
        return TurnEvent("error", {"code": "failed", "message": message})
    outcome = turn.result()
    return TurnEvent(
        "final",
        {
            "replies": outcome.replies,
            "texts": [reply_text(reply) for reply in outcome.replies],
            "waiting": outcome.waiting,
        },
    )


def _sse(event: TurnEvent) -> dict[str, str]:
    return {"event": event.kind, "data": json.dumps(event.data, default=str)}


@dataclass
class StreamTransport:
    """The web channel while a client watches: steps and tokens to the stream as the
    graph makes them, replies kept for the final event, a refusal kept for the error."""

    emit: Emit
    replies: list[Reply] = field(default_factory=list)
    refusal: TurnRefused | None = None

    async def send_reply(self, to: str, reply: Reply) -> str:
        self.replies.append(reply)
        return f"web-{uuid.uuid4().hex}"

    async def mark_read(self, message_id: str, *, typing: bool = True) -> None:
        """The client knows its message arrived: it is watching."""

    async def on_event(self, event: TurnEvent) -> None:
        await self.emit(event)

    async def refused(self, reason: str, message: str | None) -> None:
        self.refusal = TurnRefused(reason, message)


async def streamed_turn(
    services: Services, context: ConversationContext, text: str, emit: Emit
) -> TurnOutcome:
    """One turn of the web conversation through the runner, under its lock."""
    settings = services.settings
    transport = StreamTransport(emit)
    async with conversation_turn_lock(
        services.queue,
        services.pool,
        context.conversation_id,
        wait_seconds=settings.stream_wait_seconds,
        heartbeat_seconds=settings.worker_heartbeat_seconds,
    ):
        wamid = f"web-{uuid.uuid4().hex}"
        async with services.pool.connection() as conn:
            await record_inbound(conn, _web_event(context, wamid, text), answered_here=True)
        await services.runner.answer(context.conversation_id, transport=transport)
        status = await _run_status(services, wamid)
    if transport.refusal is not None:
        raise transport.refusal
    if status != "done":
        raise TurnNotFinished("the turn could not finish now; its answer will be in the history")
    return TurnOutcome(replies=transport.replies, waiting=await _waiting(services, context))


class TurnNotFinished(RuntimeError):
    """Postponed (the model or the database failed): a worker finishes it later."""


def _web_event(context: ConversationContext, wamid: str, text: str) -> InboundEvent:
    message = TextMessage(
        id=wamid,
        **{"from": context.wa_id},
        timestamp=str(int(time.time())),
        type="text",
        text=TextBody(body=text),
    )
    return InboundEvent(WEB, WEB, context.wa_id, None, context.customer_name, None, message)


async def _run_status(services: Services, wamid: str) -> str | None:
    async with services.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT r.status FROM inbound_messages m JOIN conversation_runs r ON r.id = m.run_id"
            " WHERE m.wamid = %s",
            (wamid,),
        )
        row = await cur.fetchone()
    return str(row["status"]) if row else None


async def _waiting(services: Services, context: ConversationContext) -> Waiting | None:
    """What the conversation waits for now: a person, a tap on a question, or nothing."""
    async with services.runner.graphs.borrow() as graph:
        config: RunnableConfig = {"configurable": {"thread_id": context.conversation_id}}
        snapshot = await graph.aget_state(config)
    if snapshot.values.get("mode") == "human":
        return "human"
    return "confirmation" if snapshot.interrupts else None
