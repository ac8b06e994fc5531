"""Accounting overhead per model call: what metering adds to the reply's hot path.

    .venv/bin/python -m tests.bench.bench_accounting [--calls 5000] [--records 20000]

Part 1: the handler alone — `on_chat_model_start` + `on_llm_end` with a realistic
result (usage, model name), i.e. the measuring, pricing, Prometheus and the hand-off
to the writer's backlog.
Part 2: a chat-model call through LangChain with and without the handler attached
(an in-process model that answers instantly with usage, so the difference is the
callback machinery plus the handler, not the network).
Part 3 (off the hot path): the writer's batched INSERT into Postgres, records/s.
Goal: under 1 ms per model call on the hot path.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult, LLMResult

from graph.infra.database import open_pool
from graph.infra.usage_meter import AccountingHandler, ModelCall, PriceTable
from graph.settings.console import DEFAULT_MODEL_PRICES
from server.runner.accounting import AccountingWriter
from tests.bench.common import (
    bench_postgres,
    measuring,
    percentile,
    print_header,
    print_table,
    tune_benchmark_process,
)
from tests.support import service_settings

GOAL_MS = 1.0
METADATA = {
    "conversation_id": str(uuid.uuid4()),
    "run_id": str(uuid.uuid4()),
    "langgraph_node": "agent_booking",
}


def reply() -> AIMessage:
    return AIMessage(
        content="Saturday at 9 works.",
        usage_metadata={
            "input_tokens": 812,
            "output_tokens": 24,
            "total_tokens": 836,
            "input_token_details": {"cache_read": 256},
        },
        response_metadata={"model_name": "gpt-4o-mini-2024-07-18"},
    )


class InstantModel(BaseChatModel):
    """Answers at once, with usage, like a provider would (minus the network)."""

    @property
    def _llm_type(self) -> str:
        return "instant"

    def _generate(self, messages: list[BaseMessage], *a: Any, **k: Any) -> ChatResult:
        return ChatResult(generations=[ChatGeneration(message=reply())])

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        return ChatResult(generations=[ChatGeneration(message=reply())])


def handler_with_sink() -> tuple[AccountingHandler, list[Any]]:
    kept: list[Any] = []
    return AccountingHandler(PriceTable(DEFAULT_MODEL_PRICES), kept.append), kept


async def time_handler(calls: int) -> list[float]:
    handler, kept = handler_with_sink()
    result = LLMResult(generations=[[ChatGeneration(message=reply())]])
    samples = []
    for _ in range(calls):
        run_id = uuid.uuid4()
        started = time.perf_counter()
        await handler.on_chat_model_start(
            {}, [[]], run_id=run_id, metadata=METADATA, invocation_params={"model": "gpt-4o-mini"}
        )
        await handler.on_llm_end(result, run_id=run_id)
        samples.append(time.perf_counter() - started)
    assert len(kept) == calls
    return samples


async def time_invocations(calls: int, metered: bool) -> list[float]:
    model = InstantModel()
    handler, _ = handler_with_sink()
    config: dict[str, Any] = {"metadata": METADATA}
    if metered:
        config["callbacks"] = [handler]
    samples = []
    for _ in range(calls):
        started = time.perf_counter()
        await model.ainvoke("hello", config=config)  # type: ignore[arg-type]
        samples.append(time.perf_counter() - started)
    return samples


async def time_writer(records: int) -> tuple[float, int]:
    async with bench_postgres() as postgres:
        url = await postgres.fresh_database("bench_accounting")
        async with open_pool(url, service_settings(url)) as pool:
            writer = AccountingWriter(pool, flush_seconds=60, max_backlog=records + 1)
            call = ModelCall(
                None,
                None,
                "booking",
                "agent_booking",
                "gpt-4o-mini",
                812,
                24,
                256,
                0.0002,
                900.0,
                True,
            )
            started = time.perf_counter()
            written = 0
            for start in range(0, records, 1000):
                for _ in range(min(1000, records - start)):
                    writer.put(call)
                written += await writer.flush()
            return time.perf_counter() - started, written


def row(name: str, samples: list[float]) -> list[str]:
    return [
        name,
        str(len(samples)),
        f"{percentile(samples, 50) * 1e6:.0f}",
        f"{percentile(samples, 95) * 1e6:.0f}",
        f"{percentile(samples, 99) * 1e6:.0f}",
        f"{sum(samples) / len(samples) * 1e6:.0f}",
    ]


async def main_async(calls: int, records: int) -> None:
    print_header(
        "Accounting overhead per model call"
        " (graph/infra/usage_meter.py, server/runner/accounting.py)",
        ["in-process: the handler, LangChain's callback manager, an instant chat model"],
    )
    await time_handler(200)  # warm-up: imports, Prometheus label children, price lookup
    await time_invocations(200, True)
    await time_invocations(200, False)
    with measuring():
        handler = await time_handler(calls)
        plain = await time_invocations(calls, False)
        metered = await time_invocations(calls, True)
    headers = ["what", "calls", "p50 µs", "p95 µs", "p99 µs", "mean µs"]
    print_table(
        headers,
        [
            row("handler alone (start + end)", handler),
            row("ainvoke without accounting", plain),
            row("ainvoke with accounting", metered),
        ],
    )
    added_p50 = percentile(metered, 50) - percentile(plain, 50)
    added_mean = (sum(metered) - sum(plain)) / calls
    print(
        f"added per model call: p50 {added_p50 * 1e6:.0f} µs, mean {added_mean * 1e6:.0f} µs"
        f" (goal < {GOAL_MS:.0f} ms: {'met' if added_mean * 1000 < GOAL_MS else 'NOT met'})"
    )
    seconds, written = await time_writer(records)
    print(
        f"writer (off the hot path): {written} rows in {seconds:.2f} s,"
        f" {written / seconds:,.0f} rows/s in batches of 1,000\n"
    )


def main() -> None:
    tune_benchmark_process()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=5000)
    parser.add_argument("--records", type=int, default=20000)
    args = parser.parse_args()
    asyncio.run(main_async(args.calls, args.records))


if __name__ == "__main__":
    main()
