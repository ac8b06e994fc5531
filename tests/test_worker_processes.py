"""Real `wa-agent worker` processes against one database: order per conversation,
no double answers, and recovery when a worker dies in the middle of a run."""

from __future__ import annotations

import asyncio
import os
import uuid
from pathlib import Path

import pytest

from tests.fakes.graph_api import FakeGraphAPI
from tests.fakes.meta_payloads import envelope, text_message
from tests.fakes.openai_server import FakeOpenAIServer
from tests.support import (
    eventually,
    nice_of,
    query,
    running_service,
    service_settings,
    spawn_worker,
    stop_process,
)

pytestmark = pytest.mark.slow


def settings_for(db_url: str, graph_api: FakeGraphAPI, openai: FakeOpenAIServer, **extra: object):  # type: ignore[no-untyped-def]
    return service_settings(
        db_url,
        whatsapp_api_base_url=graph_api.base_url,
        openai_api_key="sk-test",
        openai_base_url=openai.base_url + "/v1",
        **extra,
    )


@pytest.mark.timeout(240)
async def test_a_worker_killed_mid_run_is_recovered_and_answers_once(
    db_url: str, graph_api: FakeGraphAPI, openai_server: FakeOpenAIServer
) -> None:
    customer = "25078" + str(uuid.uuid4().int)[:7]
    settings = settings_for(
        db_url,
        graph_api,
        openai_server,
        worker_heartbeat_seconds=1.0,
        stalled_job_seconds=4.0,
        model_timeout_seconds=60.0,
    )
    openai_server.hold()  # the model "thinks" until released
    first = spawn_worker(settings)
    try:
        async with running_service(settings, with_worker=False) as service:
            await service.post_webhook(envelope(text_message(customer, "where is my order?")))
            await asyncio.to_thread(openai_server.wait_for_requests, 1, 30.0)
            stop_process(first, kill=True)  # SIGKILL while the model call is in flight
            openai_server.release()
            second = spawn_worker(settings)
            try:
                await graph_api.wait_for_async(
                    lambda: len(graph_api.sent_to(customer)) >= 1, 120, what="the retried reply"
                )
                await asyncio.sleep(1.0)  # room for a duplicate to show up, were there one
            except AssertionError as timeout:
                stop_process(second)
                state = await service.fetch(
                    "SELECT r.status, r.attempts, j.status AS job, j.attempts AS job_attempts"
                    " FROM conversation_runs r LEFT JOIN procrastinate_jobs j ON j.id = r.job_id"
                )
                outbox = await service.fetch(
                    "SELECT status, kind, payload, error_title FROM outbound_messages"
                )
                seen = [r.get("messages", [])[-1:] for r in openai_server.requests]
                log = second.stderr.read().decode()[-3000:] if second.stderr else ""
                raise AssertionError(
                    f"{timeout}\nruns/jobs: {state}\noutbox: {outbox}\n"
                    f"model requests (last message each): {seen}\nworker log:\n{log}"
                ) from None
            finally:
                stop_process(second)
            runs = await service.fetch("SELECT status, attempts FROM conversation_runs")
    finally:
        openai_server.release()
        stop_process(first, kill=True)
    assert graph_api.texts_to(customer) == ["echo: where is my order?"]
    assert runs == [{"status": "done", "attempts": 2}]


async def test_two_workers_answer_fifty_conversations_in_order_and_once(
    db_url: str, graph_api: FakeGraphAPI, openai_server: FakeOpenAIServer
) -> None:
    settings = settings_for(db_url, graph_api, openai_server, worker_concurrency=8)
    customers = [f"2547{index:08d}" for index in range(50)]
    workers = [spawn_worker(settings), spawn_worker(settings)]
    try:
        async with running_service(settings, with_worker=False) as service:
            for turn in range(3):
                await asyncio.gather(
                    *(
                        service.post_webhook(envelope(text_message(c, f"turn {turn}")))
                        for c in customers
                    )
                )

            async def all_answered() -> bool:
                rows = await query(
                    db_url,
                    "SELECT count(*) AS n FROM inbound_messages WHERE processed_at IS NOT NULL",
                )
                return rows[0]["n"] == 150

            await eventually(all_answered, within=90, what="150 answered messages")
            workers_used = await query(
                db_url, "SELECT count(DISTINCT worker) AS n FROM conversation_runs"
            )
    finally:
        for worker in workers:
            stop_process(worker)
    assert workers_used[0]["n"] == 2
    for customer in customers:
        seen = " | ".join(graph_api.texts_to(customer))
        # Every turn answered exactly once, in order (coalesced turns share one echo).
        assert seen.replace("echo: ", "") == "turn 0 | turn 1 | turn 2", customer
    assert all(p.returncode == 0 for p in workers), [p.stderr.read() for p in workers if p.stderr]


@pytest.mark.parametrize("nice", [19, 0])
async def test_a_worker_yields_the_cpu_to_the_webhook(
    db_url: str, graph_api: FakeGraphAPI, openai_server: FakeOpenAIServer, nice: int
) -> None:
    """`top` shows the worker at the configured nice (WA_AGENT_WORKER_NICE, default 19),
    and — leading its own session, as under systemd — its scheduling group too; the
    webhook process (this one here) keeps its priority. 0 leaves the worker alone."""
    base = os.getpriority(os.PRIO_PROCESS, 0)
    worker = spawn_worker(settings_for(db_url, graph_api, openai_server, worker_nice=nice))
    try:
        await eventually(
            lambda: _registered_workers(db_url), within=60, what="the worker registered"
        )
        assert nice_of(worker.pid) == base + nice
        assert f"nice {nice}" in _autogroup_of(worker.pid)
        assert os.getpriority(os.PRIO_PROCESS, 0) == base
    finally:
        stop_process(worker)


async def _registered_workers(db_url: str) -> bool:
    rows = await query(db_url, "SELECT count(*) AS n FROM procrastinate_workers")
    return int(rows[0]["n"]) > 0


def _autogroup_of(pid: int) -> str:
    return Path(f"/proc/{pid}/autogroup").read_text()
