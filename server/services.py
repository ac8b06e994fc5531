"""Opening and closing what a process needs, in one place, for serve, worker and chat."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import procrastinate
import structlog
from langgraph.checkpoint.base import BaseCheckpointSaver

from graph.builder import ConversationGraph, build_graph
from graph.models import build_chat_model
from graph.persistence import Pool, apply_migrations, open_pool, resolve_database_url
from graph.prompts import load_prompts
from graph.runtime import GraphPool
from graph.settings import Settings
from server.conversations import ConversationRunner
from server.queue import create_queue_app, register_answer_task, run_worker
from server.whatsapp.client import WhatsAppClient

log = structlog.get_logger(__name__)


@dataclass
class Services:
    settings: Settings
    database_url: str
    pool: Pool
    queue: procrastinate.App
    whatsapp: WhatsAppClient | None
    runner: ConversationRunner
    worker_task: asyncio.Task[None] | None = field(default=None)


def build_whatsapp_client(settings: Settings) -> WhatsAppClient | None:
    if settings.whatsapp_access_token is None or not settings.whatsapp_phone_number_id:
        log.warning(
            "whatsapp.unconfigured",
            reason="WHATSAPP_ACCESS_TOKEN or WHATSAPP_PHONE_NUMBER_ID is missing",
            behaviour="replies are recorded as failed instead of being sent",
        )
        return None
    return WhatsAppClient(
        base_url=settings.whatsapp_api_base_url,
        access_token=settings.whatsapp_access_token.get_secret_value(),
        phone_number_id=settings.whatsapp_phone_number_id,
        api_version=settings.whatsapp_api_version,
        timeout=settings.whatsapp_timeout_seconds,
    )


@asynccontextmanager
async def open_services(
    settings: Settings, *, run_worker_here: bool, migrate: bool = True
) -> AsyncIterator[Services]:
    """Database (embedded unless `DATABASE_URL`), migrations, pool, queue, graphs, and
    optionally an in-process worker; everything closed in reverse order on exit."""
    database_url = await asyncio.to_thread(resolve_database_url, settings)
    if migrate:
        await apply_migrations(database_url)
    model = build_chat_model(settings)
    prompts = load_prompts(settings.business_name)

    def compile_graph(saver: BaseCheckpointSaver[str]) -> ConversationGraph:
        return build_graph(model, prompts, checkpointer=saver)

    whatsapp = build_whatsapp_client(settings)
    async with open_pool(database_url, settings) as pool:
        graphs = GraphPool(pool, compile_graph, size=settings.worker_concurrency)
        runner = ConversationRunner(pool, graphs, whatsapp, settings)
        queue = create_queue_app(database_url, settings)
        register_answer_task(queue, runner.answer, settings)
        async with queue.open_async():
            services = Services(settings, database_url, pool, queue, whatsapp, runner)
            if run_worker_here:
                services.worker_task = asyncio.create_task(
                    run_worker(queue, settings, name=f"wa-agent-{os.getpid()}")
                )
            try:
                yield services
            finally:
                await _stop_worker(services.worker_task)
                if whatsapp is not None:
                    await whatsapp.aclose()


async def _stop_worker(task: asyncio.Task[None] | None) -> None:
    if task is None:
        return
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass
    except Exception:
        log.exception("worker.stopped_with_error")
