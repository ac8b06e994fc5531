"""The gate: the runner asks it, after claiming a turn and before any model call, whether
this customer may be answered now (`screen`), whatever channel they write on, so a
customer meets the same limits whichever way they write. What happens to a refused turn
(its notice, its run closed) is the runner's (server/runner/admission.py).

Escalations (warning, block, blacklist) go to Postgres with an audit row: the ladder
survives restarts and every step can be traced to its moment. The limiter decides a
blacklist but does not list anyone: it keeps answering "blacklisted now" until the
Postgres row is committed, so a failed write is retried by the next turn, never undone
by the next cache sync.

Redis down: the blacklist still holds (read from Postgres). Fail closed, turns wait in
the queue; fail open, an in-process limiter with the same policy stands in until Redis
answers again — weaker (one process only), never no limit at all.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field

import structlog
from prometheus_client import Counter

from graph.infra.database import Pool
from server.abuse.blacklist import Blacklist, Limiter, to_datetime
from server.abuse.memory_limiter import MemoryLimiter
from server.abuse.rate_policy import (
    GATE_REASONS,
    LimiterUnavailable,
    Outcome,
    PenaltyState,
    Policy,
    Verdict,
    now_ms,
)
from server.audit import record_audit

log = structlog.get_logger(__name__)

ADMITTED = "admitted"
SYSTEM_ACTOR = "system"

DECISIONS = Counter("wa_agent_gate_decisions_total", "Abuse gate decisions by outcome", ["outcome"])
TOKENS = Counter("wa_agent_customer_tokens_total", "Model tokens counted against daily budgets")


@dataclass(frozen=True)
class GateRequest:
    """`messages` new messages from `wa_id` in a conversation, to be answered now.

    `can_wait`: a queued turn may be retried later when the limiter is down and the
    gate fails closed; a streamed turn has nobody to retry it, so it is refused.
    """

    wa_id: str
    conversation_id: str
    messages: int
    can_wait: bool


class GateDeferred(RuntimeError):
    """Fail closed: the limiter is down, so the job is retried later instead."""


@dataclass(frozen=True)
class Notice:
    """What a refused customer reads: a key of prompts/notices/ and its values, written
    in the customer's language by whoever sends it (server/runner/admission.py)."""

    key: str
    # A wait is a timedelta: the notice writes it in the customer's language.
    values: Mapping[str, object] = field(default_factory=dict)


