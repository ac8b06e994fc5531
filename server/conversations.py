"""One job = one turn of one conversation: wait for the customer to finish typing, claim
the waiting messages, run the graph, stage the replies in the outbox, send them.

Each step is written so that a job killed at any point and retried does the right
thing: claimed messages belong to a run, the run resumes from its last checkpoint,
and the outbox sends each part at most once.
"""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any, Protocol

import structlog
from langchain_core.messages import HumanMessage

from graph.agents import AgentDirectory
from graph.context import ConversationContext
from graph.flags import FeatureFlags
from graph.persistence import Pool
from graph.runtime import GraphPool
from graph.settings import Settings
from graph.state import Reply, customer_message, text_reply
from graph.trace_metadata import app_version, traced_turn, with_trace_metadata
from graph.turns import TurnOutcome, run_turn, thread_config
from server.abuse.gate import AbuseGate
from server.abuse.usage import metered_usage
from server.accounting import Accounting
from server.media import MediaUnderstanding
from server.metrics import OUTBOUND, RUN_SECONDS, RUNS
from server.outbox import deliver_parts, reply_parts, stage_parts
from server.partial_delivery import FLAG as PARTIAL_DELIVERY
from server.partial_delivery import partial_delivery_if, parts_after_partial, streamed_for
from server.whatsapp.client import WhatsAppClient

log = structlog.get_logger(__name__)

WORKER_NAME = f"{socket.gethostname()}:{os.getpid()}"

APOLOGY = (
    "Sorry, something went wrong on our side and I could not answer. "
    "Please write again in a few minutes."
)


@dataclass(frozen=True)
class Claim:
    """The messages a run answers. `resumed`: a previous attempt of it died."""

    run_id: str
    conversation_id: str
    wa_id: str
    customer_name: str | None
    messages: list[HumanMessage]
    attempts: int
    resumed: bool


class TurnHooks(Protocol):
    """Business outcomes around a turn (server/outcomes.py): feedback taps answered
    without the graph, and the episode bookkeeping once the replies went out."""

    async def before_turn(self, claim: Claim) -> tuple[Claim, list[Reply]]: ...

    async def after_turn(
        self, claim: Claim, *, failed: bool, tokens: int, outcome: TurnOutcome | None
    ) -> None: ...


