"""Streaming figures.

1. Partial delivery: a 1,000-token answer (ten paragraphs) from a fake model writing
   50 tokens/s, sent to WhatsApp with the `partial_delivery` flag on and off. Measured
   from the webhook POST to the fake Graph API receiving the first part and the last
   one. Goal: the first part in under 30% of the time to the full answer.
2. SSE time to first token: the model's own time to first token (ChatOpenAI streaming
   straight from the fake) against `POST /v1/conversations/{id}/stream` to its first
   `token` event. The difference is what the service adds before the first token
   reaches the browser: auth, the conversation lock, the graph's steps before the agent
   (memory recall, router, checkpoints) and the SSE relay; the relay alone is measured
   from the fake model writing its answer to the client reading the token event.
   Goal: under 20 ms.

    .venv/bin/python -m tests.bench.bench_streaming [--runs 2] [--sse-runs 30]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
import uuid
from typing import Any

import httpx
from httpx_sse import aconnect_sse
from langchain_openai import ChatOpenAI

from tests.bench.common import bench_postgres, ms, percentile, print_header, print_table
from tests.bench.common import tune_benchmark_process as tune
from tests.fakes.graph_api import FakeGraphAPI
from tests.fakes.meta_payloads import envelope, text_message
from tests.fakes.openai_server import FakeOpenAIServer
from tests.support import RunningService, running_service, service_settings

TOKENS_PER_SECOND = 50
PARAGRAPHS = 10
ANSWER = "\n\n".join(
    " ".join(f"w{p}x{i}" for i in range(1000 // PARAGRAPHS)) for p in range(PARAGRAPHS)
)  # 1,000 words; the fake streams one word per chunk
ADMIN = "bench-admin-token-0123456789abcdef"


def settings_for(db_url: str, graph_api: FakeGraphAPI, openai: FakeOpenAIServer, flag: bool) -> Any:
    return service_settings(
        db_url,
        whatsapp_api_base_url=graph_api.base_url,
        openai_api_key="sk-test",
        openai_base_url=openai.base_url + "/v1",
        admin_token=ADMIN,
        flags=frozenset({"partial_delivery" if flag else "-partial_delivery"}),
        # Thirty-odd SSE turns a minute on one conversation is the benchmark, not abuse:
        # the default 20 a minute would refuse them.
        rate_limits=((1000, 60),),
    )


async def one_long_answer(
    service: RunningService, graph_api: FakeGraphAPI, openai: FakeOpenAIServer
) -> tuple[float, float, int]:
    """(seconds to the first part, seconds to the whole answer, parts)."""
    customer = "2507" + str(uuid.uuid4().int)[:8]
    openai.script(ANSWER)
    started = time.perf_counter()
    await service.post_webhook(envelope(text_message(customer, "I want to book a bike")))
    await graph_api.wait_for_async(
        lambda: "\n\n".join(graph_api.texts_to(customer)) == ANSWER, within=120
    )
    received = [message["received_at"] for message in graph_api.sent_to(customer)]
    return received[0] - started, received[-1] - started, len(received)


async def partial_delivery_figures(runs: int) -> None:
    rows = []
    with FakeGraphAPI() as graph_api, FakeOpenAIServer() as openai:
        async with bench_postgres() as pg:
            for flag in (True, False):
                settings = settings_for(await pg.fresh_database(), graph_api, openai, flag)
                async with running_service(settings) as service:
                    # Streamed, the answer takes 20 s to write; unstreamed (flag off, no
                    # streaming callback) the model answers after the same 20 s.
                    openai.stream_interval = 1 / TOKENS_PER_SECOND if flag else 0.0
                    openai.delay = 0.0 if flag else 1000 / TOKENS_PER_SECOND
                    for _ in range(runs if flag else 1):
                        first, full, parts = await one_long_answer(service, graph_api, openai)
                        share = f"{100 * first / full:.1f}%"
                        rows.append(
                            ("on" if flag else "off", parts, f"{first:.2f}", f"{full:.2f}", share)
                        )
    print("1. partial delivery: 1,000 tokens at 50 tokens/s, ten paragraphs")
    print_table(["flag", "parts", "first part s", "full answer s", "first/full"], rows)


async def direct_first_token(openai: FakeOpenAIServer) -> float:
    model = ChatOpenAI(base_url=openai.base_url + "/v1", api_key="sk-test", model="gpt-4o-mini")
    openai.script("Hello there, this is the answer.")
    started = time.perf_counter()
    async for chunk in model.astream("hi"):
        if chunk.text:
            return time.perf_counter() - started
    raise RuntimeError("no token")


async def sse_first_token(
    client: httpx.AsyncClient, conversation: dict[str, str], openai: Any
) -> dict[str, float]:
    """Seconds from the POST to each kind of event's first arrival."""
    openai.script("Hello there, this is the answer.")
    seen: dict[str, float] = {}
    started = time.perf_counter()
    async with aconnect_sse(
        client,
        "POST",
        f"/v1/conversations/{conversation['conversation_id']}/stream",
        json={"text": "and on Sunday?"},
        headers={"Authorization": f"Bearer {conversation['token']}"},
    ) as source:
        async for event in source.aiter_sse():
            seen.setdefault(event.event, time.perf_counter() - started)
            if event.event == "token" and "relay" not in seen:
                # The fake wrote the whole (short) answer in one go, just before.
                seen["relay"] = time.perf_counter() - openai.streams_done[-1]
            if event.event in ("final", "error"):
                assert event.event == "final", json.loads(event.data)
                return seen
    raise RuntimeError("the stream ended without a final event")


