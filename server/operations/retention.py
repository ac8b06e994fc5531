"""Retention: every table that grows with traffic loses its old rows, a batch at a time.

What goes, and after how long (graph/settings/retention.py has the knobs and why the
defaults are what they are):

- messages: inbound (once answered) and outbound (once no longer being sent) messages,
  the transcript, what the bot read of media (cascade), and the checkpoints of
  conversations idle that long (no run open, nothing unanswered);
- runs: finished runs; tool calls: tool-call records;
- metrics: model-call metrics, turn events, answer-cache lookups (the daily rollups keep
  the dashboard's figures, under their own, longer period);
- episodes: closed episodes (their CSAT answers cascade);
- jobs: the queue's finished jobs and their events;
- the webhook's freshness window: erased-message tombstones; a day: expired dashboard
  sessions;
- audit: the audit log, longest of all (the database refuses under 30 days).

Kept as long as the customer is: their STOP/START choice (`proactive_consent`), since a
"no" must outlive the messages that said it; erasure removes it with the contact.

Why batches: one `DELETE` of a year's rows would hold its locks and bloat the WAL for
minutes; a few thousand rows per statement, each statement its own transaction with a
short lock timeout, never makes the webhook or a turn wait more than a moment. Every
statement finds its rows through an index the table already has: a time column, or the
id (rows are inserted in time order, so the oldest ids are the oldest rows and the walk
stops at the first young one). One run stops after `WA_AGENT_RETENTION_MAX_S` and the
next carries on; tables take turns batch by batch, so one large backlog starves none.

Inbound rows are the webhook's memory of what it already stored: they are kept at least
the webhook's freshness window (Meta redelivers for up to 7 days), whatever is set.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import procrastinate
import psycopg
import structlog

from graph.infra.database import Pool, create_checkpointer
from graph.settings import Settings

log = structlog.get_logger(__name__)

RETENTION_TASK = "data_retention"
# Meta stops redelivering a webhook after 7 days; one more day of margin.
_REDELIVERY_DAYS = 8.0
# A batch waits this long for a row lock (a status webhook, a turn) before giving up
# on that table until the next run.
_LOCK_TIMEOUT = "2s"
# Threads per batch: each holds a few checkpoints, blobs and writes.
_THREADS_PER_BATCH = 500
_GIVE_UP = (
    psycopg.errors.LockNotAvailable,
    psycopg.errors.DeadlockDetected,
    psycopg.errors.SerializationFailure,
)

# --- the statements ------------------------------------------------------------------
# %(cutoff)s is the oldest time kept, %(batch)s the rows per statement; walks also get
# %(after)s, the last id they looked at. Each returns `deleted`; walks also `last_id`
# and `more`.


def _walk(table: str, time_column: str, only: str = "true") -> str:
    """Oldest ids first; stop at the first row younger than the cutoff."""
    return f"""
WITH examined AS (
    SELECT id, {time_column} < %(cutoff)s AS old FROM {table}
    WHERE id > %(after)s ORDER BY id LIMIT %(batch)s
), gone AS (
    DELETE FROM {table} t USING examined e
    WHERE t.id = e.id AND e.old AND ({only}) RETURNING 1
)
SELECT (SELECT count(*) FROM gone) AS deleted,
       (SELECT max(id) FROM examined) AS last_id,
       (SELECT count(*) = %(batch)s AND bool_and(old) FROM examined) AS more
"""


def _by_index(table: str, time_column: str, only: str = "true") -> str:
    """Through an index on the time column (ctid: composite keys need no special case)."""
    return f"""
WITH gone AS (
    DELETE FROM {table} WHERE ctid = ANY(ARRAY(
        SELECT ctid FROM {table} WHERE {time_column} < %(cutoff)s AND ({only})
        ORDER BY {time_column} LIMIT %(batch)s))
    RETURNING 1
)
SELECT count(*) AS deleted FROM gone
"""


_FINISHED_JOBS = """
WITH gone AS (
    DELETE FROM procrastinate_jobs WHERE id = ANY(ARRAY(
        SELECT j.id FROM procrastinate_jobs j
        WHERE j.status IN ('succeeded', 'failed', 'cancelled', 'aborted')
          AND NOT EXISTS (SELECT 1 FROM procrastinate_events e
                          WHERE e.job_id = j.id AND e.at >= %(cutoff)s)
        ORDER BY j.id LIMIT %(batch)s))
    RETURNING 1
)
SELECT count(*) AS deleted FROM gone
"""

_AUDIT = "SELECT audit_log_expire(%(cutoff)s, %(batch)s) AS deleted"

_IDLE_THREADS = """
SELECT c.id::text AS thread_id FROM agent_conversations c
WHERE greatest(c.last_inbound_at, c.updated_at) < %(cutoff)s
  AND EXISTS (SELECT 1 FROM checkpoints k WHERE k.thread_id = c.id::text)
  AND NOT EXISTS (SELECT 1 FROM conversation_runs r
                  WHERE r.conversation_id = c.id AND r.status = 'running')
  AND NOT EXISTS (SELECT 1 FROM inbound_messages m
                  WHERE m.conversation_id = c.id AND m.processed_at IS NULL)
