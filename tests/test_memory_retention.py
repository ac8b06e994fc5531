"""Checkpoint retention: an idle thread keeps only its latest checkpoint, an active one
keeps its history, and a conversation goes on (and can be forked) from what is kept."""

from __future__ import annotations

import uuid
from datetime import timedelta

from langchain_core.runnables import RunnableConfig

from graph.state import customer_message
from server.runner.memory_jobs import prune_idle_checkpoints
from tests.fakes.openai_server import FakeOpenAIServer
from tests.support import query
from tests.test_memory_graph import agent_requests, memory_graph

CUSTOMER = "250788000301"


async def checkpoints(db_url: str, thread: str) -> int:
    rows = await query(db_url, "SELECT count(*) AS n FROM checkpoints WHERE thread_id = %s", thread)
    return int(rows[0]["n"])


async def test_idle_threads_keep_their_latest_checkpoint_and_go_on_from_it(
    db_url: str, openai_server: FakeOpenAIServer
) -> None:
    idle, active = str(uuid.uuid4()), str(uuid.uuid4())
    async with memory_graph(db_url, openai_server, memory_history_tokens=200) as memory:
        for n in range(6):
            await memory.say(CUSTOMER, idle, f"Question {n}: do you rent tandem bikes for day {n}?")
        await memory.say(CUSTOMER, active, "Hello there")
        before = await memory.state(idle)
        history_before = await checkpoints(db_url, idle) + await checkpoints(db_url, active)

        # Nothing is idle for a day yet; everything is idle for "0 seconds".
        assert (await prune_idle_checkpoints(memory.pool, idle_for=timedelta(days=1))).threads == 0
        report = await prune_idle_checkpoints(memory.pool, idle_for=timedelta(0))
        assert report.threads == 2
        assert report.checkpoints_deleted == history_before - 2
        assert await checkpoints(db_url, idle) == 1
        after = await memory.state(idle)
        assert after["messages"] == before["messages"] and after["summary"] == before["summary"]
        kept = [
            s async for s in memory.graph.aget_state_history({"configurable": {"thread_id": idle}})
        ]
        assert len(kept) == 1

        # The conversation goes on from the kept checkpoint, summary and all...
        result = await memory.say(CUSTOMER, idle, "And helmets?")
        assert result["replies"][0]["text"] == "echo: And helmets?"
        prompt = agent_requests(openai_server)[-1]["messages"]
        assert "Question 5" in str(prompt) and "Summary of this conversation" in str(prompt)
        # ...and can be forked from it, as a replay does.
        config: RunnableConfig = kept[0].config
        fork = {
            "messages": [customer_message("Forked question", wamid="wamid.fork", kind="text")],
            "run_id": "fork",
            "replies": [],
        }
        forked = await memory.graph.ainvoke(fork, config)  # type: ignore[arg-type]
        assert forked["replies"][0]["text"] == "echo: Forked question"
        assert "And helmets?" not in str(forked["messages"])  # a branch from the kept point
