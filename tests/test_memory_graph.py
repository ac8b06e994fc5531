"""Memory inside the conversation graph, on real Postgres + pgvector: the token budget
over a long conversation, the running summary, and memories in the prompt (as system
notes after the agent's system prompt and tools, which stay the same from turn to turn).

The model is the local fake OpenAI server: agents echo the customer, summaries echo
their request (so a summary visibly carries the folded messages), extraction replies
are scripted. Routing is the real router, without its LLM step.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from langchain_core.runnables import RunnableConfig

from graph.composition.agent_configs import load_default_agents
from graph.composition.builder import ConversationGraph, build_graph
from graph.composition.memory import ConversationMemory, open_memory
from graph.composition.prompts import load_prompts
from graph.composition.routing import build_router
from graph.context import ConversationContext
from graph.infra.chat_models import build_chat_model
from graph.infra.database import Pool, create_checkpointer, open_pool
from graph.infra.embeddings import build_embeddings
from graph.state import customer_message
from nodes.memory.prompt import MEMORY_HEADING, SUMMARY_HEADING
from nodes.memory.store import NewMemory
from nodes.memory.tokens import TOKENS_PER_MESSAGE, build_token_counter
from tests.fakes.openai_server import FakeOpenAIServer
from tests.support import service_settings


@dataclass
class MemoryGraph:
    graph: ConversationGraph
    memory: ConversationMemory
    pool: Pool

    async def say(self, customer: str, thread: str, text: str) -> dict[str, Any]:
        config: RunnableConfig = {"configurable": {"thread_id": thread}}
        context = ConversationContext(conversation_id=thread, wa_id=customer)
        turn = {
            "messages": [customer_message(text, wamid=f"wamid.{uuid.uuid4().hex}", kind="text")],
            "run_id": str(uuid.uuid4()),
            "replies": [],
        }
        return dict(await self.graph.ainvoke(turn, config, context=context))  # type: ignore[arg-type]

    async def state(self, thread: str) -> dict[str, Any]:
        snapshot = await self.graph.aget_state({"configurable": {"thread_id": thread}})
        return dict(snapshot.values)


def memory_settings(db_url: str, openai: FakeOpenAIServer, **overrides: Any) -> Any:
    return service_settings(
        db_url,
        openai_api_key="sk-test",
        openai_base_url=openai.base_url + "/v1",
        router_llm=False,
        **overrides,
    )


@contextlib.asynccontextmanager
async def memory_graph(
    db_url: str, openai: FakeOpenAIServer, **overrides: Any
) -> AsyncIterator[MemoryGraph]:
    """The production graph and memory wiring, on this test's database."""
    settings = memory_settings(db_url, openai, **overrides)
    model = build_chat_model(settings)
    assert model is not None
    async with (
        open_pool(db_url, settings) as pool,
        open_memory(pool, db_url, settings, model) as memory,
    ):
        graph = build_graph(
            model,
            load_prompts(settings.business_name),
            router=await build_router(settings, build_embeddings(settings), model),
            agents=load_default_agents(settings.business_name),
            checkpointer=create_checkpointer(pool),
            memory=memory.nodes,
        )
        yield MemoryGraph(graph, memory, pool)


def agent_requests(openai: FakeOpenAIServer) -> list[dict[str, Any]]:
    return [request for request in openai.requests if "tools" in request]


def system_notes(request: dict[str, Any]) -> list[str]:
    """The system messages of a request: the agent's prompt first, then any notes."""
    return [str(m["content"]) for m in request["messages"] if m["role"] == "system"]


def history_tokens(request: dict[str, Any]) -> int:
    """Summary + messages of one request to the model, as the budget counts them (the
    agent's system prompt and the profile-name note are not history)."""
    counter = build_token_counter("openai:gpt-4o-mini")
    history = [m for m in request["messages"][1:] if m["role"] != "system"]
    tokens = sum(TOKENS_PER_MESSAGE + counter.count_text(m.get("content") or "") for m in history)
    summary = next((n for n in system_notes(request) if n.startswith(SUMMARY_HEADING)), "")
    return tokens + counter.count_text(summary.split(":\n", 1)[-1]) if summary else tokens


