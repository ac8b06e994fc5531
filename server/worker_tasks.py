"""What a process's worker runs: the tasks it may take from the queue, and the worker
itself with the self-healing sweeps beside it.

Apart from `services.py`, which opens the components: this is the list of duties a
worker has, so that adding a job kind is one line here, not a change to start-up.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os

import procrastinate
import structlog

from graph.composition.feature_flags import FeatureFlags
from graph.composition.memory import ConversationMemory
from graph.infra.database import Pool
from graph.settings import Settings
from server.operations.retention import RetentionOptions, register_retention_task
from server.outcomes.alerts import AlertMonitor, AlertOptions, register_alert_task
from server.outcomes.escalation_notices import register_notice_task
from server.outcomes.hooks import OutcomeHooks, register_outcome_tasks
from server.outcomes.reminders import BookingReminders, ReminderOptions, register_reminder_task
from server.runner.conversation_runner import ConversationRunner
from server.runner.healing import HealingOptions, JobWatch, keep_healing
from server.runner.memory_jobs import MaintenanceOptions, MemoryJobs, register_memory_tasks
from server.runner.operators import OperatorDesk
from server.runner.queue import (
    WorkerOptions,
    register_answer_task,
    register_operator_tasks,
    run_worker,
)
from server.runner.transport import Channels
from server.runner.turn_lock import register_stream_turn_task

log = structlog.get_logger(__name__)


def register_worker_tasks(
    queue: procrastinate.App,
    settings: Settings,
    runner: ConversationRunner,
    outcomes: OutcomeHooks,
    flags: FeatureFlags,
    memory: ConversationMemory,
) -> None:
    """Every task this process's worker may run: turns, and the jobs beside them."""
    pool, transports = runner.pool, runner.channels
    register_answer_task(queue, runner.answer)
    _register_chores(queue, pool, settings, OperatorDesk(pool, runner.graphs, transports))
    register_reminder_task(queue, _booking_reminders(pool, transports, flags, settings))
    register_outcome_tasks(
        queue,
        outcomes,
        sweep_cron=settings.episode_sweep_cron,
        purge_cron=settings.maintenance_cron,
    )
    maintenance = MaintenanceOptions.from_settings(settings)
    register_memory_tasks(queue, MemoryJobs(pool, maintenance, memory))


def _register_chores(
    queue: procrastinate.App, pool: Pool, settings: Settings, desk: OperatorDesk
) -> None:
    """The tasks beside the turns: operator actions, alerts, retention, stream turns."""
    register_operator_tasks(queue, desk, max_attempts=settings.job_max_attempts)
    register_alert_task(queue, AlertMonitor(pool, AlertOptions.from_settings(settings)))
    register_retention_task(
        queue,
        pool,
        RetentionOptions.from_settings(settings),
        cron=settings.retention_cron if settings.retention_enabled else None,
    )
    register_stream_turn_task(queue)
    register_notice_task(queue, settings.escalation_webhook_url)


def _booking_reminders(
    pool: Pool, channels: Channels, flags: FeatureFlags, settings: Settings
) -> list[BookingReminders]:
    """The reminder before a booking and the nudge for its open payment."""
    zone = settings.business_timezone
    kinds = [
        ReminderOptions.parse(
            "booking", settings.booking_reminder_template, settings.booking_reminder_hours, zone
        ),
        ReminderOptions.parse(
            "payment", settings.payment_nudge_template, settings.payment_nudge_hours, zone
        ),
    ]
    return [BookingReminders(pool, channels, flags, options) for options in kinds]


async def work_and_heal(
    queue: procrastinate.App, pool: Pool, settings: Settings, queues: tuple[str, ...]
) -> None:
    """The queue's worker, restarted whenever it stops, with the self-healing sweeps
    beside it; both until cancelled."""
    watch = JobWatch()
    healing = HealingOptions(
        every_seconds=settings.heal_interval_seconds,
        stalled_seconds=settings.stalled_job_seconds,
        grace_seconds=max(5.0, settings.heal_interval_seconds),
    )
    sweeps = asyncio.create_task(keep_healing(queue, pool, watch, healing), name="healing")
    try:
        await run_worker(
            queue,
            dataclasses.replace(WorkerOptions.from_settings(settings), queues=queues),
            name=f"wa-agent-{os.getpid()}",
            middleware=[watch.middleware],
        )
    finally:
        sweeps.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sweeps


async def stop_worker(task: asyncio.Task[None] | None) -> None:
    if task is None:
        return
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass
    except Exception:
        log.exception("worker.stopped_with_error")
