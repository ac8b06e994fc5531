"""Opening and closing what a process needs, in one place, for serve, worker and chat."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import procrastinate
import psycopg
import structlog
from procrastinate.exceptions import ConnectorException

from graph.composition.agent_configs import AgentDirectory
from graph.composition.conversation_graphs import ConversationGraphs, open_conversation_graphs
from graph.composition.feature_flags import FeatureFlags
from graph.composition.memory import ConversationMemory, migrate_memory_embeddings
from graph.infra.database import Pool, apply_migrations, open_pool, resolve_database_url
from graph.infra.tracing import configure_tracing, flush_tracing
from graph.settings import Settings
from server.abuse import AbuseProtection, open_abuse_protection
from server.abuse.tool_limits import open_tool_limiter
from server.media import build_media_understanding
from server.operations.conversation_replay import Replays
from server.outcomes.hooks import OutcomeHooks, build_outcome_hooks
from server.outcomes.template_catalog import declare_templates
from server.runner.accounting import Accounting, AccountingOptions
from server.runner.conversation_runner import ConversationRunner, RunnerOptions
from server.runner.customer_language import CustomerVoice
from server.runner.graph_phase import GraphPhase
from server.runner.memory_jobs import enqueue_remember
from server.runner.partial_delivery import PartialOptions
from server.runner.queue import create_queue_app, schedule_answer
from server.runner.transport import DEFAULT_QUEUE, WEB, Channels, Stored, Transport
from server.whatsapp.numbers import ApiOptions, NumberSecrets, WhatsAppNumbers
from server.worker_tasks import register_worker_tasks, stop_worker, work_and_heal

log = structlog.get_logger(__name__)

# How long a starting process waits for a database that does not answer yet.
_START_PATIENCE_S = 60.0
_FIRST_START_PAUSE_S = 0.5
_MAX_START_PAUSE_S = 5.0


@dataclass
class Services:
    settings: Settings
    database_url: str
    pool: Pool
    queue: procrastinate.App
    numbers: WhatsAppNumbers
    runner: ConversationRunner
    abuse: AbuseProtection
    agents: AgentDirectory
    tool_names: frozenset[str]
    flags: FeatureFlags
    worker_task: asyncio.Task[None] | None = field(default=None)
    accounting: Accounting | None = field(default=None)

    def replays(self) -> Replays:
        """What replays and forks use of this service."""
        return Replays(
            self.pool,
            self.runner.graphs,
            self.agents,
            self.flags,
            self.runner.channels,
            self.settings.app_version,
        )


def whatsapp_numbers(settings: Settings, pool: Pool) -> WhatsAppNumbers:
    """The rows of `business_numbers` and the environment's number."""
    api = ApiOptions(
        base_url=settings.whatsapp_api_base_url,
        api_version=settings.whatsapp_api_version,
        timeout_seconds=settings.whatsapp_timeout_seconds,
    )
    return WhatsAppNumbers(pool, api, from_environment=environment_number(settings))


def environment_number(settings: Settings) -> NumberSecrets | None:
    """The number `.env` describes (WHATSAPP_PHONE_NUMBER_ID and its secrets), if any."""
    token, secret = settings.whatsapp_access_token, settings.whatsapp_app_secret
    if not settings.whatsapp_phone_number_id:
        if token is not None or secret is not None:
            log.warning(
                "whatsapp.no_environment_number",
                reason="WHATSAPP_PHONE_NUMBER_ID is missing",
                behaviour="only the numbers of `wa-agent numbers` are answered",
            )
        return None
    if token is None:
        log.warning(
            "whatsapp.unconfigured",
            reason="WHATSAPP_ACCESS_TOKEN is missing",
            behaviour="replies are recorded as failed instead of being sent",
        )
    return NumberSecrets(
        phone_number_id=settings.whatsapp_phone_number_id,
        access_token=token.get_secret_value() if token is not None else None,
        app_secret=secret.get_secret_value() if secret is not None else None,
    )


@asynccontextmanager
async def open_services(
    settings: Settings,
    *,
    run_worker_here: bool,
    migrate: bool = True,
    channels: Mapping[str, Transport] | None = None,
    worker_queues: tuple[str, ...] = (DEFAULT_QUEUE,),
) -> AsyncIterator[Services]:
    """Database (embedded unless `DATABASE_URL`), migrations, pool, queue, graphs, and
    optionally an in-process worker (taking jobs from `worker_queues`); everything
    closed in reverse order on exit. `channels`: transports of channels other than
    WhatsApp that this process holds (the terminal, in `wa-agent chat`).

    A database away while the process starts (restarting, failing over) is waited for,
    up to `_START_PATIENCE_S`, each failure logged with its reason: a worker started
    during a database restart used to exit, and with every worker gone the service
    acknowledged messages nobody answered. Longer than that, the process exits and its
    supervisor (`serve`, systemd, Kubernetes) starts it again."""
    opened = functools.partial(
        _open_services_once,
        settings,
        run_worker_here=run_worker_here,
        migrate=migrate,
        channels=channels,
        worker_queues=worker_queues,
    )
    async with contextlib.AsyncExitStack() as stack:
        yield await _enter_when_database_answers(stack, opened)


