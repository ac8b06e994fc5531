"""The daily token budget: tokens are counted per turn wherever the model is called, and
a customer past the budget hears so once a day, without another model call."""

from __future__ import annotations

import asyncio
from typing import Any, TypedDict

import pytest
from langchain_core.messages import HumanMessage
from langchain_openai import ChatOpenAI
from langgraph.graph import END, START, StateGraph

from server.abuse.usage import metered_usage
from tests.fakes.graph_api import FakeGraphAPI
from tests.fakes.openai_server import FakeOpenAIServer
from tests.support import running_service
from tests.support_abuse import (
    BUDGET,
    abuse_settings,
    graph_runs_for,
    kinds,
    new_customer,
    send_and_settle,
    shared_redis_url,
    unique_prefix,
)


class _State(TypedDict):
    question: str
    answer: str


def _two_node_graph(model: ChatOpenAI) -> Any:
    """Two model calls in two nodes, as a router plus an agent would make them."""

    async def route(state: _State) -> dict[str, str]:
        await model.ainvoke([HumanMessage(state["question"])])
        return {}

    async def answer(state: _State) -> dict[str, str]:
        reply = await model.ainvoke([HumanMessage(state["question"])])
        return {"answer": str(reply.content)}

    builder = StateGraph(_State)
    builder.add_node("route", route)
    builder.add_node("answer", answer)
    builder.add_edge(START, "route")
    builder.add_edge("route", "answer")
    builder.add_edge("answer", END)
    return builder.compile()


async def test_tokens_of_every_model_call_in_a_turn_are_counted(
    openai_server: FakeOpenAIServer,
) -> None:
    model = ChatOpenAI(
        model="gpt-4o-mini", api_key="sk-test", base_url=openai_server.base_url + "/v1"
    )  # type: ignore[arg-type]
    graph = _two_node_graph(model)

    async def turn(question: str) -> int:
        with metered_usage() as usage:
            await graph.ainvoke({"question": question, "answer": ""})
        return usage.total_tokens

    questions = ("hi", "tell me everything " * 40)
    counted = await asyncio.gather(*(turn(question) for question in questions))
    await model.ainvoke([HumanMessage("outside any turn")])  # counted by nobody

    def cost(question: str) -> int:  # the fake server's estimate: ~4 characters a token
        return len(question) // 4 + 1 + len("echo: " + question) // 4 + 1

    assert len(openai_server.requests) == 5
    assert counted == [2 * cost(question) for question in questions]


async def test_past_the_budget_one_notice_a_day_and_no_model_call(
    db_url: str, graph_api: FakeGraphAPI, openai_server: FakeOpenAIServer
) -> None:
    spender, other = new_customer(), new_customer()
    settings = abuse_settings(db_url, graph_api, openai_server, daily_token_budget=500)
    async with running_service(settings) as service:
        await send_and_settle(service, spender, "first question")
        await service.services.abuse.limiter.add_tokens(spender, 600)  # what the turn cost
        await send_and_settle(service, spender, "second question")
        await send_and_settle(service, spender, "third question")
        await send_and_settle(service, other, "hello")
        refused = await service.fetch("SELECT id FROM conversation_runs WHERE gate = 'over_budget'")
        refused_graph_runs = await graph_runs_for(service, [row["id"] for row in refused])
    texts = graph_api.texts_to(spender)
    assert kinds(graph_api, spender) == ["reply", "reply"]
    assert (
        texts[1]
        == "You have reached today's limit for automated answers. Please write again tomorrow."
    )
    assert len(refused) == 2 and refused_graph_runs == 0
    assert kinds(graph_api, other) == ["reply"]


@pytest.mark.parametrize("store", ["in-process", "redis"])
async def test_a_real_turns_tokens_are_counted_and_the_budget_refuses_the_next(
    store: str, db_url: str, graph_api: FakeGraphAPI, openai_server: FakeOpenAIServer
) -> None:
    """No tokens added by hand: the turn runs the graph against the fake model, and what
    the limiter counts for the customer today is exactly what the model reported."""
    customer = new_customer()
    extra = {"redis_url": shared_redis_url(), "redis_prefix": unique_prefix()}
    budget = 50  # less than any real turn: the prompts alone are longer
    settings = abuse_settings(
        db_url,
        graph_api,
        openai_server,
        daily_token_budget=budget,
        **(extra if store == "redis" else {}),
    )
    async with running_service(settings) as service:
        await send_and_settle(service, customer, "what are your opening hours?")
        counted = await service.services.abuse.limiter.tokens_today(customer)
        asked = len(openai_server.requests)
        reported = [usage["total_tokens"] for usage in openai_server.usages]
        await send_and_settle(service, customer, "and on sundays?")
        gates = await service.fetch(
            "SELECT gate FROM inbound_messages WHERE wa_id = %s ORDER BY id", customer
        )
    assert asked >= 1 and len(reported) == asked  # every model call reported its usage
    assert counted == sum(reported) > budget
    assert len(openai_server.requests) == asked  # the refused turn never reached the model
    assert [row["gate"] for row in gates] == [None, "over_budget"]
    assert kinds(graph_api, customer) == ["reply", "reply"]
    assert graph_api.texts_to(customer)[1] == BUDGET
