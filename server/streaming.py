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

The turn is a real turn of the conversation (same thread, same graph, transcript rows)
but nothing is sent to WhatsApp: the stream is the channel. It holds the queue's lock of
the conversation (server/turn_lock.py) so it never runs beside a worker's turn. A client
that disconnects does not cut the turn short: it finishes, and its answer is in the
thread and the transcript.

Auth: the conversation's own token, which `POST /v1/conversations` gave the web chat's
backend (server/web_conversations.py). Only web conversations can be streamed: a
WhatsApp customer's thread answers 404 to every token, admin ones included.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated, Any

import structlog
from fastapi import APIRouter, Depends, HTTPException, Request
from langchain_core.runnables import RunnableConfig
from pydantic import BaseModel, ConfigDict, Field
from sse_starlette.sse import EventSourceResponse

from graph.context import ConversationContext
from graph.persistence import Pool
from graph.state import customer_message, reply_text
from graph.streaming import StreamingGraph, TurnEvent
from graph.trace_metadata import app_version, traced_turn, with_trace_metadata
from graph.turns import TurnOutcome, run_turn
from server.abuse.gate import Decision, GateRequest
from server.abuse.usage import metered_usage
from server.services import Services
from server.turn_lock import ConversationBusy, conversation_turn_lock
from server.web_conversations import require_conversation_token

log = structlog.get_logger(__name__)

router = APIRouter(tags=["streaming"])

Emit = Callable[[TurnEvent], Awaitable[None]]

# Turns whose client went away keep running to their end; held here so they do.
_running: set[asyncio.Task[TurnOutcome]] = set()


class TurnRefused(RuntimeError):
    """The abuse gate refused the turn before any model call."""

    def __init__(self, decision: Decision) -> None:
        super().__init__(decision.reason)
        self.decision = decision


class StreamTurn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str = Field(min_length=1, max_length=4096)


def _services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


WebConversation = Annotated[str, Depends(require_conversation_token)]


@router.post("/v1/conversations/{conversation_id}/stream")
async def stream_turn(
    request: Request, body: StreamTurn, conversation: WebConversation
) -> EventSourceResponse:
    services = _services(request)
    context = await _context(services, conversation)
    return EventSourceResponse(_events(services, context, body.text), ping=15)


async def _context(services: Services, conversation_id: str) -> ConversationContext:
    async with services.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT c.wa_id, k.profile_name FROM agent_conversations c"
            " JOIN contacts k USING (wa_id) WHERE c.id = %s",
            (conversation_id,),
        )
        row = await cur.fetchone()
    if row is None:
        raise HTTPException(404, "no such conversation")
    return ConversationContext(
        conversation_id=conversation_id,
        wa_id=row["wa_id"],
        customer_name=row["profile_name"],
        channel="web",
        agents=await services.agents.current(),
        flags=await services.flags.for_customer(row["wa_id"]),
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
        refusal = error.decision
        return TurnEvent("error", {"code": refusal.reason, "message": refusal.message or ""})
    if error is not None:
        log.error("stream.failed", error_type=type(error).__name__, error=str(error)[:200])
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


async def streamed_turn(
    services: Services, context: ConversationContext, text: str, emit: Emit
) -> TurnOutcome:
    """One turn under the conversation's lock, its steps and tokens sent to `emit`."""
    settings = services.settings
    run_id = str(uuid.uuid4())
    config = _web_config(context, run_id, app_version(settings.app_version))
    message = customer_message(text, wamid=f"web-{uuid.uuid4().hex}", kind="text")
    async with conversation_turn_lock(
        services.queue,
        services.pool,
        context.conversation_id,
        wait_seconds=settings.stream_wait_seconds,
        heartbeat_seconds=settings.worker_heartbeat_seconds,
    ):
        gate = services.abuse.gate
        request = GateRequest(context.wa_id, context.conversation_id, 1, can_wait=False)
        decision = await gate.screen(request)
        if not decision.admitted:
            raise TurnRefused(decision)
        await emit(TurnEvent("started", {"run_id": run_id}))
        with metered_usage() as usage:
            try:
                async with (
                    traced_turn(config, {"messages": [text]}, name="stream_turn") as trace,
                    services.runner.graphs.borrow() as graph,
                ):
                    streaming = StreamingGraph(graph, emit)
                    outcome = await run_turn(streaming, config, context, [message], run_id)
                    trace.record(outcome.state, outcome.replies)
            finally:  # tokens spent by a turn that failed half-way are spent all the same
                await gate.count_tokens(context.wa_id, usage.total_tokens)
        await _transcript(services.pool, context.conversation_id, run_id, text, outcome)
    return outcome


def _web_config(context: ConversationContext, run_id: str, version: str) -> RunnableConfig:
    config: RunnableConfig = {
        "configurable": {"thread_id": context.conversation_id, "wa_id": context.wa_id},
        "metadata": {"run_id": run_id},
    }
    return with_trace_metadata(config, version=version, channel="web")


async def _transcript(
    pool: Pool, conversation_id: str, run_id: str, text: str, outcome: TurnOutcome
) -> None:
    rows: list[tuple[Any, ...]] = [(conversation_id, run_id, "customer", None, text)]
    if outcome.replies:
        answer = "\n\n".join(reply_text(reply) for reply in outcome.replies)
        rows.append((conversation_id, run_id, "agent", "web", answer))
    async with pool.connection() as conn, conn.cursor() as cur:
        await cur.executemany(
            "INSERT INTO agent_messages (conversation_id, run_id, role, agent, content)"
            " VALUES (%s, %s, %s, %s, %s)",
            rows,
        )
