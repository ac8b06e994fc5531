"""web_search and deep_research end to end: a customer's turn, the agent calling the
tool, the real tavily-python / langchain-perplexity clients talking to local fakes of
Tavily and Perplexity, and the answer with its sources reaching the customer.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.fakes.graph_api import FakeGraphAPI
from tests.fakes.meta_payloads import text_message
from tests.fakes.openai_server import FakeOpenAIServer, ToolCall
from tests.fakes.perplexity_server import FakePerplexity
from tests.fakes.tavily_server import FakeTavily
from tests.support import running_service
from tests.test_agent_flows import say
from tests.test_tool_registry import executions, tool_messages, tool_settings

CRASHING_APP = "the app keeps crashing when I open it"  # routed to tech support locally
HOLDER_URL = "https://quadlock.example/compat"


@pytest.fixture
def tavily() -> Iterator[FakeTavily]:
    with FakeTavily() as server:
        server.add_page(
            HOLDER_URL,
            "Phone mount compatibility list",
            "The universal bike phone mount fits iPhone 12 to 16 and Galaxy S21 to S25.",
            "Compatibility. The universal bike phone mount fits every iPhone from 12 to 16 "
            "and Samsung Galaxy S21 to S25. Cases thicker than 3 mm need the adapter.",
        )
        server.add_page(
            "https://bikes.example/mounts",
            "Choosing a phone mount for your bike",
            "Mounts differ by clamp size; check your phone model before buying.",
        )
        server.add_page("https://cakes.example", "Banana bread", "A recipe with bananas.")
        yield server


@pytest.fixture
def perplexity() -> Iterator[FakePerplexity]:
    with FakePerplexity() as server:
        yield server


def tavily_settings(tavily: FakeTavily) -> dict[str, Any]:
    return {"tavily_api_key": tavily.api_key, "tavily_base_url": tavily.base_url}


def offered(request: dict[str, Any]) -> set[str]:
    return {tool["function"]["name"] for tool in request.get("tools", [])}


async def test_web_search_answers_with_trimmed_results_and_sources(
    db_url: str, graph_api: FakeGraphAPI, openai_server: FakeOpenAIServer, tavily: FakeTavily
) -> None:
    customer = "2507" + str(uuid.uuid4().int)[:8]
    settings = tool_settings(db_url, graph_api, openai_server, **tavily_settings(tavily))
    async with running_service(settings) as service:
        tavily.fail_next(1)  # one 503: retried
        openai_server.script(
            ToolCall("web_search", {"query": "phone mount iPhone 15 compatibility"}),
            f"Yes, the mount fits the iPhone 15 ({HOLDER_URL}).",
        )
        await say(service, graph_api, customer, text_message(customer, CRASHING_APP))
        assert (
            graph_api.texts_to(customer)[-1] == f"Yes, the mount fits the iPhone 15 ({HOLDER_URL})."
        )
        [result] = tool_messages(openai_server.requests[1])
        [row] = await executions(service, 1)
    assert tavily.paths() == ["/search", "/search"]
    assert tavily.requests[-1][2]["max_results"] == 5
    assert result.splitlines()[1] == f"[1] Phone mount compatibility list — {HOLDER_URL}"
    assert "[2] Choosing a phone mount" in result and "Banana" not in result
    assert "Cases thicker" not in result  # the page's full text is not sent to the model
    assert row["tool"] == "web_search" and row["success"] is True and row["agent"] == "tech_support"


async def test_web_search_is_not_offered_when_its_flag_is_off(
    db_url: str, graph_api: FakeGraphAPI, openai_server: FakeOpenAIServer, tavily: FakeTavily
) -> None:
    customer = "2507" + str(uuid.uuid4().int)[:8]
    settings = tool_settings(
        db_url,
        graph_api,
        openai_server,
        flags=frozenset({"-web_search"}),
        **tavily_settings(tavily),
    )
    async with running_service(settings) as service:
        openai_server.script("Let me open a ticket for that.")
        await say(service, graph_api, customer, text_message(customer, CRASHING_APP))
    assert "web_search" not in offered(openai_server.requests[0])
    assert "search_knowledge_base" in offered(openai_server.requests[0])


async def test_without_keys_there_are_no_web_tools_and_a_tool_can_be_switched_off(
    db_url: str, graph_api: FakeGraphAPI, openai_server: FakeOpenAIServer
) -> None:
    settings = tool_settings(
        db_url, graph_api, openai_server, tool_overrides={"get_product": {"enabled": False}}
    )
    async with running_service(settings) as service:
        names = service.services.tool_names
    assert "web_search" not in names and "deep_research" not in names
    assert "search_catalog" in names and "get_product" not in names


async def test_web_search_failing_for_good_tells_the_model_and_records_a_failure(
    db_url: str, graph_api: FakeGraphAPI, openai_server: FakeOpenAIServer, tavily: FakeTavily
) -> None:
    customer = "2507" + str(uuid.uuid4().int)[:8]
    settings = tool_settings(db_url, graph_api, openai_server, **tavily_settings(tavily))
    async with running_service(settings) as service:
        tavily.fail_next(10)
        openai_server.script(
            ToolCall("web_search", {"query": "iphone 15 mount"}), "I cannot check that now."
        )
        await say(service, graph_api, customer, text_message(customer, CRASHING_APP))
        assert graph_api.texts_to(customer)[-1] == "I cannot check that now."
        [result] = tool_messages(openai_server.requests[1])
        [row] = await executions(service, 1)
    assert len(tavily.paths()) == 3  # bounded retries
    assert result.startswith("web_search is unavailable right now")
    assert row["success"] is False and "HTTPStatusError" in row["error"]


async def test_deep_research_through_perplexity_keeps_its_citations(
    db_url: str,
    graph_api: FakeGraphAPI,
    openai_server: FakeOpenAIServer,
    perplexity: FakePerplexity,
) -> None:
    customer = "2507" + str(uuid.uuid4().int)[:8]
    settings = tool_settings(
        db_url,
        graph_api,
        openai_server,
        perplexity_api_key=perplexity.api_key,
        perplexity_base_url=perplexity.base_url,
    )
    perplexity.set_answer(
        "Android 14 phones pair with the e-bike display over Bluetooth LE [1].",
        [("E-bike display manual", "https://manuals.example/display")],
    )
    async with running_service(settings) as service:
        openai_server.script(
            ToolCall(
                "deep_research", {"question": "Does the e-bike display pair with Android 14?"}
            ),
            "Yes, it pairs over Bluetooth LE (https://manuals.example/display).",
        )
        await say(service, graph_api, customer, text_message(customer, CRASHING_APP))
        assert "web_search" not in service.services.tool_names  # Perplexity alone
    [result] = tool_messages(openai_server.requests[1])
    assert result.startswith("Android 14 phones pair with the e-bike display")
    assert result.endswith("Sources:\n[1] E-bike display manual — https://manuals.example/display")
    _, path, body = perplexity.requests[-1]
    assert path == "/chat/completions" and body["model"] == "sonar"
    assert body["messages"][-1]["content"] == "Does the e-bike display pair with Android 14?"


async def test_deep_research_without_perplexity_composes_search_extract_and_the_model(
    db_url: str, graph_api: FakeGraphAPI, openai_server: FakeOpenAIServer, tavily: FakeTavily
) -> None:
    customer = "2507" + str(uuid.uuid4().int)[:8]
    settings = tool_settings(db_url, graph_api, openai_server, **tavily_settings(tavily))
    async with running_service(settings) as service:
        openai_server.script(
            ToolCall("deep_research", {"question": "Which phones fit the bike phone mount?"}),
            "iPhone 12-16 and Galaxy S21-S25 fit; thick cases need the adapter [1].",  # synthesis
            "It fits iPhone 12 to 16; with a thick case you need the adapter.",
        )
        await say(service, graph_api, customer, text_message(customer, CRASHING_APP))
        assert graph_api.texts_to(customer)[-1].startswith("It fits iPhone 12 to 16")
    assert tavily.paths() == ["/search", "/extract"]
    assert tavily.requests[-1][2]["urls"][0] == HOLDER_URL
    synthesis = openai_server.requests[1]
    assert "tools" not in synthesis  # the chain's own model call, not an agent's
    assert "Cases thicker than 3 mm need the adapter" in synthesis["messages"][0]["content"]
    [result] = tool_messages(openai_server.requests[2])
    assert result.startswith("iPhone 12-16 and Galaxy S21-S25 fit")
    assert f"[1] Phone mount compatibility list — {HOLDER_URL}" in result
