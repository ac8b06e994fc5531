"""Postgres stopped under load and started again (a failover, an upgrade, an OOM kill):
the webhook refuses fast while it is away, and afterwards every acknowledged message is
answered, once and in order, without anybody writing again."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from tests.fakes.graph_api import FakeGraphAPI
from tests.fakes.openai_server import FakeOpenAIServer
from tests.faults.meta import Meta, answered_count, check_invariants
from tests.faults.outages import StoppablePostgres
from tests.faults.settings import fault_settings
from tests.support import eventually, running_service, spawn_worker, stop_process

pytestmark = pytest.mark.timeout(240)

CUSTOMERS = [f"2507883{index:05d}" for index in range(12)]


async def test_a_database_restart_under_load_loses_and_wedges_nothing(
    fault_db_url: str,
    stoppable_postgres: StoppablePostgres,
    graph_api: FakeGraphAPI,
    openai_server: FakeOpenAIServer,
) -> None:
    settings = fault_settings(fault_db_url, graph_api, openai_server)
    async with running_service(settings) as service:
        meta = Meta(service.base_url, redeliver_after_s=1.0)
        talk = [
            asyncio.create_task(meta.converse(wa_id, index, turns=4, pause_s=0.7))
            for index, wa_id in enumerate(CUSTOMERS)
        ]
        await asyncio.sleep(1.5)
        readiness: list[tuple[int, dict[str, object]]] = []
        async with httpx.AsyncClient(base_url=service.base_url, timeout=5) as client:
            with stoppable_postgres.stopped():
                await asyncio.sleep(2.0)
                started = time.monotonic()
                ready = await client.get("/readyz")
                readiness.append((ready.status_code, ready.json()["checks"]))
                assert time.monotonic() - started < 2.5
                await asyncio.sleep(6.0)
        await asyncio.gather(*talk)
        expected = len(CUSTOMERS) * 4
        assert meta.acknowledged_count == expected

        async def all_answered() -> bool:
            return await answered_count(fault_db_url) == expected

        await eventually(all_answered, within=90, what="every acknowledged message answered")
        await asyncio.sleep(1.0)
        await check_invariants(meta, fault_db_url, graph_api)
        async with httpx.AsyncClient(base_url=service.base_url, timeout=5) as client:
            assert (await client.get("/readyz")).status_code == 200

    refusals = [seconds for status, seconds in meta.refused]
    assert refusals, "the webhook acknowledged deliveries while the database was down"
    assert {status for status, _ in meta.refused} == {503}
    assert max(refusals) < 2.0, f"slowest refusal took {max(refusals):.2f} s"
    status, checks = readiness[0]
    assert status == 503 and str(checks["database"]).startswith("unreachable"), checks


async def test_a_worker_started_while_the_database_is_down_waits_for_it(
    fault_db_url: str,
    stoppable_postgres: StoppablePostgres,
    graph_api: FakeGraphAPI,
    openai_server: FakeOpenAIServer,
) -> None:
    """A worker restarted (or deployed) during a database restart used to exit at its
    first query; with no worker left, acknowledged messages waited for a person."""
    settings = fault_settings(fault_db_url, graph_api, openai_server)
    async with running_service(settings, with_worker=False) as service:
        with stoppable_postgres.stopped():
            worker = spawn_worker(settings)
            await asyncio.sleep(6.0)  # the worker is up and finds no database
            assert worker.poll() is None, "the worker gave up while the database was away"
        try:
            meta = Meta(service.base_url)
            await meta.converse(CUSTOMERS[0], 0, turns=1, pause_s=0)

            async def answered() -> bool:
                return await answered_count(fault_db_url) == 1

            await eventually(answered, within=60, what="the message answered by that worker")
            await check_invariants(meta, fault_db_url, graph_api)
        finally:
            stop_process(worker, kill=True)
