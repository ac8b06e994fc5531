"""The Graph API fake and a WhatsApp client pointed at it, shared by the client's
message and retry tests: one fake per test module (it starts a real HTTP server), reset
before each test, and a client whose tiny backoff keeps retried calls fast."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from server.whatsapp.client import WhatsAppClient
from tests.fakes.graph_api import FakeGraphAPI

CUSTOMER = "15551234567"


@pytest.fixture(scope="module")
def graph_server() -> Iterator[FakeGraphAPI]:
    with FakeGraphAPI() as server:
        yield server


@pytest.fixture
def graph(graph_server: FakeGraphAPI) -> FakeGraphAPI:
    graph_server.reset()
    return graph_server


def make_client(graph: FakeGraphAPI, **overrides: Any) -> WhatsAppClient:
    options: dict[str, Any] = {
        "base_url": graph.base_url,
        "access_token": graph.access_token,
        "phone_number_id": "PNID",
        "timeout": 2.0,
        "max_attempts": 4,
        "backoff_base": 0.001,
    }
    options.update(overrides)
    return WhatsAppClient(**options)


@pytest.fixture
async def client(graph: FakeGraphAPI) -> AsyncIterator[WhatsAppClient]:
    async with make_client(graph) as whatsapp:
        yield whatsapp