class ConversationRunner:
    def __init__(
        self,
        pool: Pool,
        graphs: GraphPool,
        whatsapp: WhatsAppClient | None,
        settings: Settings,
        agents: AgentDirectory | None = None,
        gate: AbuseGate | None = None,
        flags: FeatureFlags | None = None,
        after_delivery: Callable[[str], Awaitable[object]] | None = None,
        outcomes: TurnHooks | None = None,
        accounting: Accounting | None = None,
        media: MediaUnderstanding | None = None,
    ) -> None:
        self.pool = pool
        self.graphs = graphs
        self.whatsapp = whatsapp
        self.settings = settings
        self.agents = agents
        self.gate = gate
        self.flags = flags
        # Follow-up work of a turn (memory extraction), given the conversation id.
        self.after_delivery = after_delivery
        self.outcomes = outcomes
        # Meters every model call of a run and applies the spending caps.
        self.accounting = accounting
        # Documents, photos and voice notes become text before the graph (server/media).
        self.media = media

    async def answer(self, conversation_id: str, job_id: int | None = None) -> None:
        await self._wait_until_quiet(conversation_id)
        claim = await self._claim(conversation_id, job_id)
        if claim is None:
            return  # an earlier job already answered these messages
        if self.gate is not None and not await self.gate.admit(claim):
            return  # refused before any model call (flood, block, blacklist, budget): closed
        structlog.contextvars.bind_contextvars(run_id=claim.run_id)
        started = asyncio.get_running_loop().time()
        # The read receipt travels while the graph thinks; it lands before any reply.
        typing = asyncio.create_task(self._show_typing(claim)) if not claim.resumed else None
        try:
            answered, failed, outcome = claim, False, None
            try:
                with metered_usage() as usage:
                    answered, replies, outcome = await self._answer_claim(claim)
            except Exception:
                if claim.attempts < self.settings.job_max_attempts:
                    raise  # the queue retries; the run resumes from its checkpoint
                log.exception("run.gave_up", attempts=claim.attempts)
                replies, failed = [text_reply(APOLOGY)], True
            if self.gate is not None:
                await self.gate.count_tokens(claim.wa_id, usage.total_tokens)
            if typing is not None:
                await typing
            replies = await parts_after_partial(self.pool, claim.run_id, replies)
            await stage_parts(
                self.pool,
                conversation_id=claim.conversation_id,
                run_id=claim.run_id,
                wa_id=claim.wa_id,
                parts=reply_parts(replies),
            )
            sent = await deliver_parts(self.pool, self.whatsapp, claim.run_id)
            await self._finish(claim)
            RUNS.labels(outcome="resumed" if claim.resumed else "done").inc()
            OUTBOUND.labels(result="sent").inc(sent)
            RUN_SECONDS.observe(asyncio.get_running_loop().time() - started)
            await self._after_delivery(claim)
            await self._after_turn(answered, failed, usage.total_tokens, outcome)
        finally:
            if typing is not None and not typing.done():
                typing.cancel()
            structlog.contextvars.unbind_contextvars("run_id")

    async def _after_delivery(self, claim: Claim) -> None:
        """Queued only once the replies went out, never before; a failure to queue it
        costs a memory, never the turn that was answered."""
        if self.after_delivery is None:
            return
        try:
            await self.after_delivery(claim.conversation_id)
        except Exception as exc:
            log.warning("run.after_delivery_failed", error=str(exc)[:200])

    async def _answer_claim(self, claim: Claim) -> tuple[Claim, list[Reply], TurnOutcome | None]:
        """Feedback taps are answered without a graph run; the rest goes to the graph."""
        direct: list[Reply] = []
        if self.outcomes is not None:
            claim, direct = await self.outcomes.before_turn(claim)
        if not claim.messages:
            return claim, direct, None
        if self.media is not None:
            understood = await self.media.understand(claim.run_id, claim.wa_id, claim.messages)
            claim = replace(claim, messages=understood)
        outcome = await self._run_graph(claim)
        return claim, [*direct, *outcome.replies], outcome

    async def _after_turn(
        self, claim: Claim, failed: bool, tokens: int, outcome: TurnOutcome | None
    ) -> None:
        """Episode bookkeeping; a failure there costs a figure, never the answered turn."""
        if self.outcomes is None:
            return
        try:
            await self.outcomes.after_turn(claim, failed=failed, tokens=tokens, outcome=outcome)
        except Exception as exc:
            log.warning("run.after_turn_failed", error=str(exc)[:200])

    async def _wait_until_quiet(self, conversation_id: str) -> None:
        """Let a customer who sends three texts in a row finish: answer once, after the
        newest waiting message is `coalesce_window_ms` old (bounded, so a flood still
        gets answered)."""
        window = self.settings.coalesce_window_ms / 1000
        deadline = asyncio.get_running_loop().time() + 10 * window
        while window > 0 and asyncio.get_running_loop().time() < deadline:
            async with self.pool.connection() as conn:
                cur = await conn.execute(
                    "SELECT EXTRACT(EPOCH FROM max(received_at) - clock_timestamp())::float8"
                    " + %s AS wait FROM inbound_messages"
                    " WHERE conversation_id = %s AND run_id IS NULL",
                    (window, conversation_id),
                )
                row = await cur.fetchone()
            wait = row["wait"] if row else None
            if wait is None or wait <= 0:
                return
            await asyncio.sleep(min(wait, window))

    async def _claim(self, conversation_id: str, job_id: int | None) -> Claim | None:
        """Resume this conversation's unfinished run, or claim the waiting messages.

        The conversation row lock is the one the webhook holds while it inserts, so no
        message can be committed unseen between this read and a job's end.
        """
        async with self.pool.connection() as conn, conn.transaction():
            cur = await conn.execute(
                "SELECT c.wa_id, k.profile_name FROM agent_conversations c"
                " JOIN contacts k USING (wa_id) WHERE c.id = %s FOR UPDATE OF c",
                (conversation_id,),
            )
            conversation = await cur.fetchone()
            if conversation is None:
                return None  # erased since the job was queued
            cur = await conn.execute(
                "UPDATE conversation_runs SET attempts = attempts + 1, job_id = %s, worker = %s"
                " WHERE conversation_id = %s AND status = 'running' RETURNING id, attempts",
                (job_id, WORKER_NAME, conversation_id),
            )
            open_run = await cur.fetchone()
            if open_run is not None:
                run_id, attempts = str(open_run["id"]), open_run["attempts"]
                cur = await conn.execute(_CLAIMED_ROWS, (run_id,))
            else:
                run_id, attempts = str(uuid.uuid4()), 1
                cur = await conn.execute(_CLAIM_WAITING, (run_id, conversation_id))
            rows = sorted(await cur.fetchall(), key=lambda r: (r["sent_at"], r["id"]))
            if open_run is None:
                if not rows:
                    return None
                await self._open_run(conn, run_id, conversation_id, job_id, rows)
        return Claim(
            run_id=run_id,
            conversation_id=conversation_id,
            wa_id=conversation["wa_id"],
            customer_name=conversation["profile_name"],
            messages=[_as_customer_message(row) for row in rows],
            attempts=attempts,
            resumed=open_run is not None,
        )

    async def _open_run(
        self,
        conn: Any,
        run_id: str,
        conversation_id: str,
        job_id: int | None,
        rows: list[dict[str, Any]],
    ) -> None:
        await conn.execute(
            "INSERT INTO conversation_runs (id, conversation_id, job_id, worker)"
            " VALUES (%s, %s, %s, %s)",
            (run_id, conversation_id, job_id, WORKER_NAME),
        )
        async with conn.cursor() as cur:
            await cur.executemany(
                "INSERT INTO agent_messages (conversation_id, run_id, role, content)"
                " VALUES (%s, %s, 'customer', %s)",
                [(conversation_id, run_id, row["text"] or f"[{row['kind']}]") for row in rows],
            )

    async def _show_typing(self, claim: Claim) -> None:
        """Blue ticks and "typing…" on the newest message; cosmetic, so never fatal."""
        if self.whatsapp is None or not claim.messages:
            return
        try:
            await self.whatsapp.mark_read(str(claim.messages[-1].id), typing=True)
        except Exception as exc:
            log.warning("whatsapp.mark_read_failed", error=str(exc)[:200])

    async def _run_graph(self, claim: Claim) -> TurnOutcome:
        config = with_trace_metadata(
            thread_config(claim.conversation_id, run_id=claim.run_id, wa_id=claim.wa_id),
            version=app_version(self.settings.app_version),
        )
        context = ConversationContext(
            conversation_id=claim.conversation_id,
            wa_id=claim.wa_id,
            customer_name=claim.customer_name,
            agents=await self.agents.current() if self.agents else {},
            flags=await self.flags.for_customer(claim.wa_id) if self.flags else {},
        )
        if self.accounting is not None:
            plan = await self.accounting.plan_turn(config, context)
            if plan.refusal is not None:
                return TurnOutcome(replies=[text_reply(plan.refusal)])
            config, context = plan.config, plan.context
        inputs = {"messages": [m.content for m in claim.messages]}
        async with (
            traced_turn(config, inputs) as trace,
            partial_delivery_if(
                context.flag(PARTIAL_DELIVERY) and not claim.resumed,
                self.pool,
                self.whatsapp,
                self.settings,
                conversation_id=claim.conversation_id,
                run_id=claim.run_id,
                wa_id=claim.wa_id,
                typing_on=str(claim.messages[-1].id),
            ) as partial,
            self.graphs.borrow() as graph,
        ):
            turn_graph = streamed_for(graph, partial)
            outcome = await run_turn(turn_graph, config, context, claim.messages, claim.run_id)
            trace.record(outcome.state, outcome.replies)
        await self._record_waiting(claim.conversation_id, outcome)
        return outcome

    async def _record_waiting(self, conversation_id: str, outcome: TurnOutcome) -> None:
        """The operator's inbox lists conversations waiting for a person."""
        status = "escalated" if outcome.waiting == "human" else "active"
        async with self.pool.connection() as conn:
            await conn.execute(
                "UPDATE agent_conversations SET status = %s, updated_at = now()"
                " WHERE id = %s AND status <> %s",
                (status, conversation_id, status),
            )

    async def _finish(self, claim: Claim) -> None:
        async with self.pool.connection() as conn, conn.transaction():
            await conn.execute(
                "UPDATE conversation_runs SET status = 'done', finished_at = now() WHERE id = %s",
                (claim.run_id,),
            )
            await conn.execute(
                "UPDATE inbound_messages SET processed_at = now() WHERE run_id = %s",
                (claim.run_id,),
            )


_MESSAGE_COLUMNS = "id, wamid, kind, text, supported, reply_id, sent_at"
_CLAIMED_ROWS = f"SELECT {_MESSAGE_COLUMNS} FROM inbound_messages WHERE run_id = %s"
_CLAIM_WAITING = (
    "UPDATE inbound_messages SET run_id = %s"
    " WHERE conversation_id = %s AND run_id IS NULL AND processed_at IS NULL"
    f" RETURNING {_MESSAGE_COLUMNS}"
)


def _as_customer_message(row: dict[str, Any]) -> HumanMessage:
    return customer_message(
        row["text"],
        wamid=row["wamid"],
        kind=row["kind"],
        supported=row["supported"],
        reply_id=row["reply_id"],
    )
