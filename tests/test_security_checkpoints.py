"""A tampered checkpoint cannot run code: whoever can write the checkpoint tables must
not be able to make the worker call `os.system` when it loads a conversation."""

from __future__ import annotations

import logging
import uuid
from pathlib import Path

import ormsgpack
import pytest
from langchain_core.messages import HumanMessage
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

from tests.fakes.graph_api import FakeGraphAPI
from tests.fakes.meta_payloads import envelope, text_message
from tests.fakes.openai_server import FakeOpenAIServer
from tests.support import eventually, running_service
from tests.support_abuse import abuse_settings, all_processed

CONSTRUCTOR_WITH_ARGS = 1  # LangGraph's msgpack extension: module, name, positional args


def tampered_messages(marker: Path) -> bytes:
    """A `messages` channel value that, if trusted, runs `touch marker`."""
    call = ormsgpack.packb(["os", "system", [f"touch {marker}"]])
    return ormsgpack.packb([ormsgpack.Ext(CONSTRUCTOR_WITH_ARGS, call)])


async def test_a_tampered_checkpoint_is_loaded_as_inert_data(
    db_url: str,
    graph_api: FakeGraphAPI,
    openai_server: FakeOpenAIServer,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    customer = "2507" + str(uuid.uuid4().int)[:8]
    marker = tmp_path / "pwned"
    async with running_service(abuse_settings(db_url, graph_api, openai_server)) as service:
        await service.post_webhook(envelope(text_message(customer, "hello")))
        await eventually(lambda: all_processed(service, customer), what="the turn")
        rows = await service.fetch("SELECT id FROM agent_conversations WHERE wa_id = %s", customer)
        config = {"configurable": {"thread_id": str(rows[0]["id"])}}
        with caplog.at_level(logging.WARNING):
            async with service.services.runner.graphs.borrow() as graph:
                honest = await graph.aget_state(config)  # type: ignore[arg-type]
        blocked_honest = [r for r in caplog.records if "Blocked deserialization" in r.message]
        await service.execute(
            "UPDATE checkpoint_blobs SET blob = %s WHERE thread_id = %s AND channel = 'messages'",
            tampered_messages(marker),
            str(rows[0]["id"]),
        )
        async with service.services.runner.graphs.borrow() as graph:
            tampered = await graph.aget_state(config)  # type: ignore[arg-type]
    assert any(isinstance(m, HumanMessage) for m in honest.values["messages"])
    assert blocked_honest == []  # the allow-list lets every real state type through
    assert not marker.exists()
    assert tampered.values["messages"] == [[f"touch {marker}"]]  # the arguments, as data

    # The same bytes through LangGraph's permissive default would have run the command.
    JsonPlusSerializer(allowed_msgpack_modules=True).loads_typed(
        ("msgpack", tampered_messages(marker))
    )
    assert marker.exists()
