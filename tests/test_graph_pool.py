"""Concurrent turns borrow graphs of their own: each with its own saver (one saver's lock
would queue them), all from one compilation, never more than the slots."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any, TypedDict, cast

import pytest
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import END, START, StateGraph

from graph.composition.builder import ConversationGraph
from graph.composition.graph_pool import GraphPool
from graph.infra.database import Pool, create_checkpointer, open_pool
from tests.support import service_settings


class Echo(TypedDict):
    said: str


def echo_graph(saver: BaseCheckpointSaver[str]) -> ConversationGraph:
    compiled.append(saver)
    builder = StateGraph(Echo)
    builder.add_node("echo", lambda state: {"said": state["said"].upper()})
    builder.add_edge(START, "echo")
    builder.add_edge("echo", END)
    return cast(ConversationGraph, builder.compile(checkpointer=saver))


compiled: list[BaseCheckpointSaver[str]] = []


@pytest.fixture
async def pool(db_url: str) -> AsyncIterator[Pool]:
    async with open_pool(db_url, service_settings(db_url)) as opened:
        await create_checkpointer(opened).setup()
        yield opened


async def test_concurrent_turns_get_their_own_saver_from_one_compilation(pool: Pool) -> None:
    compiled.clear()
    graphs = GraphPool(pool, echo_graph, size=3)
    threads = [str(uuid.uuid4()) for _ in range(3)]
    inside = asyncio.Barrier(3)

    async def turn(thread_id: str) -> tuple[Any, dict[str, Any]]:
        async with graphs.borrow() as graph:
            await inside.wait()  # all three hold a graph at once
            config: Any = {"configurable": {"thread_id": thread_id}}
            result = await graph.ainvoke({"said": f"hello {thread_id[:4]}"}, config)
            return graph.checkpointer, result

    done = await asyncio.wait_for(asyncio.gather(*(turn(t) for t in threads)), 10)
    savers = [saver for saver, _ in done]
    assert len({id(saver) for saver in savers}) == 3
    assert len(compiled) == 1  # the others are copies, not compilations
    for thread_id, (_, result) in zip(threads, done, strict=True):
        assert result == {"said": f"hello {thread_id[:4]}".upper()}
    async with graphs.borrow() as graph:  # each turn's state was saved, by any copy
        for thread_id in threads:
            state = await graph.aget_state({"configurable": {"thread_id": thread_id}})
            assert state.values["said"] == f"hello {thread_id[:4]}".upper()


async def test_a_turn_beyond_the_slots_waits_for_a_graph(pool: Pool) -> None:
    graphs = GraphPool(pool, echo_graph, size=1)
    async with graphs.borrow():
        waiting = asyncio.create_task(_borrow_once(graphs))
        await asyncio.sleep(0.2)
        assert not waiting.done()
    await asyncio.wait_for(waiting, 5)


async def _borrow_once(graphs: GraphPool) -> None:
    async with graphs.borrow():
        pass
