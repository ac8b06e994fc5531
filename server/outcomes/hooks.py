"""Business outcomes around each turn: the runner's hooks and the periodic chores.

`before_turn` takes STOP/START keywords, then CSAT taps and comments, out of a claim
(answered without a graph run); `after_turn` reads what the graph decided (agents,
handoffs, whether it waits) from the thread's checkpoint and adds the turn to its
episode, which may close on a goodbye and then ask for a rating. The periodic
`close_idle_episodes` task closes episodes nothing moved in for the idle time, and asks
for ratings the same way; `purge_answer_cache` drops answer-cache entries past their TTL.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import procrastinate
import structlog

from graph.composition.answer_cache import purge_expired_answers
from graph.composition.feature_flags import FeatureFlags
from graph.composition.graph_pool import GraphPool
from graph.composition.turns import TurnOutcome, thread_config
from graph.infra.database import Pool
from graph.settings import Settings
from graph.state import Reply, reply_text
from nodes.goodbye import is_goodbye
from server.outcomes.consent import Consent
from server.outcomes.csat import Csat
from server.outcomes.episode_rules import agent_confirms_goodbye
from server.outcomes.episodes import ClosedEpisode, Episodes, TurnRecord
from server.outcomes.escalation_notices import EscalationNotices
from server.runner.conversation_runner import Claim
from server.runner.customer_language import CustomerVoice
from server.runner.transport import Channels

log = structlog.get_logger(__name__)

CLOSE_IDLE_TASK = "close_idle_episodes"
PURGE_ANSWERS_TASK = "purge_answer_cache"
_NOT_AGENTS = frozenset({"human", "bot", ""})  # a person, or the escalation step


@dataclass(frozen=True)
class OutcomeHooks:
    episodes: Episodes
    csat: Csat
    graphs: GraphPool
    consent: Consent
    notices: EscalationNotices | None = None

    async def before_turn(self, claim: Claim) -> tuple[Claim, list[Reply]]:
        """Keywords first: a STOP right after a rating is an opt-out, not its comment."""
        claim, confirmations = await self.consent.take_keywords(claim)
        claim, thanks = await self.csat.take_feedback(claim)
        return claim, [*confirmations, *thanks]

    async def after_turn(
        self, claim: Claim, *, failed: bool, tokens: int, outcome: TurnOutcome | None
    ) -> None:
        if not claim.messages:
            return  # only feedback: no turn of any episode
        interrupt: str | None
        if outcome is not None and outcome.state:  # the run's own view: no second read
            values, interrupt = dict(outcome.state), outcome.waiting
        else:  # the turn failed or was refused before the graph: the thread as it is
            values, interrupt = await self._thread(claim)
        ran = values.get("run_id") == claim.run_id
        replies: list[Reply] = list(values.get("replies", [])) if ran else []
        customer_text = " ".join(str(m.content) for m in claim.messages)
        turn = TurnRecord(
            conversation_id=claim.conversation_id,
            wa_id=claim.wa_id,
            run_id=claim.run_id,
            failed=failed,
            tokens=tokens,
            agents=_agents_of(values) if ran else [],
            handoffs=len(values.get("handoffs", [])) if ran else 0,
            waiting="human" if values.get("mode") == "human" else interrupt,
            replied=bool(replies) or failed,
            goodbye=is_goodbye(customer_text)
            and agent_confirms_goodbye([reply_text(r) for r in replies]),
        )
        if turn.waiting == "human" and claim.status != "escalated" and self.notices:
            await self.notices.escalated(claim.conversation_id, claim.wa_id)
        closed = await self.episodes.record_turn(turn)
        if closed is not None:
            await self.csat.request(closed)

    async def close_idle(self, now: datetime | None = None) -> list[ClosedEpisode]:
        """The sweep: close idle episodes, then ask their customers for a rating."""
        closed = await self.episodes.close_idle(now)
        for episode in closed:
            try:
                await self.csat.request(episode)
            except Exception as exc:  # one customer's failed question never stops the sweep
                log.warning("csat.request_failed", episode_id=episode.id, error=str(exc)[:200])
        return closed

    async def _thread(self, claim: Claim) -> tuple[dict[str, Any], str | None]:
        """The thread's values after the turn, and what it waits for (a tap, a person)."""
        config = thread_config(claim.conversation_id, run_id=claim.run_id, wa_id=claim.wa_id)
        async with self.graphs.borrow() as graph:
            snapshot = await graph.aget_state(config)
        waiting = next(
            (
                str(i.value.get("type") or "human")
                for i in snapshot.interrupts
                if isinstance(i.value, dict)
            ),
            None,
        )
        return dict(snapshot.values), waiting


def _agents_of(values: dict[str, Any]) -> list[str]:
    """Specialists of this turn in the order they acted: handoff sources, then the last."""
    names = [h.get("source", "") for h in values.get("handoffs", [])]
    names += [h.get("target", "") for h in values.get("handoffs", [])]
    names.append(values.get("active_agent") or "")
    return [n for n in dict.fromkeys(names) if n not in _NOT_AGENTS]


def build_outcome_hooks(
    pool: Pool,
    graphs: GraphPool,
    channels: Channels,
    flags: FeatureFlags,
    settings: Settings,
    queue: procrastinate.App,
    voice: CustomerVoice,
) -> OutcomeHooks:
    csat = Csat(
        pool,
        channels,
        flags,
        voice=voice,
        min_interval=timedelta(hours=settings.csat_min_interval_hours),
        comment_window=timedelta(minutes=settings.csat_comment_minutes),
    )
    episodes = Episodes(pool, idle=timedelta(minutes=settings.episode_idle_minutes))
    escalations = EscalationNotices(queue, settings.escalation_webhook_url)
    consent = Consent(pool, voice)
    return OutcomeHooks(episodes, csat, graphs, consent, escalations)


def register_outcome_tasks(
    queue: procrastinate.App, hooks: OutcomeHooks, *, sweep_cron: str, purge_cron: str
) -> None:
    """The sweep, deferred once per tick by the workers' periodic deferrer."""

    @queue.periodic(cron=sweep_cron, periodic_id="episodes")
    @queue.task(name=CLOSE_IDLE_TASK, queueing_lock=CLOSE_IDLE_TASK)
    async def close_idle_episodes(timestamp: int) -> None:
        await hooks.close_idle()

    @queue.periodic(cron=purge_cron, periodic_id="answer_cache")
    @queue.task(name=PURGE_ANSWERS_TASK, queueing_lock=PURGE_ANSWERS_TASK)
    async def purge_answer_cache(timestamp: int) -> None:
        purged = await purge_expired_answers(hooks.episodes.pool)
        if purged:
            log.info("answer_cache.purged", entries=purged)
