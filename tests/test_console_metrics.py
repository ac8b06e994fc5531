"""`/metrics` for Prometheus: model tokens, cost and latency per agent after a real turn,
the job queue's depth read from the database at scrape time — at most once per
`WA_AGENT_METRICS_CACHE_S`, so a flood of anonymous scrapes cannot take the pool."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from server.runner.queue_figures import QUEUE_COLLECTOR
from tests.fakes.graph_api import FakeGraphAPI
from tests.fakes.meta_payloads import envelope, text_message
from tests.fakes.openai_server import FakeOpenAIServer
from tests.support import RunningService, eventually, running_service, service_settings


async def scrape(service: RunningService) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    async with httpx.AsyncClient(base_url=service.base_url) as client:
        text = (await client.get("/metrics")).text
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def test_model_usage_per_agent_is_counted(
    db_url: str, graph_api: FakeGraphAPI, openai_server: FakeOpenAIServer
) -> None:
    customer = "2507" + str(uuid.uuid4().int)[:8]
    settings = service_settings(
        db_url,
        whatsapp_api_base_url=graph_api.base_url,
        openai_api_key="sk-test",
        openai_base_url=openai_server.base_url + "/v1",
        metrics_cache_seconds=0,  # each scrape reads the queue's figures afresh
    )
    async with running_service(settings) as service:
        before = await scrape(service)
        openai_server.script("Which day would you like?")
        message = text_message(customer, "I want to book a bike for Saturday")
        assert (await service.post_webhook(envelope(message))).status_code == 200

        async def answered() -> bool:
            return graph_api.texts_to(customer) == ["Which day would you like?"]

        await eventually(answered, what="the reply")
        after = await scrape(service)
    usage = openai_server.usages[0]
    labels = {"agent": "booking", "model": "gpt-4o-mini"}
    for kind, tokens in (("prompt", "prompt_tokens"), ("completion", "completion_tokens")):
        name = "wa_agent_model_tokens_total"
        grown = value(after, name, kind=kind, **labels) - value(before, name, kind=kind, **labels)
        assert grown == usage[tokens]
    cost = value(after, "wa_agent_model_cost_usd_total", **labels) - value(
        before, "wa_agent_model_cost_usd_total", **labels
    )
    assert cost > 0
    # The turn waited for the queue before it started: its wait is in the 5-minute window.
    assert value(after, "wa_agent_turn_wait_seconds", quantile="0.95") >= 0
    assert ("wa_agent_turn_wait_seconds", (("quantile", "0.5"),)) in after
    calls = "wa_agent_model_call_seconds_count"
    assert value(after, calls, agent="booking") - value(before, calls, agent="booking") == 1
    ok = "wa_agent_model_calls_total"
    assert (
        value(after, ok, agent="booking", result="ok")
        - value(before, ok, agent="booking", result="ok")
        == 1
    )


async def test_queue_depth_is_read_at_scrape_time(db_url: str, graph_api: FakeGraphAPI) -> None:
    settings = service_settings(
        db_url, whatsapp_api_base_url=graph_api.base_url, metrics_cache_seconds=0
    )
    async with running_service(settings, with_worker=False) as service:
        empty = await scrape(service)
        assert value(empty, "wa_agent_queue_jobs", task="answer_conversation", status="todo") == 0
        for n in range(3):  # three customers: three waiting jobs, nobody to run them
            customer = f"25078800{n:04d}"
            await service.post_webhook(envelope(text_message(customer, "hello")))
        waiting = await scrape(service)
    assert value(waiting, "wa_agent_queue_jobs", task="answer_conversation", status="todo") == 3
    assert value(waiting, "wa_agent_queue_oldest_waiting_seconds") >= 0
    assert ("wa_agent_queue_oldest_waiting_seconds", ()) in waiting


async def test_a_flood_of_scrapes_reads_the_database_once_and_the_webhook_goes_on(
    db_url: str, graph_api: FakeGraphAPI
) -> None:
    """Sixty scrapes at once against a pool of three connections: one read of the
    queue's figures, every scrape answered, and a customer's message still stored while
    they come in; the figures held are served until they are `metrics_cache_seconds` old."""
    settings = service_settings(
        db_url,
        whatsapp_api_base_url=graph_api.base_url,
        db_pool_max_size=3,
        metrics_cache_seconds=60,
    )
    async with running_service(settings, with_worker=False) as service:
        reads_before = QUEUE_COLLECTOR.refreshes
        async with httpx.AsyncClient(base_url=service.base_url, timeout=30) as client:
            flood = [asyncio.create_task(client.get("/metrics")) for _ in range(60)]
            delivered = await service.post_webhook(envelope(text_message("250788000077", "hello")))
            scrapes = await asyncio.gather(*flood)
        # Whether the one read saw that message's job or not, a second one stored now is
        # not seen until the figures held are `metrics_cache_seconds` old.
        await service.post_webhook(envelope(text_message("250788000078", "hello")))
        waiting = await service.fetch("SELECT count(*) AS n FROM procrastinate_jobs")
        later = await scrape(service)
        reads = QUEUE_COLLECTOR.refreshes - reads_before
    assert delivered.status_code == 200
    assert {response.status_code for response in scrapes} == {200}
    assert reads == 1
    assert waiting[0]["n"] == 2
    held = value(later, "wa_agent_queue_jobs", task="answer_conversation", status="todo")
    assert held in (0, 1)
