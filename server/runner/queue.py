"""The job queue: procrastinate on the service's own Postgres.

The app (this module), its task (`answer_conversation`, bound to a runner by the
worker) and the connector stay apart, as procrastinate's own docs lay them out: the
webhook only needs the app to defer, the worker also registers the task.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import procrastinate
import psycopg
import psycopg_pool
import structlog
from procrastinate.middleware import WorkerMiddleware

from graph.infra.connection_share import queue_pool_max
from graph.infra.database import checked_when_idle
from graph.settings import Settings
from server.runner.transport import DEFAULT_QUEUE
from server.telemetry import WORKER_RESTARTS

log = structlog.get_logger(__name__)

ANSWER_TASK = "answer_conversation"

AnswerFn = Callable[[str, int | None], Awaitable[None]]

_FIRST_RESTART_PAUSE_S = 0.5
_MAX_RESTART_PAUSE_S = 2.0
_HEALTHY_RUN_S = 60.0


@dataclass(frozen=True)
class WorkerOptions:
    """What a worker process needs of the settings."""

    concurrency: int
    poll_seconds: float
    heartbeat_seconds: float
    stalled_seconds: float
    # The queues this worker takes jobs from: every worker the default one; `wa-agent
    # chat` only its own terminal conversation's (server/runner/transport.py).
    queues: tuple[str, ...] = (DEFAULT_QUEUE,)

    @classmethod
    def from_settings(cls, settings: Settings) -> WorkerOptions:
        return cls(
            concurrency=settings.worker_concurrency,
            poll_seconds=settings.queue_poll_seconds,
            heartbeat_seconds=settings.worker_heartbeat_seconds,
            stalled_seconds=settings.stalled_job_seconds,
        )


def create_queue_app(database_url: str, settings: Settings) -> procrastinate.App:
    idle_check = checked_when_idle(settings.db_check_idle_seconds)

    def pool(**options: Any) -> psycopg_pool.AsyncConnectionPool:
        # procrastinate checks every connection before each query (a round trip per
        # statement, seven a turn); a connection used a moment ago is known good.
        return psycopg_pool.AsyncConnectionPool(**{**options, **idle_check}, configure=_autocommit)

    connector = procrastinate.PsycopgConnector(
        conninfo=database_url,
        min_size=1,
        # Each query holds a connection for one statement; a worker fetches one job at
        # a time, so turns in flight (however many) share a few.
        max_size=queue_pool_max(settings.db_pool_max_size),
        kwargs={"prepare_threshold": settings.db_prepare_threshold},
        pool_factory=pool,
    )
    return procrastinate.App(connector=connector)


async def _autocommit(connection: psycopg.AsyncConnection[Any]) -> None:
    """Every query procrastinate sends through its pool is one statement (a job fetched,
    deferred or finished is one SQL function call), atomic on its own. Without
    autocommit psycopg wraps each in BEGIN … COMMIT: three round trips where one does,
    fifteen a turn. (Its listener's own connection is in autocommit already.)"""
    await connection.set_autocommit(True)


async def schedule_answer(
    queue: procrastinate.App,
    conversation_id: str,
    at: datetime | None = None,
    queue_name: str = DEFAULT_QUEUE,
) -> bool:
    """Make sure a job of the conversation runs no later than `at` (None: now), in the
    queue of its channel (server/runner/transport.py `answer_queue`).

    A job already waiting covers it; when that one is scheduled later (a run postponed
    while Meta was down, say), it is brought forward. Returns whether a job was added.
    """
    args = {"conversation_id": conversation_id}
    if await defer_job(queue, ANSWER_TASK, conversation_id, args, at=at, queue_name=queue_name):
        return True
    await queue.connector.execute_query_async(
        "UPDATE procrastinate_jobs SET scheduled_at = %(at)s"
        " WHERE status = 'todo' AND task_name = %(task)s"
        " AND queueing_lock = %(conversation)s AND scheduled_at > %(at)s",
        at=at or datetime.now(UTC),
        task=ANSWER_TASK,
        conversation=conversation_id,
    )
    return False


async def defer_job(
    queue: procrastinate.App,
    task: str,
    lock: str,
    args: dict[str, Any],
    *,
    at: datetime | None = None,
    queue_name: str = DEFAULT_QUEUE,
) -> bool:
    """Defer `task` under `lock` (its lock and queueing lock), due at `at` (None: now).
    False when a job holding the lock already waits, and nothing changes: `wa_defer_job`
    (migration 0038) catches the violation that procrastinate's own defer raised, a
    failed transaction and an ERROR in Postgres's log each time."""
    row = await queue.connector.execute_query_one_async(
        "SELECT wa_defer_job(%(queue)s, %(task)s, %(lock)s, %(args)s, %(at)s) AS deferred",
        queue=queue_name,
        task=task,
        lock=lock,
        args=args,
        at=at,
    )
    return bool(row["deferred"])


def register_answer_task(queue: procrastinate.App, answer: AnswerFn) -> None:
    """Bind the task to the worker's runner. No retry strategy: a run that fails is
    postponed by the runner, which schedules the conversation's next job itself (a
    retried job would collide with the one waiting under the same queueing lock)."""

    @queue.task(name=ANSWER_TASK, pass_context=True)
    async def answer_conversation(context: procrastinate.JobContext, conversation_id: str) -> None:
        await answer(conversation_id, context.job.id if context.job else None)


OPERATOR_REPLY_TASK = "operator_reply"
OPERATOR_MEDIA_TASK = "operator_media"
OPERATOR_RELEASE_TASK = "operator_release"
OPERATOR_TEMPLATE_TASK = "operator_template"
OPERATOR_TAKEOVER_TASK = "operator_takeover"


class OperatorActions(Protocol):
    async def send_reply(
        self, conversation_id: str, action_id: str, text: str, operator: str
    ) -> None: ...

    async def send_media(
        self, conversation_id: str, action_id: str, media: str, operator: str
    ) -> None: ...

    async def release(self, conversation_id: str, action_id: str, operator: str) -> None: ...

    async def send_template(
        self, conversation_id: str, action_id: str, template: str, operator: str
    ) -> None: ...

    async def take_over(self, conversation_id: str, action_id: str, operator: str) -> None: ...


async def enqueue_operator_action(
    queue: procrastinate.App, task: str, conversation_id: str, queue_name: str, **kwargs: str
) -> int:
    """Operator actions share the conversation's lock with the bot's turns, and its
    channel's queue (a terminal conversation's reply is printed by its `wa-agent chat`)."""
    job_id: int = await queue.configure_task(
        name=task, lock=conversation_id, queue=queue_name
    ).defer_async(conversation_id=conversation_id, **kwargs)
    return job_id


def register_operator_tasks(
    queue: procrastinate.App, desk: OperatorActions, *, max_attempts: int
) -> None:
    retry = procrastinate.RetryStrategy(max_attempts=max_attempts, exponential_wait=2)

    @queue.task(name=OPERATOR_REPLY_TASK, retry=retry)
    async def operator_reply(
        conversation_id: str, action_id: str, text: str, operator: str
    ) -> None:
        await desk.send_reply(conversation_id, action_id, text, operator)

    @queue.task(name=OPERATOR_MEDIA_TASK, retry=retry)
    async def operator_media(
        conversation_id: str, action_id: str, media: str, operator: str
    ) -> None:
        await desk.send_media(conversation_id, action_id, media, operator)

    @queue.task(name=OPERATOR_RELEASE_TASK, retry=retry)
    async def operator_release(conversation_id: str, action_id: str, operator: str) -> None:
        await desk.release(conversation_id, action_id, operator)

    @queue.task(name=OPERATOR_TAKEOVER_TASK, retry=retry)
    async def operator_takeover(conversation_id: str, action_id: str, operator: str) -> None:
        await desk.take_over(conversation_id, action_id, operator)

    @queue.task(name=OPERATOR_TEMPLATE_TASK, retry=retry)
    async def operator_template(
        conversation_id: str, action_id: str, template: str, operator: str
    ) -> None:
        await desk.send_template(conversation_id, action_id, template, operator)


async def run_worker(
    queue: procrastinate.App,
    options: WorkerOptions,
    *,
    name: str,
    middleware: list[WorkerMiddleware] | None = None,
) -> None:
    """Run jobs until cancelled, restarting the worker whenever it stops.

    procrastinate's worker stops when one of its side tasks fails (the heartbeat or
    the listener, when the database goes away) and raises when fetching a job fails:
    either way it is started again, a little later each time, so a database restart
    costs a pause, never a service that acknowledges and no longer answers.
    """
    pause = _FIRST_RESTART_PAUSE_S
    while True:
        started = time.monotonic()
        try:
            await queue.run_worker_async(
                name=name,
                queues=list(options.queues),
                concurrency=options.concurrency,
                fetch_job_polling_interval=options.poll_seconds,
                update_heartbeat_interval=options.heartbeat_seconds,
                stalled_worker_timeout=options.stalled_seconds,
                install_signal_handlers=False,
                delete_jobs="successful",
                worker_middleware=middleware or [],
            )
            log.error("worker.stopped", behaviour="restarting", pause_s=pause)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.error("worker.crashed", error=repr(exc)[:300], behaviour="restarting")
        WORKER_RESTARTS.inc()
        if time.monotonic() - started > _HEALTHY_RUN_S:
            pause = _FIRST_RESTART_PAUSE_S
        await asyncio.sleep(pause)
        pause = min(pause * 2, _MAX_RESTART_PAUSE_S)
