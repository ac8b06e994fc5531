"""Conversation episodes: one customer need, from its first message to its close.

Each answered turn is added to the conversation's open episode (or opens one): agents
involved, handoffs, escalation, whether the last turn failed or waits for a tap, tokens
(counted by the runner) and cost (read from `agent_metrics`, when the metering writes
it). An episode closes on a goodbye the agent confirmed (see server/outcomes/episode_rules.py),
or when nothing moved in the conversation for `WA_AGENT_EPISODE_IDLE_MIN` — the periodic
sweep, which takes the time as an argument so a test (or a backfill) can set the clock.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog

from graph.infra.database import Pool
from server.outcomes.episode_rules import CloseReason, EpisodeFacts, Outcome, decide_outcome

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class TurnRecord:
    """One answered turn, as the runner and the graph's state saw it."""

    conversation_id: str
    wa_id: str
    run_id: str
    failed: bool
    tokens: int
    agents: Sequence[str]
    handoffs: int
    waiting: str | None
    replied: bool
    goodbye: bool


@dataclass(frozen=True)
class ClosedEpisode:
    id: str
    conversation_id: str
    wa_id: str
    outcome: Outcome
    agent: str | None  # the specialist who answered last
    last_customer_at: datetime
    escalation_open: bool


# The turn added to its conversation's open episode, in one statement: the turn's own
# facts that live in other tables (when its messages arrived, how many answers came from
# the cache, whether it escalated) read in the same statement that upserts the episode.
_RECORD_TURN = """
WITH facts AS (
    SELECT
        (SELECT min(received_at) FROM inbound_messages WHERE run_id = %(run_id)s) AS first_in,
        (SELECT max(received_at) FROM inbound_messages WHERE run_id = %(run_id)s) AS last_in,
        (SELECT count(*) FROM answer_cache_events WHERE run_id = %(run_id)s AND hit)
            AS cached,
        COALESCE((SELECT status = 'escalated' FROM agent_conversations
                  WHERE id = %(conversation_id)s), false) AS escalated,
        clock_timestamp() AS now
)
INSERT INTO conversation_episodes AS e (
    conversation_id, wa_id, started_at, first_response_at, last_response_at,
    last_customer_at, agents, handoffs, escalated, turns, failed_turns, last_turn_failed,
    waiting, cached_answers, tokens)
SELECT %(conversation_id)s, %(wa_id)s, COALESCE(f.first_in, f.now),
    CASE WHEN %(replied)s THEN f.now END, CASE WHEN %(replied)s THEN f.now END,
    COALESCE(f.last_in, f.now), %(agents)s, %(handoffs)s, f.escalated, 1, %(failed_n)s,
    %(failed)s, %(waiting)s, f.cached, %(tokens)s
FROM facts f
ON CONFLICT (conversation_id) WHERE closed_at IS NULL DO UPDATE SET
    first_response_at = COALESCE(e.first_response_at, EXCLUDED.first_response_at),
    last_response_at = COALESCE(EXCLUDED.last_response_at, e.last_response_at),
    last_customer_at = GREATEST(e.last_customer_at, EXCLUDED.last_customer_at),
    agents = e.agents || ARRAY(
        SELECT a FROM unnest(EXCLUDED.agents) WITH ORDINALITY AS t(a, n)
        WHERE NOT a = ANY(e.agents) ORDER BY n),
    handoffs = e.handoffs + EXCLUDED.handoffs,
    escalated = e.escalated OR EXCLUDED.escalated,
    turns = e.turns + 1,
    failed_turns = e.failed_turns + EXCLUDED.failed_turns,
    last_turn_failed = EXCLUDED.last_turn_failed,
    waiting = EXCLUDED.waiting,
    cached_answers = e.cached_answers + EXCLUDED.cached_answers,
    tokens = e.tokens + EXCLUDED.tokens
RETURNING e.*, (SELECT escalated FROM facts) AS escalated_now, (SELECT now FROM facts) AS now
"""

# Last sign of life in a conversation: any transcript line (customer, bot, operator)
# or a message still waiting to be answered.
_IDLE = """
SELECT e.* FROM conversation_episodes e
WHERE e.closed_at IS NULL
  AND GREATEST(
        e.last_customer_at,
        COALESCE(e.last_response_at, e.started_at),
        (SELECT max(m.created_at) FROM agent_messages m
          WHERE m.conversation_id = e.conversation_id),
        (SELECT max(i.received_at) FROM inbound_messages i
          WHERE i.conversation_id = e.conversation_id)
      ) < %(cutoff)s
  AND NOT EXISTS (SELECT 1 FROM conversation_runs r
                   WHERE r.conversation_id = e.conversation_id AND r.status = 'running')
ORDER BY e.started_at
LIMIT %(limit)s
FOR UPDATE OF e SKIP LOCKED
"""