ORDER BY c.id LIMIT %(batch)s
"""


@dataclass(frozen=True)
class Sweep:
    """One kind of old row: its label, how many days it is kept (None: for good) and
    the statement that deletes one batch of it."""

    name: str
    days: Callable[[Settings], float | None]
    sql: str
    walk: bool = False


def _days(field_name: str) -> Callable[[Settings], float | None]:
    def days(settings: Settings) -> float | None:
        value = float(getattr(settings, field_name))
        return value or None

    return days


def message_days(settings: Settings) -> float | None:
    """Conversations' rows, never younger than what a redelivery could still name."""
    days = settings.retention_message_days
    if not days:
        return None
    window = settings.webhook_max_age_days + 1 if settings.webhook_max_age_days else 0
    return max(days, window, _REDELIVERY_DAYS)


def tombstone_days(settings: Settings) -> float | None:
    """A tombstone older than the freshness window guards nothing: a redelivery of its
    message is refused as too old anyway. Without a window they are kept."""
    window = settings.webhook_max_age_days
    return window + 1 if window else None


SWEEPS: tuple[Sweep, ...] = (
    Sweep(
        "inbound_messages",
        message_days,
        _walk("inbound_messages", "received_at", "t.processed_at IS NOT NULL"),
        walk=True,
    ),
    Sweep(
        "outbound_messages",
        message_days,
        _walk("outbound_messages", "created_at", "t.status NOT IN ('pending', 'sending')"),
        walk=True,
    ),
    Sweep("agent_messages", message_days, _walk("agent_messages", "created_at"), walk=True),
    Sweep(
        "conversation_runs",
        _days("retention_run_days"),
        _by_index("conversation_runs", "started_at", "status <> 'running'"),
    ),
    Sweep(
        "agent_tool_executions",
        _days("retention_tool_days"),
        _by_index("agent_tool_executions", "created_at"),
    ),
    Sweep(
        "agent_metrics", _days("retention_metric_days"), _by_index("agent_metrics", "created_at")
    ),
    Sweep(
        "agent_turn_events",
        _days("retention_metric_days"),
        _by_index("agent_turn_events", "created_at"),
    ),
    Sweep(
        "answer_cache_events",
        _days("retention_metric_days"),
        _by_index("answer_cache_events", "created_at"),
    ),
    Sweep(
        "console_conversation_days",
        _days("retention_rollup_days"),
        _by_index("console_conversation_days", "day"),
    ),
    Sweep(
        "console_agent_latency",
        _days("retention_rollup_days"),
        _by_index("console_agent_latency", "day"),
    ),
    Sweep(
        "console_route_days", _days("retention_rollup_days"), _by_index("console_route_days", "day")
    ),
    Sweep(
        "conversation_episodes",
        _days("retention_episode_days"),
        _by_index("conversation_episodes", "closed_at"),
    ),
    Sweep("procrastinate_jobs", _days("retention_job_days"), _FINISHED_JOBS),
    Sweep("erased_wamids", tombstone_days, _by_index("erased_wamids", "erased_at")),
    Sweep("dashboard_sessions", lambda _: 1.0, _by_index("dashboard_sessions", "expires_at")),
    Sweep("audit_log", _days("retention_audit_days"), _AUDIT),
)
THREADS = "checkpoint_threads"


@dataclass(frozen=True)
class RetentionOptions:
    """What one run keeps and how long it may take: days per table (None: kept for
    good; `THREADS`: the checkpoints of idle conversations), rows per statement, and
    the run's time budget in seconds."""

    days: Mapping[str, float | None]
    batch: int
    max_seconds: float

    @classmethod
    def from_settings(cls, settings: Settings) -> RetentionOptions:
        days = {sweep.name: sweep.days(settings) for sweep in SWEEPS}
        days[THREADS] = message_days(settings)
        return cls(days, settings.retention_batch, settings.retention_max_seconds)


@dataclass
class RetentionReport:
    """Rows deleted per table in one run, how long it took, and whether it got through
    everything (False: the time budget ran out; the next run carries on)."""

    deleted: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    table_seconds: dict[str, float] = field(default_factory=dict)
    complete: bool = True

    @property
    def total(self) -> int:
        return sum(self.deleted.values())


