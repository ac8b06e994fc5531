"""One job = the conversation's waiting messages answered, run after run: claim them,
run the graph, stage the replies in the outbox, send them.

A run that cannot go on now (the model, a tool, the database or Meta failed) is
postponed, not retried by the queue: the job schedules the conversation's next job for
the run's next attempt and ends. The queue's own retry would collide with the job
already waiting for the same conversation (procrastinate's `queueing_lock`) and leave
this one `doing` for good. Whichever job comes next resumes the open run first, then
claims what arrived meanwhile, so nothing waits for the customer to write again. A job
killed at any point leaves the run to the next one: claimed messages belong to the run,
the graph resumes from its last checkpoint, and the outbox sends each part at most once.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import structlog
from langchain_core.messages import HumanMessage

from graph.composition.event_stream import TurnEvent
from graph.settings import Settings
from graph.state import Reply, text_reply
from server.abuse.gate import AbuseGate, GateRequest
from server.abuse.usage import metered_usage
from server.runner.admission import admit
from server.runner.graph_phase import GraphPhase, Thought, TurnHooks
from server.runner.outbox import (
    DeliveryDeferred,
    StagedPart,
    deliver_parts,
    reply_parts,
    stage_parts,
)
from server.runner.partial_delivery import parts_after_partial
from server.runner.runs import (
    Claim,
    Quiet,
    WaitingOn,
    claim_more,
    claim_turn,
    finish_run,
    postpone_run,
    refuse_taken_messages,
    wake_runs_waiting_on_whatsapp,
)
from server.runner.transport import DEFAULT_QUEUE, Channels, Transport, Watched, answer_queue
from server.telemetry import OUTBOUND, RUN_SECONDS, RUNS, RUNS_POSTPONED

log = structlog.get_logger(__name__)

__all__ = ["Claim", "ConversationRunner", "RunnerOptions", "TurnHooks"]

WORKER_NAME = f"{socket.gethostname()}:{os.getpid()}"

# Runs one job answers before it hands the conversation to a fresh job, so a customer
# who never stops writing cannot hold a worker slot for ever.
RUNS_PER_JOB = 8
# Times one run takes in messages that came while it thought, then answers anyway.
MAX_TAKE_MORE = 3

# Schedules the conversation's next job at a time (None: now), in the queue named; False
# when one waits already.
ScheduleAnswer = Callable[[str, datetime | None, str], Awaitable[bool]]


@dataclass(frozen=True)
class RunnerOptions:
    """How patient the runner is. `max_attempts`: graph attempts before the apology;
    `retry_max_s`: the longest wait between attempts; `give_up_sending`: a part Meta
    keeps refusing is failed once this old; `coalesce_window_s`: quiet time before new
    messages are claimed."""

    max_attempts: int = 5
    retry_max_s: float = 30.0
    give_up_sending: timedelta = timedelta(hours=24)
    coalesce_window_s: float = 1.0

    @classmethod
    def from_settings(cls, settings: Settings) -> RunnerOptions:
        return cls(
            max_attempts=settings.job_max_attempts,
            retry_max_s=settings.retry_max_seconds,
            give_up_sending=timedelta(hours=settings.send_give_up_hours),
            coalesce_window_s=settings.coalesce_window_ms / 1000,
        )


@dataclass(frozen=True)
class Step:
    """Where a run left the job: try again at `retry_at`, or go on when `more` wait."""

    retry_at: datetime | None = None
    more: bool = False


def retry_delay(attempts: int, *, cap_s: float, hint_s: float | None = None) -> float:
    """Seconds before the next attempt: doubling from 1 s, capped; Meta's own
    Retry-After wins when it asks for longer (within reason)."""
    backoff = min(cap_s, 2.0 ** max(0, attempts - 1))
    return max(backoff, min(hint_s or 0.0, cap_s * 4))


class ConversationRunner:
    def __init__(
        self,
        phase: GraphPhase,
        schedule: ScheduleAnswer,
        options: RunnerOptions,
        channels: Channels,
        *,
        gate: AbuseGate | None = None,
        after_delivery: Callable[[str], Awaitable[object]] | None = None,
    ) -> None:
        self.phase = phase
        self.pool = phase.pool
        self.channels = channels
        self.graphs = phase.graphs
        self.outcomes = phase.outcomes
        self.media = phase.media
        self.voice = phase.voice  # notices in the customer's language
        # Puts the conversation's next job in the queue (server/runner/queue.py).
        self.schedule = schedule
        self.options = options
        self.gate = gate
        # Follow-up work of a turn (memory extraction), given the conversation id.
        self.after_delivery = after_delivery
        # Set when Meta refused a send: the next successful send wakes every run that
        # waits on Meta, instead of leaving each to its own backoff.
        self._whatsapp_was_down = False

    async def answer(
        self,
        conversation_id: str,
        job_id: int | None = None,
        *,
        transport: Transport | None = None,
    ) -> None:
        """Answer every waiting message of the conversation, run after run, until none
        is left or a run must wait; then the conversation's next job is scheduled.
        `transport`: this channel's, held by the caller (the web stream); else the one
        of the conversation's business number."""
        queue = DEFAULT_QUEUE
        for _ in range(RUNS_PER_JOB):
            claim = await self._next_claim(conversation_id, job_id)
            if claim is None:
                return
            queue = answer_queue(claim.phone_number_id, claim.wa_id)
            if claim.retry_at:
                step = Step(retry_at=claim.retry_at)
            else:
                step = await self._run(claim, transport)
            if step.retry_at is not None:
                await self.schedule(conversation_id, step.retry_at, queue)
                return
            if not step.more:
                return
        await self.schedule(conversation_id, None, queue)

    async def _next_claim(self, conversation_id: str, job_id: int | None) -> Claim | None:
        """The open run first (it came before anything waiting now), else the waiting
        messages once the customer paused (with a double-texting window, if any)."""
        window = self.options.coalesce_window_s
        deadline = asyncio.get_running_loop().time() + 10 * window
        while True:
            quiet = window if asyncio.get_running_loop().time() < deadline else 0.0
            claimed = await claim_turn(
                self.pool, conversation_id, job_id, WORKER_NAME, quiet_s=quiet
            )
            if not isinstance(claimed, Quiet):
                return claimed
            await asyncio.sleep(min(claimed.wait_s, window))

    async def _run(self, claim: Claim, transport: Transport | None) -> Step:
        """Take the run as far as it goes now, with its run id in every log line."""
        structlog.contextvars.bind_contextvars(run_id=claim.run_id)
        try:
            return await self._answer_run(
                claim, transport or self.channels.for_number(claim.phone_number_id)
            )
        finally:
            structlog.contextvars.unbind_contextvars("run_id")

    async def _answer_run(self, claim: Claim, transport: Transport | None) -> Step:
        """Gate, graph, outbox, send: a step that says when to try again, or whether
        more messages wait once this run is settled."""
        started = asyncio.get_running_loop().time()
        claim = await self.voice.recognise_newcomer(claim)
        thought: Thought | None = None
        failed, tokens = False, 0
        try:
            admitted = self.gate is None or await admit(
                self.gate,
                self.pool,
                claim,
                transport,
                voice=self.voice,
                max_attempts=self.options.max_attempts,
            )
            if not admitted:
                return Step()  # refused before any model call, and closed
            if isinstance(transport, Watched):
                await transport.on_event(TurnEvent("started", {"run_id": claim.run_id}))
            staged: list[StagedPart] | None = None  # None: the outbox says what to send
            if not claim.staged:
                thought, failed, tokens, staged = await self._think_and_stage(claim, transport)
            sent = await deliver_parts(
                self.pool,
                transport,
                claim.run_id,
                give_up_after=self.options.give_up_sending,
                staged=staged if not claim.resumed else None,
                unless_taken_over=True,
            )
            more = await finish_run(self.pool, claim.run_id)
        except DeliveryDeferred as exc:
            self._whatsapp_was_down = True
            return Step(retry_at=await self._postpone(claim, "whatsapp", exc.retry_after))
        except Exception as exc:
            log.warning("run.failed", attempts=claim.attempts, error=repr(exc)[:300])
            return Step(retry_at=await self._postpone(claim, "graph", None))
        RUNS.labels(outcome="resumed" if claim.resumed else "done").inc()
        OUTBOUND.labels(result="sent").inc(sent)
        RUN_SECONDS.observe(asyncio.get_running_loop().time() - started)
        if sent and self._whatsapp_was_down:
            await self._wake_runs_waiting_on_whatsapp()
        await self._after_delivery(claim)
        await self._after_turn(thought.claim if thought else claim, thought, failed, tokens)
        return Step(more=more)

    async def _think_and_stage(
        self, claim: Claim, transport: Transport | None
    ) -> tuple[Thought, bool, int, list[StagedPart] | None]:
        """The graph's replies (or, out of attempts, the apology) into the outbox.
        Returns what the episode needs (the thought, whether it failed, its tokens) and
        the parts to send."""
        typing = None
        if not claim.resumed and transport is not None:
            typing = asyncio.create_task(self._show_typing(claim, transport))
        failed = False
        try:
            with metered_usage() as usage:
                try:
                    thought = await self.phase.think(claim, transport)
                except Exception:
                    if claim.attempts < self.options.max_attempts:
                        raise  # postponed: the run resumes from its checkpoint
                    log.exception("run.gave_up", attempts=claim.attempts)
                    apology = await self.voice.say(claim, "apology")
                    thought, failed = Thought(claim, [text_reply(apology)]), True
                thought = await self._take_more(thought, transport)
            if self.gate is not None:
                await self.gate.count_tokens(claim.wa_id, usage.total_tokens)
            if typing is not None:
                await typing
        finally:
            if typing is not None and not typing.done():
                typing.cancel()
        replies = thought.replies
        if thought.sent_early:
            replies = await parts_after_partial(
                self.pool, claim.run_id, replies, lambda: self.voice.say(claim, "cut_short")
            )
        staged = await stage_parts(
            self.pool,
            conversation_id=claim.conversation_id,
            run_id=claim.run_id,
            wa_id=claim.wa_id,
            parts=reply_parts(replies),
        )
        # After early parts, the outbox (not this list) knows what is still to send.
        return thought, failed, usage.total_tokens, None if thought.sent_early else staged

    async def _take_more(self, thought: Thought, transport: Transport | None) -> Thought:
        """Double texting: messages that came while the graph thought, before any part
        of the reply went out, are answered together with the first — the run goes again
        from where it started (nothing it did is lost: no tool step ran, nothing was
        sent). Bounded, so a customer who never stops typing still gets an answer."""
        for _ in range(MAX_TAKE_MORE):
            outcome = thought.outcome
            if outcome is None or outcome.undo_to is None or thought.sent_early:
                return thought
            messages = await claim_more(self.pool, thought.claim, outcome.undo_to)
            if not messages:
                return thought
            refusal = await self._screen_more(thought.claim, messages)
            if refusal is not None:
                return replace(thought, replies=[*thought.replies, *refusal])
            claim = replace(thought.claim, messages=messages, rerun_from=outcome.undo_to)
            log.info("run.took_more", messages=len(messages))
            thought = await self.phase.think(claim, transport)
        return thought

    async def _screen_more(self, claim: Claim, messages: list[HumanMessage]) -> list[Reply] | None:
        """Messages taken into a run count against the customer's rate limit like a run
        of their own: a flood must not ride into an admitted run. Refused, they are
        closed with the reason and never reach the graph; the run answers what it had,
        plus the gate's notice if this step of the ladder has one. None: admitted."""
        if self.gate is None:
            return None
        known = {message.id for message in claim.messages}
        more = [str(message.id) for message in messages if message.id not in known]
        screened = GateRequest(claim.wa_id, claim.conversation_id, len(more), can_wait=False)
        decision = await self.gate.screen(screened)
        if decision.admitted:
            return None
        await refuse_taken_messages(self.pool, claim.run_id, more, decision.reason)
        log.info("run.refused_more", reason=decision.reason, messages=len(more))
        if decision.notice is None:
            return []
        notice = decision.notice
        return [text_reply(await self.voice.say(claim, notice.key, **notice.values))]

    async def _postpone(
        self, claim: Claim, waiting_on: WaitingOn, hint_s: float | None
    ) -> datetime:
        delay = retry_delay(claim.attempts, cap_s=self.options.retry_max_s, hint_s=hint_s)
        await postpone_run(self.pool, claim.run_id, after_s=delay, waiting_on=waiting_on)
        RUNS_POSTPONED.labels(waiting_on=waiting_on).inc()
        log.info("run.postponed", waiting_on=waiting_on, seconds=round(delay, 1))
        return datetime.now(UTC) + timedelta(seconds=delay)

    async def _wake_runs_waiting_on_whatsapp(self) -> None:
        self._whatsapp_was_down = False
        try:
            woken = await wake_runs_waiting_on_whatsapp(self.pool)
            for conversation_id in woken:
                await self.schedule(conversation_id, None, DEFAULT_QUEUE)
        except Exception as exc:  # each run still has its own scheduled attempt
            log.warning("run.wake_failed", error=str(exc)[:200])
            return
        if woken:
            log.info("run.woken", reason="WhatsApp accepts sends again", runs=len(woken))

    async def _after_delivery(self, claim: Claim) -> None:
        """Queued only once the replies went out, never before; a failure to queue it
        costs a memory, never the turn that was answered."""
        if self.after_delivery is None:
            return
        try:
            await self.after_delivery(claim.conversation_id)
        except Exception as exc:
            log.warning("run.after_delivery_failed", error=str(exc)[:200])

    async def _after_turn(
        self, claim: Claim, thought: Thought | None, failed: bool, tokens: int
    ) -> None:
        """Episode bookkeeping; a failure there costs a figure, never the answered turn.
        A run resumed only to send its replies reads the thread instead of its thought."""
        if self.outcomes is None:
            return
        outcome = thought.outcome if thought else None
        try:
            await self.outcomes.after_turn(claim, failed=failed, tokens=tokens, outcome=outcome)
        except Exception as exc:
            log.warning("run.after_turn_failed", error=str(exc)[:200])

    async def _show_typing(self, claim: Claim, transport: Transport) -> None:
        """Blue ticks and "typing…" on the newest message; cosmetic, so never fatal."""
        if not claim.messages:
            return
        try:
            await transport.mark_read(str(claim.messages[-1].id), typing=True)
        except Exception as exc:
            log.warning("whatsapp.mark_read_failed", error=str(exc)[:200])