async def _enter_when_database_answers(
    stack: contextlib.AsyncExitStack,
    opened: Callable[[], contextlib.AbstractAsyncContextManager[Services]],
) -> Services:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + _START_PATIENCE_S
    pause = _FIRST_START_PAUSE_S
    while True:
        try:
            return await stack.enter_async_context(opened())
        except (psycopg.OperationalError, ConnectorException) as exc:
            left = deadline - loop.time()
            if left <= 0:
                raise
            log.warning(
                "start.database_unreachable",
                error=str(exc)[:300],
                retry_in_s=pause,
                gives_up_in_s=round(left),
            )
            await asyncio.sleep(pause)
            pause = min(pause * 2, _MAX_START_PAUSE_S)


@asynccontextmanager
async def _open_services_once(
    settings: Settings,
    *,
    run_worker_here: bool,
    migrate: bool,
    channels: Mapping[str, Transport] | None,
    worker_queues: tuple[str, ...],
) -> AsyncIterator[Services]:
    database_url = await asyncio.to_thread(resolve_database_url, settings)
    if migrate and settings.migrate_on_start:
        await apply_migrations(database_url)
        await migrate_memory_embeddings(database_url, settings)
    tracing = configure_tracing(settings)
    async with (
        open_pool(database_url, settings) as pool,
        contextlib.aclosing(whatsapp_numbers(settings, pool)) as numbers,
        open_abuse_protection(settings, pool) as abuse,
        open_tool_limiter(settings) as tool_limiter,
        open_conversation_graphs(
            settings, database_url, pool, tool_limiter=tool_limiter
        ) as conversation_graphs,
    ):
        await numbers.refresh()
        if migrate and settings.templates_file is not None:
            await declare_templates(pool, settings.templates_file)
        queue = create_queue_app(database_url, settings)
        flags = FeatureFlags(pool, settings.flags, number_flags=numbers.flags_of)
        accounting = None
        if settings.accounting_enabled:
            accounting = Accounting(pool, AccountingOptions.from_settings(settings))
        runner, outcomes = _answering(
            settings, pool, queue, conversation_graphs, numbers, abuse, flags, accounting, channels
        )
        register_worker_tasks(queue, settings, runner, outcomes, flags, conversation_graphs.memory)
        async with queue.open_async(), _metered_jobs(accounting):
            services = Services(
                settings,
                database_url,
                pool,
                queue,
                numbers,
                runner,
                abuse,
                conversation_graphs.agents,
                conversation_graphs.tool_names,
                flags,
                accounting=accounting,
            )
            if run_worker_here:
                await conversation_graphs.warm_up()
                services.worker_task = asyncio.create_task(
                    work_and_heal(queue, pool, settings, worker_queues), name="worker"
                )
            freeze_startup_objects()
            try:
                yield services
            finally:
                await stop_worker(services.worker_task)
                await asyncio.to_thread(flush_tracing, tracing)


def _answering(
    settings: Settings,
    pool: Pool,
    queue: procrastinate.App,
    conversation_graphs: ConversationGraphs,
    numbers: WhatsAppNumbers,
    abuse: AbuseProtection,
    flags: FeatureFlags,
    accounting: Accounting | None,
    channels: Mapping[str, Transport] | None,
) -> tuple[ConversationRunner, OutcomeHooks]:
    """The runner that answers customers, and the outcome hooks around its turns."""
    graphs = conversation_graphs.pooled(pool, settings.worker_concurrency)
    voice = CustomerVoice(
        pool,
        conversation_graphs.notices,
        conversation_graphs.language_of,
        settings.default_language,
        numbers.default_language,
    )
    transports = Channels(numbers, {WEB: Stored(), **(channels or {})})
    outcomes = build_outcome_hooks(pool, graphs, transports, flags, settings, queue, voice)
    phase = GraphPhase(
        pool,
        graphs,
        numbers,
        PartialOptions.from_settings(settings),
        voice,
        settings.app_version,
        agents=conversation_graphs.agents,
        flags=flags,
        outcomes=outcomes,
        accounting=accounting,
        media=build_media_understanding(settings, pool, flags),
    )
    runner = ConversationRunner(
        phase,
        functools.partial(schedule_answer, queue),
        RunnerOptions.from_settings(settings),
        transports,
        gate=abuse.gate,
        after_delivery=_remember_later(queue, conversation_graphs.memory, settings),
    )
    return runner, outcomes


@asynccontextmanager
async def _metered_jobs(accounting: Accounting | None) -> AsyncIterator[None]:
    """The accounting's writer runs while the services do, and jobs the worker runs
    (memory extraction) are metered too; what is still queued is written on exit."""
    if accounting is None:
        yield
        return
    meter = accounting.meter_context()
    accounting.writer.start()
    try:
        yield
    finally:
        accounting.unmeter_context(meter)
        await accounting.writer.stop()


def _remember_later(
    queue: procrastinate.App, memory: ConversationMemory, settings: Settings
) -> Callable[[str], Awaitable[bool]] | None:
    """What the runner does once a turn's replies are sent: queue the remember job."""
    if memory.rememberer is None:
        return None
    delay = settings.memory_remember_delay_seconds
    return lambda conversation_id: enqueue_remember(queue, conversation_id, delay_seconds=delay)


def freeze_startup_objects() -> None:
    """Move what start-up built (~200k objects of imported libraries, models, graphs)
    out of the garbage collector's reach: a full collection traversing them paused the
    process for 100-120 ms, the webhook's p99 (docs/performance.md). They live as long as
    the process anyway."""
    gc.collect()
    gc.freeze()