@dataclass
class _Cursor:
    """Where one table's sweep stands within a run."""

    sweep: Sweep | None  # None: the checkpoint threads
    cutoff: datetime
    after: int = 0
    more: bool = True


async def enforce_retention(
    pool: Pool, options: RetentionOptions, *, now: datetime | None = None
) -> RetentionReport:
    """One run: every table a batch at a time, in turns, until nothing old is left or
    the time budget is spent."""
    started = time.monotonic()
    deadline = started + options.max_seconds
    now = now or datetime.now(UTC)
    cursors = _cursors(options, now)
    report = RetentionReport(deleted={_name(c): 0 for c in cursors})
    steps = 0
    while any(c.more for c in cursors):
        for cursor in (c for c in cursors if c.more):
            if steps and time.monotonic() > deadline:  # a run always gets one batch done
                report.complete = False
                break
            began, name = time.monotonic(), _name(cursor)
            report.deleted[name] += await _step(pool, cursor, options.batch)
            report.table_seconds[name] = report.table_seconds.get(name, 0.0) + (
                time.monotonic() - began
            )
            steps += 1
        if not report.complete:
            break
    report.seconds = time.monotonic() - started
    removed = {name: n for name, n in report.deleted.items() if n}
    if removed or not report.complete:
        seconds = round(report.seconds, 2)
        log.info("retention.done", seconds=seconds, complete=report.complete, **removed)
    return report


def _cursors(options: RetentionOptions, now: datetime) -> list[_Cursor]:
    cursors = [
        _Cursor(sweep, now - timedelta(days=days))
        for sweep in SWEEPS
        if (days := options.days.get(sweep.name)) is not None
    ]
    if (days := options.days.get(THREADS)) is not None:
        cursors.append(_Cursor(None, now - timedelta(days=days)))
    return cursors


def _name(cursor: _Cursor) -> str:
    return cursor.sweep.name if cursor.sweep is not None else THREADS


async def _step(pool: Pool, cursor: _Cursor, batch: int) -> int:
    """One batch of one table; a table whose rows are busy waits for the next run."""
    try:
        if cursor.sweep is None:
            return await _drop_idle_threads(pool, cursor, batch)
        return await _delete_batch(pool, cursor, cursor.sweep, batch)
    except _GIVE_UP as exc:
        log.info("retention.deferred", table=_name(cursor), reason=type(exc).__name__)
        cursor.more = False
        return 0


async def _delete_batch(pool: Pool, cursor: _Cursor, sweep: Sweep, batch: int) -> int:
    params: dict[str, Any] = {"cutoff": cursor.cutoff, "batch": batch, "after": cursor.after}
    async with pool.connection() as conn, conn.transaction():
        # Rows aging out leave the dashboard's rollups alone (migration 0024).
        await conn.execute(
            "SELECT set_config('wa_agent.retention', 'on', true),"
            " set_config('lock_timeout', %s, true)",
            (_LOCK_TIMEOUT,),
        )
        cur = await conn.execute(sweep.sql.encode(), params)
        row = await cur.fetchone()
    assert row is not None
    deleted = int(row["deleted"])
    if sweep.walk:
        cursor.after = int(row["last_id"] or cursor.after)
        cursor.more = bool(row["more"])
    else:
        cursor.more = deleted >= batch
    return deleted


async def _drop_idle_threads(pool: Pool, cursor: _Cursor, batch: int) -> int:
    """Checkpoints go through the checkpointer (its tables are its own business)."""
    async with pool.connection() as conn:
        cur = await conn.execute(
            _IDLE_THREADS.encode(),
            {"cutoff": cursor.cutoff, "batch": min(batch, _THREADS_PER_BATCH)},
        )
        threads = [row["thread_id"] for row in await cur.fetchall()]
    # One transaction for the batch, through the checkpointer's own bulk delete.
    await create_checkpointer(pool).aprune(threads, strategy="delete")
    cursor.more = len(threads) >= min(batch, _THREADS_PER_BATCH)
    return len(threads)


def register_retention_task(
    queue: procrastinate.App, pool: Pool, options: RetentionOptions, *, cron: str | None
) -> None:
    """The periodic job (`cron` None: retention is off); `lock` keeps two runs from
    overlapping across workers, and a tick missed (every worker down) is simply left to
    the next one."""
    if cron is None:
        return

    @queue.periodic(cron=cron, periodic_id="retention")
    @queue.task(name=RETENTION_TASK, queueing_lock=RETENTION_TASK, lock=RETENTION_TASK)
    async def data_retention(timestamp: int) -> None:
        await enforce_retention(pool, options)
