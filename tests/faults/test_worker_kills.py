"""A worker process SIGKILLed at each stage of a run; another worker finishes the job:
the message is answered once (or its part marked `unknown` when the kill cut a send
off mid-flight), and the conversation goes on."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import psycopg
import pytest

from tests.fakes.graph_api import FakeGraphAPI
from tests.fakes.openai_server import FakeOpenAIServer
from tests.faults.meta import Meta, answered_count, check_invariants, message_text
from tests.faults.settings import fault_settings
from tests.support import (
    RunningService,
    eventually,
    query,
    running_service,
    spawn_worker,
    stop_process,
)

pytestmark = [pytest.mark.timeout(240), pytest.mark.slow]

CUSTOMER = "250788500001"
Stage = Callable[["Kill"], Awaitable[None]]


class Kill:
    """What a stage needs: the database, the fakes, and a way to wait for a state."""

    def __init__(self, db_url: str, graph_api: FakeGraphAPI, openai: FakeOpenAIServer) -> None:
        self.db_url = db_url
        self.graph_api = graph_api
        self.openai = openai
        self.undo: list[Callable[[], Awaitable[None]]] = []

    async def until(self, sql: str, what: str) -> None:
        async def holds() -> bool:
            return bool((await query(self.db_url, sql))[0]["ok"])

        await eventually(holds, within=30, what=what)


async def after_claim(kill: Kill) -> None:
    """The run is open and the worker waits to read the conversation's checkpoint."""
    conn = await psycopg.AsyncConnection.connect(kill.db_url)
    await conn.execute("BEGIN")
    await conn.execute("LOCK TABLE checkpoints IN ACCESS EXCLUSIVE MODE")

    async def release() -> None:
        await conn.rollback()
        await conn.close()

    kill.undo.append(release)
    await kill.until(
        "SELECT EXISTS (SELECT 1 FROM conversation_runs WHERE status = 'running') AND EXISTS"
        " (SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
        " AND query ILIKE '%%checkpoints%%') AS ok",
        "a claimed run waiting for its checkpoint",
    )


async def mid_graph(kill: Kill) -> None:
    """The model is thinking."""
    kill.openai.hold()

    async def release() -> None:
        kill.openai.release()

    kill.undo.append(release)
    await asyncio.to_thread(kill.openai.wait_for_requests, 1, 30.0)


async def after_staging(kill: Kill) -> None:
    """The replies are in the outbox; Meta refused them for now, so they wait."""
    kill.graph_api.outage(600, status=503, receipts=False)

    async def release() -> None:
        kill.graph_api.end_outage()

    kill.undo.append(release)
    await kill.until(
        "SELECT EXISTS (SELECT 1 FROM conversation_runs WHERE waiting_on = 'whatsapp')"
        " AND EXISTS (SELECT 1 FROM outbound_messages WHERE status = 'pending') AS ok",
        "staged replies waiting for Meta",
    )


async def mid_send(kill: Kill) -> None:
    """The send has left and has no answer yet."""
    kill.graph_api.hold_sends()

    async def release() -> None:
        kill.graph_api.release_sends()

    kill.undo.append(release)

    async def held() -> bool:
        return kill.graph_api.held_sends >= 1

    await eventually(held, within=30, what="a send in flight")


STAGES: dict[str, tuple[Stage, str]] = {
    "after-claim": (after_claim, "sent"),
    "mid-graph": (mid_graph, "sent"),
    "after-staging": (after_staging, "sent"),
    "mid-send": (mid_send, "unknown"),
}


@contextlib.asynccontextmanager
async def webhook_only(settings: Any) -> AsyncIterator[RunningService]:
    async with running_service(settings, with_worker=False) as service:
        yield service


@pytest.mark.parametrize("stage", list(STAGES))
async def test_a_worker_killed_at_each_stage_leaves_nothing_unanswered(
    stage: str, fault_db_url: str, graph_api: FakeGraphAPI, openai_server: FakeOpenAIServer
) -> None:
    reach, first_part = STAGES[stage]
    settings = fault_settings(fault_db_url, graph_api, openai_server, worker_concurrency=2)
    kill = Kill(fault_db_url, graph_api, openai_server)
    workers: list[subprocess.Popen[bytes]] = [spawn_worker(settings)]
    try:
        async with webhook_only(settings) as service:
            meta = Meta(service.base_url)
            async with httpx.AsyncClient(base_url=service.base_url, timeout=5) as client:
                await meta.deliver(client, CUSTOMER, message_text(6, 0))
                await reach(kill)
                stop_process(workers[0], kill=True)
                for undo in kill.undo:
                    await undo()
                workers.append(spawn_worker(settings))
                await _until_answered(fault_db_url, 1, "the killed run, finished by another")
                await meta.deliver(client, CUSTOMER, message_text(6, 1))
                await _until_answered(fault_db_url, 2, "the next message")
            await asyncio.sleep(0.5)
            await check_invariants(meta, fault_db_url, graph_api)
    finally:
        for undo in kill.undo:
            with contextlib.suppress(Exception):
                await undo()
        for worker in workers:
            stop_process(worker, kill=True)
    parts = await query(fault_db_url, "SELECT status FROM outbound_messages ORDER BY id")
    assert [p["status"] for p in parts] == [first_part, "sent"]
    assert "c6m1" in graph_api.texts_to(CUSTOMER)[-1]


async def _until_answered(db_url: str, count: int, what: str) -> None:
    async def done() -> bool:
        return await answered_count(db_url) == count

    await eventually(done, within=60, what=what)
