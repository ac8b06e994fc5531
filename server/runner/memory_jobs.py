"""The memory's queued jobs: remember after a turn, and two periodic chores.

- `remember_conversation`: deferred by the runner once a turn's replies were sent,
  to run `WA_AGENT_MEMORY_REMEMBER_DELAY_S` later, so extraction never delays an
  answer. One waiting job per conversation (`queueing_lock`): turns that end while it
  waits are read by that same job, so a burst of messages costs one extraction call.
- `memory_cleanup` (periodic): the memory policy (TTL under the importance floor, cap
  per customer, orphans) and the embedding cache's age limit.
- `checkpoint_retention` (periodic): the open-source checkpointer never prunes; threads
  idle longer than `WA_AGENT_CHECKPOINT_RETENTION_DAYS` keep only their latest
  checkpoint (langgraph's `aprune(..., strategy="keep_latest")`), so storage is bounded
  while every conversation can still go on from where it is.

Periodic jobs are deferred by procrastinate's periodic deferrer inside each worker;
several workers defer each tick once between them (the tick is part of the job key).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import procrastinate
import psycopg
import structlog

from graph.composition.memory import ConversationMemory
from graph.infra.database import Pool, create_checkpointer
from graph.settings import Settings
from nodes.memory.store import CleanupReport
from server.runner.queue import defer_job

log = structlog.get_logger(__name__)

REMEMBER_TASK = "remember_conversation"
MEMORY_CLEANUP_TASK = "memory_cleanup"
CHECKPOINT_RETENTION_TASK = "checkpoint_retention"
# Extraction is worth little late: a few tries, then the next turn's job covers it.
REMEMBER_ATTEMPTS = 3


def remember_lock(conversation_id: str) -> str:
    return f"remember:{conversation_id}"


async def enqueue_remember(
    queue: procrastinate.App,
    conversation_id: str,
    *,
    delay_seconds: float = 0.0,
    attempt: int = 1,
) -> bool:
    """Defer the remember job; a job already waiting for this conversation covers it
    (it reads every line written until it runs): then False, and nothing changes."""
    return await defer_job(
        queue,
        REMEMBER_TASK,
        remember_lock(conversation_id),
        {"conversation_id": conversation_id, "attempt": attempt},
        at=datetime.now(UTC) + timedelta(seconds=delay_seconds) if delay_seconds > 0 else None,
    )


@dataclass(frozen=True)
class RetentionReport:
    threads: int
    checkpoints_deleted: int


async def prune_idle_checkpoints(pool: Pool, *, idle_for: timedelta) -> RetentionReport:
    """Keep only the latest checkpoint of every thread idle for `idle_for` or more.

    A thread pruned while a turn writes to it fails with a serialization error inside
    langgraph's prune, which rolls back: that thread is simply tried next time.
    """
    cutoff = datetime.now(UTC) - idle_for
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT thread_id, count(*) AS n FROM checkpoints WHERE checkpoint_ns = ''"
            " GROUP BY thread_id HAVING count(*) > 1"
            " AND max((checkpoint ->> 'ts')::timestamptz) < %s",
            (cutoff,),
        )
        idle = [(row["thread_id"], int(row["n"])) for row in await cur.fetchall()]
    saver = create_checkpointer(pool)
    threads = deleted = 0
    for thread_id, count in idle:
        try:
            await saver.aprune([thread_id], strategy="keep_latest")
        except (psycopg.errors.SerializationFailure, psycopg.errors.DeadlockDetected):
            log.info("checkpoints.prune_deferred", thread_id=thread_id)
            continue
        threads += 1
        deleted += count - 1
    if threads:
        log.info("checkpoints.pruned", threads=threads, checkpoints=deleted)
    return RetentionReport(threads, deleted)


@dataclass(frozen=True)
class MaintenanceOptions:
    """When the memory chores run and what they keep."""

    cron: str
    embedding_cache_days: float
    checkpoint_retention_days: float  # 0: keep every checkpoint

    @classmethod
    def from_settings(cls, settings: Settings) -> MaintenanceOptions:
        return cls(
            cron=settings.maintenance_cron,
            embedding_cache_days=settings.embedding_cache_days,
            checkpoint_retention_days=settings.checkpoint_retention_days,
        )


@dataclass(frozen=True)
class MemoryJobs:
    pool: Pool
    options: MaintenanceOptions
    memory: ConversationMemory

    async def remember(self, conversation_id: str) -> None:
        if self.memory.rememberer is not None:
            await self.memory.rememberer.remember(conversation_id)

    async def cleanup(self) -> CleanupReport | None:
        if self.memory.long_term is None:
            return None
        report = await self.memory.long_term.cleanup(cache_days=self.options.embedding_cache_days)
        log.info("memory.cleaned", **report.__dict__)
        return report

    async def retain_checkpoints(self) -> RetentionReport | None:
        days = self.options.checkpoint_retention_days
        if days <= 0:
            return None
        return await prune_idle_checkpoints(self.pool, idle_for=timedelta(days=days))


def register_memory_tasks(queue: procrastinate.App, jobs: MemoryJobs) -> None:
    """The remember task (retried a few times: extraction is worth little late) and
    the periodic chores, which a missed tick simply leaves to the next one."""

    @queue.task(name=REMEMBER_TASK)
    async def remember_conversation(conversation_id: str, attempt: int = 1) -> None:
        try:
            await jobs.remember(conversation_id)
        except Exception as exc:
            # Not the queue's retry: it would collide with a job already waiting under
            # this conversation's queueing lock. A waiting job covers this one anyway.
            if attempt >= REMEMBER_ATTEMPTS:
                log.warning("memory.remember_gave_up", attempts=attempt, error=str(exc)[:200])
                return
            await enqueue_remember(
                queue, conversation_id, delay_seconds=5.0 * 2**attempt, attempt=attempt + 1
            )

    @queue.periodic(cron=jobs.options.cron, periodic_id="memory")
    @queue.task(name=MEMORY_CLEANUP_TASK, queueing_lock=MEMORY_CLEANUP_TASK)
    async def memory_cleanup(timestamp: int) -> None:
        await jobs.cleanup()

    @queue.periodic(cron=jobs.options.cron, periodic_id="checkpoints")
    @queue.task(name=CHECKPOINT_RETENTION_TASK, queueing_lock=CHECKPOINT_RETENTION_TASK)
    async def checkpoint_retention(timestamp: int) -> None:
        await jobs.retain_checkpoints()
