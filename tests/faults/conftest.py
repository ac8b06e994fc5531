"""Parts the fault tests may break: a Postgres of their own (stopping it must not touch
the rest of the suite) and a Redis of their own."""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from graph.infra.database import apply_migrations
from tests.faults.outages import StoppablePostgres, StoppableRedis
from tests.support import create_database, drop_database, unique_name


@pytest.fixture(scope="session")
def stoppable_postgres() -> Iterator[StoppablePostgres]:
    with tempfile.TemporaryDirectory(prefix="wa-agent-faults-") as tmp:
        server = StoppablePostgres(Path(tmp) / "postgres")
        try:
            yield server
        finally:
            server.close()


@pytest.fixture(scope="session")
async def faults_template(stoppable_postgres: StoppablePostgres) -> str:
    name = unique_name("wa_faults_template")
    await apply_migrations(await create_database(stoppable_postgres.url, name))
    return name


@pytest.fixture
async def fault_db_url(
    stoppable_postgres: StoppablePostgres, faults_template: str
) -> AsyncIterator[str]:
    """A fresh migrated database on the stoppable server; left running after the test."""
    name = unique_name("wa_faults")
    url = await create_database(stoppable_postgres.url, name, template=faults_template)
    yield url
    await drop_database(stoppable_postgres.url, name)


@pytest.fixture
def stoppable_redis() -> Iterator[StoppableRedis]:
    server = StoppableRedis()
    try:
        yield server
    finally:
        server.close()
