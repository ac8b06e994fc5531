"""`wa-agent serve` as a newcomer runs it: the webhook in one process, one worker process
per core beside it, a dead worker started again, everything gone when serve stops."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import httpx
import pytest

from tests.fakes.graph_api import FakeGraphAPI
from tests.fakes.meta_payloads import envelope, text_message
from tests.faults.outages import free_port
from tests.support import (
    answers_ready,
    eventually,
    nice_of,
    service_env,
    service_settings,
    start_serve,
)
from tests.support_abuse import post

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if int(stat[1]) == pid:
                found.append(int(entry.name))
    return found


async def _post(base: str, wa_id: str, text: str) -> int:
    async with httpx.AsyncClient(base_url=base, timeout=5) as client:
        return (await post(client, envelope(text_message(wa_id, text)))).status_code


def _any_alive(pids: list[int]) -> bool:
    return any(Path(f"/proc/{pid}").exists() for pid in pids)


async def test_serve_runs_a_worker_per_core_and_keeps_them_running(
    db_url: str, graph_api: FakeGraphAPI
) -> None:
    port = free_port()
    settings = service_settings(db_url, whatsapp_api_base_url=graph_api.base_url)
    env = {
        **service_env(settings),
        "PORT": str(port),
        "WA_AGENT_WORKER_PROCESSES": "2",
        "WA_AGENT_WORKER_NICE": "7",
    }
    base_nice = os.getpriority(os.PRIO_PROCESS, 0)
    serve = start_serve(env)
    base = f"http://127.0.0.1:{port}"
    try:

        async def two_workers() -> bool:
            return len(_children(serve.pid)) == 2

        await eventually(two_workers, within=60, what="two worker processes")
        first = _children(serve.pid)

        await eventually(lambda: answers_ready(base), within=60, what="serve ready")
        assert await _post(base, "250788700001", "hello") == 200
        await graph_api.wait_for_async(lambda: len(graph_api.sent_to("250788700001")) == 1, 60)
        assert os.getpid() not in first and serve.pid not in first
        # The workers yield the CPU as configured; the webhook keeps its priority.
        assert [nice_of(pid) for pid in first] == [base_nice + 7] * 2
        assert nice_of(serve.pid) == base_nice

        os.kill(first[0], signal.SIGKILL)

        async def replaced() -> bool:
            now = _children(serve.pid)
            return len(now) == 2 and first[0] not in now

        await eventually(replaced, within=30, what="the killed worker started again")
        assert await _post(base, "250788700001", "still there?") == 200
        await graph_api.wait_for_async(lambda: len(graph_api.sent_to("250788700001")) == 2, 60)
        workers = _children(serve.pid)
    finally:
        serve.send_signal(signal.SIGTERM)
        await asyncio.to_thread(serve.wait, 30)

    async def all_gone() -> bool:
        return not _any_alive(workers)

    await eventually(all_gone, within=30, what="the workers stopped with serve")