class Episodes:
    def __init__(self, pool: Pool, *, idle: timedelta) -> None:
        self.pool = pool
        self.idle = idle

    async def record_turn(self, turn: TurnRecord) -> ClosedEpisode | None:
        """Add the turn to the open episode; returns the episode when a goodbye closed it.
        A turn that may close it is recorded in one transaction with the close, so that
        nobody (the console, the satisfaction question) reads the goodbye counted and the
        episode still open; any other turn is recorded in one statement."""
        ends = turn.goodbye and turn.replied and not turn.failed and turn.waiting is None
        async with self.pool.connection() as conn:
            if not ends:
                await conn.execute(_RECORD_TURN, _turn_values(turn))
                return None
            async with conn.transaction():
                cur = await conn.execute(_RECORD_TURN, _turn_values(turn))
                episode = await cur.fetchone()
                assert episode is not None
                if episode["escalated_now"] or episode["turns"] < 2:
                    return None
                return await _close(conn, episode, "goodbye", episode["now"])

    async def close_idle(
        self, now: datetime | None = None, *, limit: int = 500
    ) -> list[ClosedEpisode]:
        """Close every episode idle for `idle` at `now` (default: the current time)."""
        now = now or datetime.now(UTC)
        closed: list[ClosedEpisode] = []
        async with self.pool.connection() as conn, conn.transaction():
            cur = await conn.execute(_IDLE, {"cutoff": now - self.idle, "limit": limit})
            for episode in await cur.fetchall():
                closed.append(await _close(conn, episode, "idle", now))
        if closed:
            log.info("episodes.closed_idle", count=len(closed))
        return closed


def _turn_values(turn: TurnRecord) -> dict[str, Any]:
    return {
        "run_id": turn.run_id,
        "conversation_id": turn.conversation_id,
        "wa_id": turn.wa_id,
        "replied": turn.replied,
        "agents": list(dict.fromkeys(turn.agents)),
        "handoffs": turn.handoffs,
        "failed_n": int(turn.failed),
        "failed": turn.failed,
        "waiting": turn.waiting,
        "tokens": turn.tokens,
    }


# Read when an episode closes: did an operator answer in it, is a person still awaited,
# and what the metering (`agent_metrics`, written by the accounting) says it cost.
_CLOSING_FACTS = """
SELECT
    EXISTS (SELECT 1 FROM agent_messages WHERE conversation_id = %(c)s AND role = 'agent'
            AND agent LIKE 'operator:%%' AND created_at >= %(s)s) AS human_replied,
    (SELECT status = 'escalated' FROM agent_conversations WHERE id = %(c)s) AS open,
    (SELECT COALESCE(sum(cost_usd), 0) FROM agent_metrics WHERE conversation_id = %(c)s
       AND created_at >= %(s)s AND created_at <= %(now)s) AS cost
"""


async def _close(
    conn: Any, episode: dict[str, Any], reason: CloseReason, now: datetime
) -> ClosedEpisode:
    cur = await conn.execute(
        _CLOSING_FACTS, {"c": episode["conversation_id"], "s": episode["started_at"], "now": now}
    )
    row = await cur.fetchone()
    human_replied, escalation_open = bool(row["human_replied"]), bool(row["open"])
    last_response = episode["last_response_at"]
    facts = EpisodeFacts(
        last_turn_failed=episode["last_turn_failed"],
        human_replied=human_replied,
        escalated=episode["escalated"] or escalation_open,
        waiting=episode["waiting"],
        answered_last_message=last_response is not None
        and last_response >= episode["last_customer_at"],
    )
    outcome = decide_outcome(facts, reason)
    await conn.execute(
        "UPDATE conversation_episodes SET closed_at = %s, close_reason = %s, outcome = %s,"
        " human_replied = %s, escalated = escalated OR %s, cost_usd = %s WHERE id = %s",
        (now, reason, outcome, human_replied, escalation_open, row["cost"], episode["id"]),
    )
    agents = episode["agents"] or []
    log.info("episode.closed", episode_id=str(episode["id"]), reason=reason, outcome=outcome)
    return ClosedEpisode(
        id=str(episode["id"]),
        conversation_id=str(episode["conversation_id"]),
        wa_id=episode["wa_id"],
        outcome=outcome,
        agent=agents[-1] if agents else None,
        last_customer_at=episode["last_customer_at"],
        escalation_open=escalation_open,
    )
