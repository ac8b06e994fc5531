"""`POST /v1/conversations/{id}/stream` read by a real SSE client (httpx-sse): tokens
as the model writes them, the steps around them and a final event, an error event
instead of a broken stream when the thread is busy — never two turns at once on a
thread — and a turn that runs to its end even when the browser leaves mid-stream."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.fakes.graph_api import FakeGraphAPI
from tests.fakes.openai_server import FakeOpenAIServer, ToolCall
from tests.support import RunningService, eventually, running_service
from tests.support_streaming import (
    answered_once,
    open_stream,
    stream,
    stream_settings,
    transcript_of,
    web_conversation,
)


async def state_of(service: RunningService, conversation: dict[str, str]) -> dict[str, Any]:
    config = {"configurable": {"thread_id": conversation["conversation_id"]}}
    async with service.services.runner.graphs.borrow() as graph:
        return dict((await graph.aget_state(config)).values)  # type: ignore[arg-type]


async def test_tokens_and_steps_arrive_in_order_and_nothing_goes_to_whatsapp(
    db_url: str, graph_api: FakeGraphAPI, openai_server: FakeOpenAIServer
) -> None:
    async with running_service(stream_settings(db_url, graph_api, openai_server)) as service:
        conversation = await web_conversation(service)
        assert conversation["customer"].startswith("web:")
        openai_server.script("Sure, for which day?")
        first = await stream(service, conversation, "I want to book a bike")
        assert first[-1][0] == "final"

        answer = "A city bike costs 10000 RWF a day. A mountain bike costs 15000 RWF."
        openai_server.script(ToolCall("transfer_to_sales", {"reason": "asks the price"}), answer)
        events = await stream(service, conversation, "how much is it?")

        kinds = [kind for kind, _ in events]
        assert kinds[0] == "started" and kinds[-1] == "final"
        steps = [kind for kind in kinds if kind not in ("token", "tool_call_started")]
        assert steps == ["started", "agent", "tool_call", "tool_result", "handoff", "final"]
        data = dict((kind, value) for kind, value in events if kind != "token")
        assert data["agent"]["agent"] == "booking"
        assert data["tool_call"]["name"] == "transfer_to_sales"
        assert (data["handoff"]["source"], data["handoff"]["target"]) == ("booking", "sales")
        tokens = [value for kind, value in events if kind == "token"]
        assert len(tokens) > 5 and {t["agent"] for t in tokens} == {"sales"}
        assert kinds.index("handoff") < kinds.index("token")
        assert "".join(t["text"] for t in tokens) == answer
        assert data["final"]["texts"] == [answer]

        assert graph_api.texts_to(conversation["customer"]) == []  # the stream is the channel
        state = await state_of(service, conversation)
        assert state["active_agent"] == "sales" and state["messages"][-1].content == answer
        transcript = await transcript_of(service, conversation)
        assert transcript[-2:] == ["how much is it?", answer]


async def test_two_turns_of_one_web_conversation_never_run_together(
    db_url: str, graph_api: FakeGraphAPI, openai_server: FakeOpenAIServer
) -> None:
    async with running_service(stream_settings(db_url, graph_api, openai_server)) as service:
        conversation = await web_conversation(service)
        openai_server.hold()
        first = asyncio.create_task(stream(service, conversation, "I want to book a bike"))
        await asyncio.to_thread(openai_server.wait_for_requests, 1, 15)
        busy = await stream(service, conversation, "and Sunday?")
        assert [kind for kind, _ in busy] == ["error"] and busy[0][1]["code"] == "busy"
        openai_server.script("Sure, for which day?")
        openai_server.release()
        assert (await first)[-1][1]["texts"] == ["Sure, for which day?"]
        openai_server.script("Sunday too.")
        assert (await stream(service, conversation, "and Sunday?"))[-1][1]["texts"] == [
            "Sunday too."
        ]
        history = [m.content for m in (await state_of(service, conversation))["messages"]]
    assert history[-4:] == [
        "I want to book a bike",
        "Sure, for which day?",
        "and Sunday?",
        "Sunday too.",
    ]


async def test_a_client_that_leaves_mid_stream_does_not_cut_the_turn(
    db_url: str, graph_api: FakeGraphAPI, openai_server: FakeOpenAIServer
) -> None:
    async with running_service(stream_settings(db_url, graph_api, openai_server)) as service:
        conversation = await answered_once(service, openai_server)
        answer = " ".join(f"word{i}" for i in range(60))
        openai_server.stream_interval = 0.02
        openai_server.script(answer)
        async with open_stream(service, conversation, "Saturday") as source:
            async for event in source.aiter_sse():
                if event.event == "token":
                    break  # the browser tab closes after the first word

        async def answered() -> bool:
            return answer in await transcript_of(service, conversation)

        await eventually(answered, what="the abandoned turn to finish")
        state = await state_of(service, conversation)
        assert state["messages"][-1].content == answer
