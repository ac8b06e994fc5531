"""What the multi-agent graph costs per turn, with a zero-latency model.

1. Overhead: a turn through router + specialist + one tool call (two model calls),
   against the backbone's single-agent turn (one model call), both on the real
   AsyncPostgresSaver; reported as p50/p95 and as a ratio (goal: under 1.3x).
2. Cost: a 10-turn scripted conversation — LLM calls and prompt tokens per turn (goal:
   one LLM call per plain turn, at most 2,000 prompt tokens). Prompt tokens are
   estimated as characters / 4 over everything sent (system prompt, history and tool
   schemas): tiktoken's encodings cannot be downloaded here.

    .venv/bin/python -m tests.bench.bench_agent_turns [--turns 60]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import SystemMessage
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from langgraph.graph import END, START, StateGraph

from graph.composition.agent_configs import load_default_agents
from graph.composition.builder import ConversationGraph, build_graph
from graph.composition.prompts import Prompts, load_prompts
from graph.composition.routing import build_router
from graph.context import ConversationContext
from graph.infra.chat_models import ChatModels, build_chat_model
from graph.infra.database import open_pool
from graph.infra.embeddings import build_embeddings
from graph.settings import Settings
from graph.state import ConversationState, customer_message, text_reply
from tests.bench.common import (
    bench_postgres,
    demo_business_tools,
    ms,
    percentile,
    print_header,
    print_table,
)
from tests.bench.common import tune_benchmark_process as tune
from tests.fakes.openai_server import FakeOpenAIServer, ToolCall
from tools import seed_demo

CUSTOMER = "250788000123"
SCRIPTED_CONVERSATION: list[tuple[str, list[Any]]] = [
    ("Hi, what are your opening hours?", ["We are open 8:00-18:00, Monday to Saturday."]),
    ("thanks", ["You're welcome!"]),
    (
        "how much does a helmet cost?",
        [ToolCall("search_catalog", {"query": "helmet"}), "8,000 RWF."],
    ),
    ("ok", ["Anything else?"]),
    (
        "do you have city bikes for rent?",
        [ToolCall("search_catalog", {"query": "city bike"}), "Yes."],
    ),
    ("and mountain bikes?", ["Yes, 15,000 RWF a day."]),
    ("my brakes are squeaking", ["Clean the rims; if it goes on, come by the workshop."]),
    ("ok I will try", ["Good luck!"]),
    ("can I pay by mobile money?", ["Yes, we accept MTN MoMo."]),
    ("great, bye", ["Bye!"]),
]


def single_agent_graph(model: BaseChatModel, prompts: Prompts, saver: Any) -> Any:
    """The backbone's walking skeleton: one node, one model call, the reply."""

    async def answer(state: ConversationState) -> dict[str, Any]:
        response = await model.ainvoke([SystemMessage(prompts.assistant), *state["messages"]])
        return {"messages": [response], "replies": [text_reply(response.text)]}

    builder = StateGraph(ConversationState)
    builder.add_node("agent", answer)
    builder.add_edge(START, "agent")
    builder.add_edge("agent", END)
    return builder.compile(checkpointer=saver)


async def timed_turns(invoke: Callable[[str], Awaitable[Any]], turns: int) -> list[float]:
    samples = []
    for _ in range(turns):
        thread = str(uuid.uuid4())
        started = time.perf_counter()
        await invoke(thread)
        samples.append(time.perf_counter() - started)
    return samples


def turn_input(text: str) -> ConversationState:
    message = customer_message(text, wamid=f"wamid.{uuid.uuid4().hex}", kind="text")
    return {"messages": [message], "run_id": str(uuid.uuid4()), "replies": []}


def estimated_prompt_tokens(request: dict[str, Any]) -> int:
    sent = json.dumps(request.get("messages", [])) + json.dumps(request.get("tools", []))
    return len(sent) // 4


