"""LangGraph Studio's server: `langgraph dev` loads `langgraph.json`, shows the service's
graph shape, and runs a conversation thread through the production graph — a tool call
goes through the service's tool wrapper and is recorded as the service records it —
read back with langgraph-sdk the way Studio does (state, checkpoint history)."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest
from langgraph_sdk import get_client

from tests.fakes.openai_server import FakeOpenAIServer, ToolCall
from tests.support import REPO

LANGGRAPH = Path(sys.executable).parent / "langgraph"
API_LINE = re.compile(r"API: .*?(http://127\.0\.0\.1:\d+)")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def dev_server(openai_server: FakeOpenAIServer, db_url: str, tmp_path: Path) -> Iterator[str]:
    """`langgraph dev` offline, on a free port; yields the URL it really listens on (it
    moves to another port, silently, when the one asked for is taken)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WA_AGENT", "OPENAI"))}
    env |= {
        "OPENAI_API_KEY": "sk-test",
        "OPENAI_BASE_URL": openai_server.base_url + "/v1",
        "LANGSMITH_TRACING": "false",
        "DATABASE_URL": db_url,
        "WA_AGENT_DATA_DIR": str(tmp_path),
        "NO_COLOR": "1",
    }
    command = [str(LANGGRAPH), "dev", "--no-browser", "--no-reload", "--allow-blocking"]
    command += ["--host", "127.0.0.1"]
    process = subprocess.Popen(
        [*command, "--port", str(_free_port())],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    output: list[str] = []
    reader = threading.Thread(target=lambda: output.extend(process.stdout or []), daemon=True)
    reader.start()
    try:
        yield _wait_until_up(process, output)
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


def _wait_until_up(process: subprocess.Popen[str], output: list[str]) -> str:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError("langgraph dev exited:\n" + "".join(output)[-3000:])
        found = API_LINE.search("".join(output))
        if found:
            try:
                if httpx.get(found.group(1) + "/ok", timeout=2).status_code == 200:
                    return found.group(1)
            except httpx.HTTPError:
                pass
        time.sleep(0.2)
    raise AssertionError("langgraph dev did not come up:\n" + "".join(output)[-3000:])


async def test_a_thread_runs_through_the_graph_in_the_dev_server(
    dev_server: str, openai_server: FakeOpenAIServer, db_url: str
) -> None:
    client = get_client(url=dev_server)
    assistants = await client.assistants.search(graph_id="wa_agent")
    assert len(assistants) == 1
    shape = await client.assistants.get_graph(assistants[0]["assistant_id"])
    nodes = {node["id"] for node in shape["nodes"]}
    assert {"recall_memories", "summarize", "router", "agent_booking", "tools"} <= nodes

    thread = await client.threads.create()
    customer = {"wa_id": "250788000111", "conversation_id": thread["thread_id"]}
    openai_server.script(
        ToolCall("search_catalog", {"query": "city bike"}),
        "Hello from Studio: the city bike is free on Saturday.",
    )
    turn = {"messages": [{"role": "human", "content": "I want to book a city bike"}]}
    result = await client.runs.wait(thread["thread_id"], "wa_agent", input=turn, context=customer)
    assert isinstance(result, dict), result
    assert result["replies"] == [
        {"kind": "text", "text": "Hello from Studio: the city bike is free on Saturday."}
    ]
    assert await _tool_calls_recorded(db_url, thread["thread_id"]) == ["search_catalog"]

    state = await client.threads.get_state(thread["thread_id"])
    assert state["values"]["active_agent"] == "booking"
    assert state["values"]["route"]["intent"] == "booking"
    history = await client.threads.get_history(thread["thread_id"])
    stepped = [step for checkpoint in history for step in checkpoint["next"]]
    assert {"router", "agent_booking"} <= set(stepped)  # Studio steps node by node


async def _tool_calls_recorded(db_url: str, conversation_id: str) -> list[str]:
    """The tools the service's registry recorded for the conversation (written a moment
    after the call, by the recorder's writer)."""
    deadline = time.monotonic() + 10
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        while True:
            cursor = await conn.execute(
                "SELECT tool FROM agent_tool_executions WHERE conversation_id = %s AND success",
                (conversation_id,),
            )
            tools = [row[0] for row in await cursor.fetchall()]
            if tools or time.monotonic() > deadline:
                return tools
            await asyncio.sleep(0.2)