async def sse_figures(runs: int) -> None:
    with FakeGraphAPI() as graph_api, FakeOpenAIServer() as openai:
        async with bench_postgres() as pg:
            settings = settings_for(await pg.fresh_database(), graph_api, openai, False)
            async with running_service(settings) as service:
                async with httpx.AsyncClient(base_url=service.base_url, timeout=30) as client:
                    created = await client.post(
                        "/v1/conversations", json={}, headers={"Authorization": f"Bearer {ADMIN}"}
                    )
                conversation: dict[str, str] = created.json()
                direct: list[float] = []
                streamed: list[dict[str, float]] = []
                async with httpx.AsyncClient(base_url=service.base_url, timeout=30) as client:
                    for _ in range(3):  # warm-up: connections, caches
                        await direct_first_token(openai)
                        await sse_first_token(client, conversation, openai)
                    for _ in range(runs):
                        direct.append(await direct_first_token(openai))
                        streamed.append(await sse_first_token(client, conversation, openai))
    table = [("model alone (ChatOpenAI): first token", *_p50_p95(direct))]
    for kind in ("started", "agent", "token", "final"):
        table.append((f"POST .../stream: event {kind}", *_p50_p95([s[kind] for s in streamed])))
    overhead = percentile([s["token"] for s in streamed], 50) - percentile(direct, 50)
    table.append(("overhead to first token (p50 - p50)", ms(overhead), ""))
    relay = _p50_p95([s["relay"] for s in streamed])
    table.append(("relay: model's answer sent -> token event read", *relay))
    print(f"2. time to first token, {runs} turns on one conversation (history grows)")
    print_table(["path", "p50 ms", "p95 ms"], table)


def _p50_p95(samples: list[float]) -> tuple[str, str]:
    return ms(percentile(samples, 50)), ms(percentile(samples, 95))


async def main(runs: int, sse_runs: int) -> None:
    print_header(
        "Streaming: WhatsApp partial delivery and SSE time to first token",
        ["service in this process (uvicorn, port 0); fake OpenAI and Graph API in threads"],
    )
    await partial_delivery_figures(runs)
    await sse_figures(sse_runs)
    print("load average at end: " + " ".join(f"{x:.2f}" for x in os.getloadavg()))


if __name__ == "__main__":
    tune()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--sse-runs", type=int, default=30)
    arguments = parser.parse_args()
    asyncio.run(main(arguments.runs, arguments.sse_runs))
