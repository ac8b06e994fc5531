"""The job queue: procrastinate on the service's own Postgres.

The app (this module), its task (`answer_conversation`, bound to a runner by the
worker) and the connector stay apart, as procrastinate's own docs lay them out: the
webhook only needs the app to defer, the worker also registers the task.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import procrastinate
import psycopg
import structlog
from procrastinate.exceptions import AlreadyEnqueued

from graph.settings import Settings

log = structlog.get_logger(__name__)

ANSWER_TASK = "answer_conversation"

AnswerFn = Callable[[str, int | None], Awaitable[None]]


def create_queue_app(database_url: str, settings: Settings) -> procrastinate.App:
    connector = procrastinate.PsycopgConnector(
        conninfo=database_url,
        min_size=1,
        max_size=max(4, settings.worker_concurrency // 2),
        kwargs={"prepare_threshold": settings.db_prepare_threshold},
    )
    return procrastinate.App(connector=connector)


async def enqueue_answer(
    queue: procrastinate.App, conn: psycopg.AsyncConnection[Any], conversation_id: str
) -> bool:
    """Defer the conversation's job inside the caller's transaction.

    `lock` keeps one job per conversation running at a time (order holds across any
    number of workers); `queueing_lock` keeps at most one waiting, which is how double
    texts are coalesced. A waiting job already covers this message, so `AlreadyEnqueued`
    is success; the savepoint keeps that unique violation from aborting the inbound insert.
    """
    try:
        async with conn.transaction():
            await queue.configure_task(
                name=ANSWER_TASK,
                lock=conversation_id,
                queueing_lock=conversation_id,
                connection=conn,
            ).defer_async(conversation_id=conversation_id)
    except AlreadyEnqueued:
        return False
    return True


def register_answer_task(queue: procrastinate.App, answer: AnswerFn, settings: Settings) -> None:
    """Bind the task to the worker's runner. Failures retry with exponential backoff;
    the runner makes a retried job resume its run instead of starting over."""

    @queue.task(
        name=ANSWER_TASK,
        pass_context=True,
        retry=procrastinate.RetryStrategy(
            max_attempts=settings.job_max_attempts, exponential_wait=2
        ),
    )
    async def answer_conversation(context: procrastinate.JobContext, conversation_id: str) -> None:
        await answer(conversation_id, context.job.id if context.job else None)


OPERATOR_REPLY_TASK = "operator_reply"
OPERATOR_RELEASE_TASK = "operator_release"


class OperatorActions(Protocol):
    async def send_reply(
        self, conversation_id: str, action_id: str, text: str, operator: str
    ) -> None: ...

    async def release(self, conversation_id: str, action_id: str, operator: str) -> None: ...


async def enqueue_operator_action(
    queue: procrastinate.App, task: str, conversation_id: str, **kwargs: str
) -> int:
    """Operator actions share the conversation's lock with the bot's turns."""
    job_id: int = await queue.configure_task(name=task, lock=conversation_id).defer_async(
        conversation_id=conversation_id, **kwargs
    )
    return job_id


def register_operator_tasks(
    queue: procrastinate.App, desk: OperatorActions, settings: Settings
) -> None:
    retry = procrastinate.RetryStrategy(max_attempts=settings.job_max_attempts, exponential_wait=2)

    @queue.task(name=OPERATOR_REPLY_TASK, retry=retry)
    async def operator_reply(
        conversation_id: str, action_id: str, text: str, operator: str
    ) -> None:
        await desk.send_reply(conversation_id, action_id, text, operator)

    @queue.task(name=OPERATOR_RELEASE_TASK, retry=retry)
    async def operator_release(conversation_id: str, action_id: str, operator: str) -> None:
        await desk.release(conversation_id, action_id, operator)


async def recover_stalled_jobs(queue: procrastinate.App, settings: Settings) -> int:
    """Put back jobs whose worker died mid-run (no heartbeat): nothing else would.

    When a newer job for the same conversation is already waiting, the stalled one is
    failed instead: the waiting job resumes the interrupted run on its own.
    """
    recovered = 0
    jobs = await queue.job_manager.get_stalled_jobs(
        seconds_since_heartbeat=settings.stalled_job_seconds
    )
    for job in jobs:
        try:
            await queue.job_manager.retry_job(job)
            recovered += 1
            log.warning("job.stalled.retried", job_id=job.id, task=job.task_name)
        except psycopg.errors.UniqueViolation:
            await queue.job_manager.finish_job(
                job, status=procrastinate.jobs.Status.FAILED, delete_job=False
            )
            log.warning("job.stalled.superseded", job_id=job.id, task=job.task_name)
    return recovered


async def watch_stalled_jobs(queue: procrastinate.App, settings: Settings) -> None:
    """At start and then periodically, until cancelled."""
    while True:
        try:
            await recover_stalled_jobs(queue, settings)
        except Exception as exc:  # keep watching: a failed sweep is retried next time
            log.error("job.stalled.sweep_failed", error=str(exc)[:200])
        await asyncio.sleep(max(1.0, settings.stalled_job_seconds / 2))


async def run_worker(queue: procrastinate.App, settings: Settings, *, name: str) -> None:
    """Run jobs until cancelled, with the stalled-job watch beside them."""
    watcher = asyncio.create_task(watch_stalled_jobs(queue, settings), name="stalled-jobs")
    try:
        await queue.run_worker_async(
            name=name,
            concurrency=settings.worker_concurrency,
            fetch_job_polling_interval=settings.queue_poll_seconds,
            update_heartbeat_interval=settings.worker_heartbeat_seconds,
            stalled_worker_timeout=settings.stalled_job_seconds,
            install_signal_handlers=False,
            delete_jobs="successful",
        )
    finally:
        watcher.cancel()
