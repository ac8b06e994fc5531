"""Every process of a `serve` deployment within the connections the server allows: the
arithmetic, and `serve` with its workers under a burst on a database that allows few."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from graph.infra.connection_share import (
    HEADROOM,
    allowed_connections,
    connections_per_process,
    fit_pool,
)
from tests.fakes.graph_api import FakeGraphAPI
from tests.fakes.meta_payloads import envelope, text_message
from tests.fakes.openai_server import FakeOpenAIServer
from tests.faults.outages import free_port
from tests.support import (
    answers_ready,
    eventually,
    service_env,
    service_settings,
    start_serve,
    unique_name,
)
from tests.support_abuse import post

# Postgres's default max_connections less its three reserved slots.
DEFAULT_ALLOWED = 97
LIMIT = 40


@pytest.mark.parametrize("workers", [0, 1, 2, 4, 8])
def test_serve_and_its_workers_fit_a_default_server(workers: int) -> None:
    fit = fit_pool(DEFAULT_ALLOWED, workers + 1, configured_max=20)
    assert fit.fits
    assert (workers + 1) * connections_per_process(fit.pool_max) <= DEFAULT_ALLOWED - HEADROOM


def test_the_configured_pool_is_kept_where_it_fits_and_never_grown() -> None:
    assert fit_pool(DEFAULT_ALLOWED, 1, configured_max=20).pool_max == 20
    assert fit_pool(DEFAULT_ALLOWED, 3, configured_max=20).pool_max == 16  # two workers
    assert fit_pool(10_000, 3, configured_max=20).pool_max == 20
    assert fit_pool(10_000, 3, configured_max=4).pool_max == 4


def test_too_many_processes_for_the_server_are_named_as_such() -> None:
    fit = fit_pool(DEFAULT_ALLOWED, 17, configured_max=20)
    assert not fit.fits and fit.pool_max == 2


@pytest.fixture
async def limited_url(db_url: str, admin_url: str) -> AsyncIterator[str]:
    """`db_url` as a role that may open `LIMIT` connections in it (a superuser, which the
    tests are otherwise, is held to no such limit); the role is dropped afterwards."""
    role = unique_name("wa_limited")
    async with await psycopg.AsyncConnection.connect(db_url) as conn:
        name = (await (await conn.execute("SELECT current_database()")).fetchone() or [""])[0]
    async with await psycopg.AsyncConnection.connect(admin_url, autocommit=True) as conn:
        await conn.execute(f'CREATE ROLE "{role}" LOGIN CONNECTION LIMIT {LIMIT}'.encode())
        await conn.execute(f'GRANT pg_read_all_data, pg_write_all_data TO "{role}"'.encode())
        await conn.execute(f'ALTER DATABASE "{name}" OWNER TO "{role}"'.encode())
    yield make_conninfo(db_url, user=role)
    async with await psycopg.AsyncConnection.connect(admin_url, autocommit=True) as conn:
        await conn.execute(f'ALTER DATABASE "{name}" OWNER TO CURRENT_USER'.encode())
        await conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", (role,)
        )
        await conn.execute(f'DROP ROLE "{role}"'.encode())


async def test_the_server_limit_counts_the_role_s_own(db_url: str, limited_url: str) -> None:
    assert await asyncio.to_thread(allowed_connections, db_url) > LIMIT
    assert await asyncio.to_thread(allowed_connections, limited_url) == LIMIT


@pytest.mark.slow
@pytest.mark.timeout(180)
async def test_serve_s_processes_stay_within_a_small_database_limit_under_a_burst(
    limited_url: str,
    graph_api: FakeGraphAPI,
    openai_server: FakeOpenAIServer,
    tmp_path: Path,
) -> None:
    """Three processes (serve and two workers, 64 turns in flight), configured for pools
    of 20 kept open, on a database that allows 40 connections to its role: every message of a burst
    is answered and the server never refuses one of their connections."""
    port = free_port()
    openai_server.delay = 0.3  # turns overlap, as with a real model
    settings = service_settings(
        limited_url,
        whatsapp_api_base_url=graph_api.base_url,
        openai_api_key="sk-test",
        openai_base_url=openai_server.base_url + "/v1",
    )
    env = {
        **service_env(settings),
        "PORT": str(port),
        "WA_AGENT_WORKER_PROCESSES": "2",
        "WA_AGENT_WORKER_CONCURRENCY": "32",
        # Pools opened full at start: three processes would ask for 66 connections.
        "WA_AGENT_DB_POOL_MIN": "20",
        "WA_AGENT_DB_POOL_MAX": "20",
        "LOG_LEVEL": "INFO",
    }
    log_path = tmp_path / "serve.log"
    serve = start_serve(env, log_path)
    customers = [f"25078870{i:04d}" for i in range(150)]
    base = f"http://127.0.0.1:{port}"
    try:
        await eventually(lambda: answers_ready(base), within=60, what="serve ready")
        async with httpx.AsyncClient(base_url=base, timeout=10) as client:
            responses = await asyncio.gather(
                *(post(client, envelope(text_message(c, "where is my order?"))) for c in customers)
            )
        assert {response.status_code for response in responses} == {200}
        await graph_api.wait_for_async(
            lambda: all(graph_api.sent_to(wa_id) for wa_id in customers), 120
        )
    finally:
        serve.send_signal(signal.SIGTERM)
        await asyncio.to_thread(serve.wait, 30)
    log = log_path.read_text(errors="replace")
    assert "serve.pools_fitted" in log
    assert "too many connections" not in log and "too many clients" not in log