def notice_for(verdict: Verdict, at_ms: int) -> Notice | None:
    """What the refused customer reads. WhatsApp gets it only with `verdict.notify`;
    a stream shows it on every refusal, since its client asked and waits."""
    outcome = verdict.outcome
    if outcome is Outcome.WARNED:
        return Notice("rate_warning")
    if outcome in (Outcome.BLOCKED_NOW, Outcome.BLOCKED):
        remaining = dt.timedelta(seconds=max(0, verdict.until_ms - at_ms) // 1000)
        return Notice("rate_block", {"duration": remaining})
    if outcome in (Outcome.BLACKLISTED_NOW, Outcome.BLACKLISTED):
        return Notice("blacklisted")
    if outcome is Outcome.OVER_BUDGET:
        return Notice("daily_budget")
    return None


@dataclass(frozen=True)
class Decision:
    reason: str  # ADMITTED or the refusal stored on messages and the run
    message: Notice | None = None  # what the refused customer reads
    notify: bool = False  # send `message` to WhatsApp: once per step, never per message

    @property
    def admitted(self) -> bool:
        return self.reason == ADMITTED

    @property
    def notice(self) -> Notice | None:
        return self.message if self.notify else None


class AbuseGate:
    def __init__(
        self,
        pool: Pool,
        limiter: Limiter,
        blacklist: Blacklist,
        policy: Policy,
        *,
        fail_open: bool = True,  # Redis down: count in this process (else turns wait)
    ) -> None:
        self.pool = pool
        self.limiter = limiter
        self.blacklist = blacklist
        self.policy = policy
        self.fail_open = fail_open
        # Counts in this process while Redis is down (fail open); None while it answers.
        self._stand_in: MemoryLimiter | None = None
        self._stand_in_lock = asyncio.Lock()

    async def screen(self, request: GateRequest) -> Decision:
        """The decision on one turn, any step up the ladder already written to Postgres.
        Nothing of the turn itself is recorded: that is the caller's (see `admit`)."""
        try:
            verdict = await self.limiter.hit(request.wa_id, max(1, request.messages))
        except LimiterUnavailable:
            return await self._decide_without_limiter(request)
        self._end_stand_in()
        return await self._judge(request, verdict, self.limiter)

    async def count_tokens(self, wa_id: str, tokens: int) -> None:
        """Count a finished turn's model tokens against today's budget. Never raises:
        the replies are decided by now and must go out."""
        if tokens <= 0 or not self.policy.token_budget:
            return
        try:
            await self.limiter.add_tokens(wa_id, tokens)
        except LimiterUnavailable:
            if self._stand_in is None:
                log.warning("abuse.tokens_not_counted", tokens=tokens, reason="limiter down")
                return
            await self._stand_in.add_tokens(wa_id, tokens)
        except Exception as exc:
            log.error("abuse.tokens_not_counted", tokens=tokens, error=str(exc)[:200])
            return
        TOKENS.inc(tokens)

    async def _judge(self, request: GateRequest, verdict: Verdict, limiter: Limiter) -> Decision:
        DECISIONS.labels(outcome=verdict.outcome.value).inc()
        if verdict.admitted:
            return Decision(ADMITTED)
        if verdict.escalated:
            await self._escalate(request, verdict, limiter)
        message = notice_for(verdict, now_ms(limiter.clock))
        return Decision(GATE_REASONS[verdict.outcome], message, verdict.notify)

    async def _decide_without_limiter(self, request: GateRequest) -> Decision:
        """Redis is down: the blacklist still holds (from Postgres); rate limits and the
        budget are counted in this process (fail open) or the turn waits (fail closed)."""
        if await self.blacklist.entry(request.wa_id) is not None:
            DECISIONS.labels(outcome="blacklisted").inc()
            return Decision("blacklisted", Notice("blacklisted"))
        if self.fail_open:
            stand_in = await self._stand_in_limiter()
            verdict = await stand_in.hit(request.wa_id, max(1, request.messages))
            return await self._judge(request, verdict, stand_in)
        if request.can_wait:
            DECISIONS.labels(outcome="deferred").inc()
            raise GateDeferred("rate limiter unavailable and WA_AGENT_REDIS_FAIL_OPEN=false")
        DECISIONS.labels(outcome="unavailable").inc()
        return Decision("unavailable", Notice("unavailable"), notify=True)

    async def _stand_in_limiter(self) -> MemoryLimiter:
        """Built once per outage, with the ladders Postgres remembers, and said loudly
        once: a flood during an outage must not spend model tokens without bound."""
        async with self._stand_in_lock:
            if self._stand_in is None:
                stand_in = MemoryLimiter(self.policy, clock=lambda: self.limiter.clock())
                restored = await self.blacklist.restore_penalties(
                    self.policy.reset_seconds, into=stand_in
                )
                log.error(
                    "abuse.limiter_stand_in",
                    limiter=stand_in.description,
                    penalties_restored=restored,
                    behaviour="Redis is unavailable: rate limits and token budgets are "
                    "counted in this process only until it answers again",
                )
                self._stand_in = stand_in
            return self._stand_in

    def _end_stand_in(self) -> None:
        if self._stand_in is not None:
            self._stand_in = None
            log.warning("abuse.limiter_stand_in_ended", limiter=self.limiter.description)

    async def _escalate(self, request: GateRequest, verdict: Verdict, limiter: Limiter) -> None:
        """One step up the ladder, written to Postgres with its audit row."""
        log.warning(
            "abuse.escalated",
            outcome=verdict.outcome.value,
            blocks=verdict.blocks,
            until=to_datetime(verdict.until_ms),
            conversation_id=request.conversation_id,
        )
        if verdict.outcome is Outcome.BLACKLISTED_NOW:
            # Postgres first; `add` then lists the customer in the limiter, which ends
            # the limiter's "due" state. Should the write fail, the next turn is
            # answered BLACKLISTED_NOW again and retries it.
            await self.blacklist.add(
                request.wa_id,
                reason="automatic: kept over the rate limits after every temporary block",
                source="automatic",
                actor=SYSTEM_ACTOR,
                expires_at=to_datetime(verdict.until_ms),
                action="abuse.blacklisted",
            )
            if limiter is not self.limiter:  # the stand-in decided: it is told too
                await limiter.set_blacklisted(request.wa_id, verdict.until_ms)
            return
        state = PenaltyState(verdict.level, verdict.blocks, verdict.until_ms, now_ms(limiter.clock))
        action = "abuse.warned" if verdict.outcome is Outcome.WARNED else "abuse.blocked"
        details = {
            "blocks": verdict.blocks,
            "blocked_until": to_datetime(verdict.until_ms),
            "messages": request.messages,
            "limits": [f"{count}/{seconds}s" for count, seconds in self.policy.windows],
        }
        async with self.pool.connection() as conn, conn.transaction():
            await self.blacklist.save_penalty(conn, request.wa_id, state)
            await record_audit(
                conn,
                actor=SYSTEM_ACTOR,
                action=action,
                target=request.wa_id,
                details=details,
                remote_addr=None,
            )
