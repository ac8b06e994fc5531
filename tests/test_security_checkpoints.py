"""A tampered checkpoint cannot run code: whoever can write the checkpoint tables must
not be able to make the worker call `os.system` when it loads a conversation — nor any
other process that reads checkpoints (erasure, replay, memory jobs), whose savers come
from `graph.infra.database.create_checkpointer` rather than through the service."""

from __future__ import annotations

import logging
import uuid
from pathlib import Path

import ormsgpack
import pytest
from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
from langgraph.graph import START, MessagesState, StateGraph

from graph.infra.database import create_checkpointer, open_pool
from tests.fakes.graph_api import FakeGraphAPI
from tests.fakes.meta_payloads import envelope, text_message
from tests.fakes.openai_server import FakeOpenAIServer
from tests.support import eventually, running_service, service_settings
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


async def test_a_checkpointer_from_persistence_is_strict_without_being_told(
    db_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    marker = tmp_path / "pwned"
    thread_id = str(uuid.uuid4())
    config: RunnableConfig = {"configurable": {"thread_id": thread_id}}

    def answer(state: MessagesState) -> dict[str, list[AIMessage]]:
        return {"messages": [AIMessage("hi there")]}

    async with open_pool(db_url, service_settings(db_url)) as pool:
        builder = StateGraph(MessagesState)
        builder.add_node("answer", answer)
        builder.add_edge(START, "answer")
        graph = builder.compile(checkpointer=create_checkpointer(pool))
        await graph.ainvoke({"messages": [HumanMessage("hello")]}, config)
        with caplog.at_level(logging.WARNING):
            honest = await create_checkpointer(pool).aget_tuple(config)
        async with pool.connection() as conn:
            await conn.execute(
                "UPDATE checkpoint_blobs SET blob = %s"
                " WHERE thread_id = %s AND channel = 'messages'",
                (tampered_messages(marker), thread_id),
            )
        tampered = await create_checkpointer(pool).aget_tuple(config)
    assert honest is not None and tampered is not None
    assert [m.content for m in honest.checkpoint["channel_values"]["messages"]] == [
        "hello",
        "hi there",
    ]
    assert not [r for r in caplog.records if "Blocked deserialization" in r.message]
    assert not marker.exists()
    assert tampered.checkpoint["channel_values"]["messages"] == [[f"touch {marker}"]]