async def measure_overhead(
    single: Any, multi: ConversationGraph, fake: FakeOpenAIServer, turns: int
) -> list[list[object]]:
    context = ConversationContext(wa_id=CUSTOMER)
    text = "how much does a helmet cost?"

    async def single_turn(thread: str) -> None:
        await single.ainvoke(turn_input(text), {"configurable": {"thread_id": thread}})

    async def multi_turn(thread: str) -> None:
        fake.script(ToolCall("search_catalog", {"query": "helmet"}), "8,000 RWF.")
        config = {"configurable": {"thread_id": thread}}
        await multi.ainvoke(turn_input(text), config, context=context)  # type: ignore[arg-type]

    async def plain_turn(thread: str) -> None:
        fake.script("8,000 RWF.")
        config = {"configurable": {"thread_id": thread}}
        await multi.ainvoke(turn_input(text), config, context=context)  # type: ignore[arg-type]

    await timed_turns(single_turn, 5)  # warm-up: connections, caches
    await timed_turns(multi_turn, 5)
    baseline = await timed_turns(single_turn, turns)
    plain = await timed_turns(plain_turn, turns)
    agents = await timed_turns(multi_turn, turns)
    ratio = percentile(agents, 50) / percentile(baseline, 50)
    plain_ratio = percentile(plain, 50) / percentile(baseline, 50)
    return [
        [
            "single agent (1 model call)",
            ms(percentile(baseline, 50)),
            ms(percentile(baseline, 95)),
            "1.00",
        ],
        [
            "router+specialist (1 call)",
            ms(percentile(plain, 50)),
            ms(percentile(plain, 95)),
            f"{plain_ratio:.2f}",
        ],
        [
            "router+specialist+tool (2 calls)",
            ms(percentile(agents, 50)),
            ms(percentile(agents, 95)),
            f"{ratio:.2f}",
        ],
    ]


async def measure_conversation(
    multi: ConversationGraph, fake: FakeOpenAIServer
) -> list[list[object]]:
    config = {"configurable": {"thread_id": str(uuid.uuid4())}}
    context = ConversationContext(wa_id=CUSTOMER)
    rows: list[list[object]] = []
    for number, (text, script) in enumerate(SCRIPTED_CONVERSATION, start=1):
        fake.script(*script)
        before = len(fake.requests)
        result = await multi.ainvoke(turn_input(text), config, context=context)  # type: ignore[arg-type]
        requests = fake.requests[before:]
        tokens = [estimated_prompt_tokens(r) for r in requests]
        tool_turn = any(isinstance(step, ToolCall) for step in script)
        rows.append(
            [
                number,
                text[:32],
                "tool" if tool_turn else "plain",
                result["route"]["method"],
                len(requests),
                max(tokens, default=0),
                sum(tokens),
            ]
        )
    return rows


async def run(turns: int) -> None:
    tune()
    print_header(
        "Multi-agent turn: overhead and cost per turn (zero-latency fake model)",
        ["graphs invoked in this process; fake OpenAI server in a thread; embedded Postgres"],
    )
    with FakeOpenAIServer() as fake:
        async with bench_postgres() as pg:
            db_url = await pg.fresh_database("agents")
            settings = Settings(  # type: ignore[call-arg]
                _env_file=None,
                database_url=db_url,
                openai_api_key="sk-test",
                openai_base_url=fake.base_url + "/v1",
                log_level="WARNING",
            )
            async with open_pool(db_url, settings) as pool:
                await seed_demo(pool)
                model = build_chat_model(settings)
                assert model is not None
                prompts = load_prompts(settings.business_name)
                tools = demo_business_tools(pool)
                multi = build_graph(
                    model,
                    prompts,
                    router=await build_router(settings, build_embeddings(settings), model),
                    agents=load_default_agents(settings.business_name),
                    tools=list(tools.values()),
                    chat_model_for=ChatModels(settings, model).for_agent,
                    checkpointer=AsyncPostgresSaver(pool),  # type: ignore[arg-type]
                )
                single = single_agent_graph(model, prompts, AsyncPostgresSaver(pool))  # type: ignore[arg-type]
                overhead = await measure_overhead(single, multi, fake, turns)
                conversation = await measure_conversation(multi, fake)
    print(f"Overhead per turn ({turns} turns each, new conversation per turn)")
    print_table(["turn kind", "p50 ms", "p95 ms", "ratio to single (p50)"], overhead)
    print("10-turn scripted conversation (prompt tokens estimated as characters / 4)")
    print_table(
        ["#", "customer", "kind", "route", "LLM calls", "max prompt tok", "sum prompt tok"],
        conversation,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--turns", type=int, default=60)
    asyncio.run(run(parser.parse_args().turns))


if __name__ == "__main__":
    main()
