"""A turn reads its thread's latest checkpoint once: the graph's own first read gets the
state the turn read before it, and never one older than a write."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import CheckpointTuple, empty_checkpoint

from graph.infra.checkpoint_reads import ReadSharingSaver, sharing_checkpoint_reads
from graph.infra.database import Pool, create_checkpointer, open_pool
from tests.support import service_settings


@pytest.fixture
async def saver(db_url: str) -> AsyncIterator[ReadSharingSaver]:
    pool: Pool
    async with open_pool(db_url, service_settings(db_url)) as pool:
        checkpointer = create_checkpointer(pool)
        assert isinstance(checkpointer, ReadSharingSaver)
        await checkpointer.setup()
        yield checkpointer


def thread() -> RunnableConfig:
    return {"configurable": {"thread_id": str(uuid.uuid4()), "checkpoint_ns": ""}}


async def save(saver: ReadSharingSaver, config: RunnableConfig, text: str) -> RunnableConfig:
    checkpoint = empty_checkpoint()
    checkpoint["channel_values"] = {"summary": text}
    checkpoint["channel_versions"] = {"summary": checkpoint["id"]}
    return await saver.aput(config, checkpoint, {"step": 1}, {"summary": checkpoint["id"]})


def summary_of(found: CheckpointTuple | None) -> object:
    assert found is not None
    return found.checkpoint["channel_values"].get("summary")


async def test_the_second_read_of_a_turn_is_the_first_and_a_third_reads_again(
    saver: ReadSharingSaver,
) -> None:
    config = thread()
    await save(saver, config, "before the turn")
    with sharing_checkpoint_reads():
        first = await saver.aget_tuple(config)
        second = await saver.aget_tuple(config)
        third = await saver.aget_tuple(config)
    assert second is first  # not read again
    assert third is not first and summary_of(third) == "before the turn"
    outside = [await saver.aget_tuple(config) for _ in range(2)]
    assert outside[0] is not outside[1]  # outside a turn, every read is the database's


async def test_a_read_after_a_write_sees_the_write(saver: ReadSharingSaver) -> None:
    config = thread()
    with sharing_checkpoint_reads():
        assert await saver.aget_tuple(config) is None  # a new conversation
        saved = await save(saver, config, "first turn")
        assert summary_of(await saver.aget_tuple(config)) == "first turn"  # kept...
        await saver.aput_writes(saved, [("summary", "pending")], task_id="task")
        after = await saver.aget_tuple(config)  # ...and forgotten at the write
    assert after is not None and after.pending_writes == [("task", "summary", "pending")]


async def test_a_given_checkpoint_is_always_read_from_the_database(
    saver: ReadSharingSaver,
) -> None:
    config = thread()
    saved = await save(saver, config, "kept")
    with sharing_checkpoint_reads():
        first = await saver.aget_tuple(saved)
        second = await saver.aget_tuple(saved)
    assert first is not second and summary_of(second) == "kept"
