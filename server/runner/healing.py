"""Self-healing: whatever failed, every waiting message ends up with a live job.

Three sweeps run in every worker process, each cheap and safe to run concurrently:

- **stalled jobs**: `doing` jobs whose worker stopped sending heartbeats (a killed
  process). procrastinate finds them; nothing re-runs them by itself.
- **orphaned jobs**: `doing` jobs of *this* process's live worker that it is not
  running — a job whose end could not be written (the database went away at that
  moment; procrastinate then loses the error in a background task) or whose fetch
  answer was lost. Their worker heartbeats, so the stalled sweep never sees them, and
  their `lock` would block the conversation for good.
- **unanswered conversations**: messages not answered, and no job waiting or running
  for their conversation. A job that could not schedule its successor (the database was
  down) ends here. Its counter, `wa_agent_conversations_healed_total`, should stay 0:
  anything it heals is a path the runner missed, and is logged as such.

A recovered answer job is finished and the conversation scheduled afresh: the next job
resumes the open run. Other jobs are retried as procrastinate would.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Iterable
from dataclasses import dataclass, field
from typing import Any

import procrastinate
import structlog
from procrastinate.job_context import JobContext
from procrastinate.jobs import Job, Status
from procrastinate.middleware import AsyncCallNext
from procrastinate.worker import Worker

from graph.infra.database import Pool
from server.runner.queue import ANSWER_TASK, schedule_answer
from server.runner.transport import answer_queue
from server.telemetry import CONVERSATIONS_HEALED, JOBS_RECOVERED

log = structlog.get_logger(__name__)

_JOB_COLUMNS = (
    "id, status, task_name, priority, lock, queueing_lock, args, scheduled_at,"
    " queue_name, attempts, worker_id"
)
# A job that ended here less than this ago may still be having its end written.
_ENDING_GRACE_S = 10.0


@dataclass
class JobWatch:
    """Which jobs this process runs, as a procrastinate worker middleware sees them."""

    worker_id: int | None = None
    running: set[int] = field(default_factory=set)
    ended_at: dict[int, float] = field(default_factory=dict)
    suspects: set[int] = field(default_factory=set)

    async def middleware(
        self, call_next: AsyncCallNext, context: JobContext, worker: Worker
    ) -> Any:
        job_id = context.job.id
        self.worker_id = worker.worker_id
        if job_id is None:
            return await call_next()
        self.running.add(job_id)
        try:
            return await call_next()
        finally:
            self.running.discard(job_id)
            self.ended_at[job_id] = time.monotonic()

    def orphans(self, doing: Iterable[int]) -> set[int]:
        """Of this worker's `doing` jobs, those it does not run — seen so twice in a row,
        so that a job fetched a moment ago and not started yet is never one."""
        now = time.monotonic()
        self.ended_at = {j: t for j, t in self.ended_at.items() if now - t < 600}
        candidates = {
            job_id
            for job_id in doing
            if job_id not in self.running
            and now - self.ended_at.get(job_id, -_ENDING_GRACE_S * 2) > _ENDING_GRACE_S
        }
        confirmed = candidates & self.suspects
        self.suspects = candidates - confirmed
        return confirmed


@dataclass(frozen=True)
class HealingOptions:
    every_seconds: float
    stalled_seconds: float
    # A waiting message younger than this is left alone (its job may be starting).
    grace_seconds: float


async def recover_stalled_jobs(queue: procrastinate.App, stalled_seconds: float) -> int:
    jobs = list(await queue.job_manager.get_stalled_jobs(seconds_since_heartbeat=stalled_seconds))
    for job in jobs:
        await recover_job(queue, job, reason="stalled")
    return len(jobs)


async def recover_orphaned_jobs(queue: procrastinate.App, pool: Pool, watch: JobWatch) -> int:
    if watch.worker_id is None:
        return 0
    async with pool.connection() as conn:
        cur = await conn.execute(
            f"SELECT {_JOB_COLUMNS} FROM procrastinate_jobs"
            " WHERE status = 'doing' AND worker_id = %s",
            (watch.worker_id,),
        )
        rows = {row["id"]: row for row in await cur.fetchall()}
    orphans = watch.orphans(rows)
    for job_id in orphans:
        await recover_job(queue, Job.from_row(rows[job_id]), reason="orphaned")
    return len(orphans)


async def recover_job(queue: procrastinate.App, job: Job, *, reason: str) -> None:
    """Free the job's lock and make sure its work is done by another."""
    try:
        if job.task_name == ANSWER_TASK:
            await queue.job_manager.finish_job(job, status=Status.FAILED, delete_job=False)
            await schedule_answer(
                queue, str(job.task_kwargs["conversation_id"]), queue_name=job.queue
            )
        else:
            try:
                await queue.job_manager.retry_job(job)
            except procrastinate.exceptions.UniqueViolation:  # one waits under its queueing lock
                await queue.job_manager.finish_job(job, status=Status.FAILED, delete_job=False)
    except procrastinate.exceptions.ConnectorException as exc:
        log.warning("job.recover_failed", job_id=job.id, reason=reason, error=str(exc)[:200])
        return
    JOBS_RECOVERED.labels(reason=reason).inc()
    log.warning("job.recovered", job_id=job.id, task=job.task_name, reason=reason)


async def heal_unanswered_conversations(
    queue: procrastinate.App, pool: Pool, grace_seconds: float
) -> int:
    """Schedule a job for every conversation with unanswered messages and no job."""
    async with pool.connection() as conn:
        cur = await conn.execute(_UNANSWERED_WITHOUT_JOB, (grace_seconds, ANSWER_TASK))
        rows = await cur.fetchall()
    for row in rows:
        conversation_id = row["conversation_id"]
        where = answer_queue(row["phone_number_id"], row["wa_id"])
        if await schedule_answer(queue, conversation_id, queue_name=where):
            CONVERSATIONS_HEALED.inc()
            log.warning("conversation.healed", conversation_id=conversation_id)
    return len(rows)


async def keep_healing(
    queue: procrastinate.App, pool: Pool, watch: JobWatch, options: HealingOptions
) -> None:
    """At start and then periodically, until cancelled; a failed sweep (the database is
    away) is simply the next one's work."""
    while True:
        sweeps: list[Awaitable[int]] = [
            recover_stalled_jobs(queue, options.stalled_seconds),
            recover_orphaned_jobs(queue, pool, watch),
            heal_unanswered_conversations(queue, pool, options.grace_seconds),
        ]
        for sweep in sweeps:
            try:
                await sweep
            except Exception as exc:
                log.warning("healing.sweep_failed", error=repr(exc)[:200])
        await asyncio.sleep(options.every_seconds)


_UNANSWERED_WITHOUT_JOB = """
SELECT DISTINCT m.conversation_id::text AS conversation_id, c.phone_number_id, c.wa_id
FROM inbound_messages m JOIN agent_conversations c ON c.id = m.conversation_id
WHERE m.processed_at IS NULL
  AND m.received_at < now() - make_interval(secs => %s)
  AND NOT EXISTS (
      SELECT 1 FROM procrastinate_jobs j
      WHERE j.status = 'todo' AND j.task_name = %s
        AND j.queueing_lock = m.conversation_id::text)
  AND NOT EXISTS (
      SELECT 1 FROM procrastinate_jobs j
      WHERE j.status = 'doing' AND j.lock = m.conversation_id::text)
LIMIT 500
"""