async def test_sixty_turns_stay_under_the_budget_and_the_summary_keeps_early_facts(
    db_url: str, openai_server: FakeOpenAIServer
) -> None:
    customer, thread = "250788000101", str(uuid.uuid4())
    facts = {2: "By the way, I am vegetarian.", 4: "My name is Grace and I live in Kigali."}
    async with memory_graph(db_url, openai_server) as memory:
        for n in range(60):
            text = facts.get(n, f"Question {n}: are city bikes available on day {n} at noon?")
            result = await memory.say(customer, thread, text)
            assert result["replies"][0]["text"].startswith(f"echo: {text}")
        state = await memory.state(thread)

    requests = agent_requests(openai_server)
    assert len(requests) == 60
    sizes = [history_tokens(request) for request in requests]
    assert max(sizes) <= 1500
    assert sizes[-1] > 500  # the budget is used, not starved
    summaries = len(openai_server.requests) - len(requests)
    assert 2 <= summaries <= 8  # folded now and then, not every turn
    assert "vegetarian" in state["summary"]
    texts = [str(m.content) for m in state["messages"]]
    assert not any("vegetarian" in t for t in texts)  # removed from the model's view
    assert texts[-2].startswith("Question 59")
    assert SUMMARY_HEADING not in requests[-1]["messages"][0]["content"]  # a note of its own
    assert any(n.startswith(SUMMARY_HEADING) for n in system_notes(requests[-1]))


async def test_a_failed_summary_removes_nothing_and_the_budget_still_holds(
    db_url: str, openai_server: FakeOpenAIServer
) -> None:
    customer, thread = "250788000102", str(uuid.uuid4())
    async with memory_graph(db_url, openai_server, memory_history_tokens=400) as memory:
        for n in range(6):
            await memory.say(customer, thread, f"Question {n}: " + "long words here " * 12)
        before = await memory.state(thread)
        openai_server.reset()
        openai_server.fail_next(3)  # the summary's call and its two retries
        result = await memory.say(customer, thread, "and the price?")
        state = await memory.state(thread)
    assert "tools" not in openai_server.requests[0]  # it was over budget: a summary was tried
    assert result["replies"][0]["text"] == "echo: and the price?"
    assert len(state["messages"]) == len(before["messages"]) + 2  # nothing removed
    assert state.get("summary") == before.get("summary")
    assert history_tokens(agent_requests(openai_server)[-1]) <= 400


async def test_recalled_memories_reach_only_their_customers_prompt(
    db_url: str, openai_server: FakeOpenAIServer
) -> None:
    grace, other = "250788000103", "250788000104"
    async with memory_graph(db_url, openai_server) as memory:
        long_term = memory.memory.long_term
        assert long_term is not None
        for text, importance in (
            ("The customer is vegetarian.", 0.9),
            ("The customer lives in Kigali, in Kimihurura.", 0.7),
        ):
            vector = await long_term.cache.embed_one(text, scope=grace)
            await long_term.add_or_merge(grace, None, NewMemory(text, "fact", importance), vector)
        await memory.say(grace, str(uuid.uuid4()), "Is there anything vegetarian at your cafe?")
        await memory.say(other, str(uuid.uuid4()), "Is there anything vegetarian at your cafe?")
    grace_request, other_request = agent_requests(openai_server)
    grace_prompt, other_prompt = ("\n".join(system_notes(r)) for r in agent_requests(openai_server))
    assert MEMORY_HEADING in grace_prompt and "The customer is vegetarian." in grace_prompt
    assert MEMORY_HEADING not in other_prompt and "vegetarian." not in other_prompt
    # The memories are a note just before the customer's turn: the agent's system prompt
    # (and the tools the API puts after it) is the same for every customer, so cacheable.
    assert grace_request["messages"][0] == other_request["messages"][0]
    assert grace_request["messages"][-2]["content"].startswith(MEMORY_HEADING)
    assert grace_request["messages"][-1]["content"].startswith("Is there anything vegetarian")


async def test_memory_runs_in_the_routers_step_so_the_agent_waits_for_the_slowest_not_the_sum(
    db_url: str, openai_server: FakeOpenAIServer
) -> None:
    """Recall and the summary do not change who answers: they run beside the router, and
    the agent, one step later, reads what all three wrote (the test above: memories
    still reach the prompt)."""
    async with memory_graph(db_url, openai_server) as memory:
        thread, customer = str(uuid.uuid4()), "250788000105"
        config: RunnableConfig = {"configurable": {"thread_id": thread}}
        turn = {
            "messages": [customer_message("Hello there", wamid="wamid.step-1", kind="text")],
            "run_id": str(uuid.uuid4()),
            "replies": [],
        }
        context = ConversationContext(conversation_id=thread, wa_id=customer)
        steps: dict[str, int] = {}
        async for event in memory.graph.astream(
            turn,  # type: ignore[arg-type]
            config,
            context=context,
            stream_mode="debug",
        ):
            if event["type"] == "task":
                steps[event["payload"]["name"]] = event["step"]
    assert steps["recall_memories"] == steps["summarize"] == steps["router"]
    assert steps["agent_customer_service"] == steps["router"] + 1
