"""Agents that keep handing the conversation back and forth reach a person.

README: "at most 3 per turn, then a person". Two agents that each think the other
should answer would otherwise spend model calls for ever while the customer waits.
"""

from __future__ import annotations

import uuid

from nodes.handoffs import MAX_HANDOFFS_PER_TURN
from nodes.notices import Notices
from tests.fakes.graph_api import FakeGraphAPI
from tests.fakes.meta_payloads import text_message
from tests.fakes.openai_server import FakeOpenAIServer, ToolCall
from tests.support import running_service, service_settings
from tests.test_agent_flows import say, thread_state


async def test_agents_handing_over_in_a_loop_end_with_a_person(
    db_url: str, graph_api: FakeGraphAPI, openai_server: FakeOpenAIServer
) -> None:
    customer = "2507" + str(uuid.uuid4().int)[:8]
    settings = service_settings(
        db_url,
        whatsapp_api_base_url=graph_api.base_url,
        openai_api_key="sk-test",
        openai_base_url=openai_server.base_url + "/v1",
        router_llm=False,  # every model request is an agent's: they can be counted
        memory_enabled=False,
    )
    ping_pong = [
        ToolCall(f"transfer_to_{target}", {"reason": "the other agent should answer"})
        for target in ["sales", "booking"] * 4
    ]
    openai_server.script(*ping_pong)
    async with running_service(settings) as service:
        await say(
            service,
            graph_api,
            customer,
            text_message(customer, "I want to book a bike for Saturday"),
        )
        state = await thread_state(service, customer)
        status = await service.fetch(
            "SELECT status FROM agent_conversations WHERE wa_id = %s", customer
        )

    # The first agent, then one model call per handoff allowed; the one after the
    # limit goes to a person instead of a fifth agent.
    assert len(openai_server.requests) == MAX_HANDOFFS_PER_TURN + 1
    assert openai_server.pending == len(ping_pong) - (MAX_HANDOFFS_PER_TURN + 1)
    assert graph_api.texts_to(customer) == [Notices.load().say("handover", "en")]
    assert status[0]["status"] == "escalated"
    assert state["mode"] == "human"
    agents = [(h["source"], h["target"]) for h in state["handoffs"]]
    assert agents == [
        ("booking", "sales"),
        ("sales", "booking"),
        ("booking", "sales"),
        ("sales", "booking"),
        ("bot", "human"),
    ]


async def test_one_hand_over_tool_lists_the_colleagues_and_hands_over_through_the_tool_node(
    db_url: str, graph_api: FakeGraphAPI, openai_server: FakeOpenAIServer
) -> None:
    """The model is offered one `hand_over` (its `agent` enum: the other enabled agents)
    instead of a schema per colleague; the call runs as `transfer_to_<agent>`. A call
    naming no colleague on offer (itself here) is dropped, as any tool not offered."""
    customer = "2507" + str(uuid.uuid4().int)[:8]
    settings = service_settings(
        db_url,
        whatsapp_api_base_url=graph_api.base_url,
        openai_api_key="sk-test",
        openai_base_url=openai_server.base_url + "/v1",
        router_llm=False,
        memory_enabled=False,
    )
    openai_server.script(
        ToolCall("hand_over", {"agent": "sales", "reason": "asks what a helmet costs"}),
        ToolCall("hand_over", {"agent": "sales", "reason": "itself: not on offer"}),
    )
    async with running_service(settings) as service:
        await say(service, graph_api, customer, text_message(customer, "I want to book a bike"))
        state = await thread_state(service, customer)

    first, second = openai_server.requests
    names = [t["function"]["name"] for t in first["tools"]]
    assert "hand_over" in names and not any(n.startswith("transfer_to_") for n in names)
    assert names[-1] == "escalate_to_human"
    enum = {
        r: t["function"]["parameters"]["properties"]["agent"]["enum"]
        for r, t in (
            ("first", next(t for t in first["tools"] if t["function"]["name"] == "hand_over")),
            ("second", next(t for t in second["tools"] if t["function"]["name"] == "hand_over")),
        )
    }
    assert "booking" not in enum["first"] and "sales" in enum["first"]
    assert "sales" not in enum["second"] and "booking" in enum["second"]
    assert [(h["source"], h["target"]) for h in state["handoffs"]] == [("booking", "sales")]
    assert state["active_agent"] == "sales"
    calls = [c for m in state["messages"] for c in getattr(m, "tool_calls", None) or []]
    assert [c["name"] for c in calls] == ["transfer_to_sales"]  # what the tool node ran
