"""Partial delivery: with the flag on, a long answer reaches WhatsApp as up to three
messages cut at paragraphs while the model is still writing; in order, together exactly
the answer; a part Meta refuses for now (131056) is sent later, in order; a stream that
breaks off after parts went out ends with a short apology, never a cut sentence."""

from __future__ import annotations

import uuid
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from nodes.notices import Notices
from server.runner.partial_delivery import ParagraphCutter
from tests.fakes.graph_api import FakeGraphAPI
from tests.fakes.meta_payloads import text_message
from tests.fakes.openai_server import FakeOpenAIServer
from tests.support import RunningService, running_service, service_settings
from tests.test_agent_flows import say

PARAGRAPHS = [
    f"Paragraph {n}: " + " ".join(f"word{n}x{i}" for i in range(40)) + "." for n in range(1, 6)
]
ANSWER = "\n\n".join(PARAGRAPHS)  # five paragraphs of about 300 characters


def partial_settings(
    db_url: str, graph_api: FakeGraphAPI, openai: FakeOpenAIServer, *, flag: bool = True
) -> Any:
    return service_settings(
        db_url,
        whatsapp_api_base_url=graph_api.base_url,
        openai_api_key="sk-test",
        openai_base_url=openai.base_url + "/v1",
        flags=frozenset({"partial_delivery" if flag else "-partial_delivery"}),
        partial_min_chars=250,
        partial_later_chars=250,
        partial_min_interval_seconds=0.05,
    )


def new_customer() -> str:
    return "2507" + str(uuid.uuid4().int)[:8]


async def outbox(service: RunningService, customer: str) -> list[dict[str, Any]]:
    return await service.fetch(
        "SELECT part, status, payload->>'partial' AS partial FROM outbound_messages"
        " WHERE wa_id = %s ORDER BY id",
        customer,
    )


async def test_long_answer_arrives_in_ordered_parts_while_the_model_writes(
    db_url: str, graph_api: FakeGraphAPI, openai_server: FakeOpenAIServer
) -> None:
    customer = new_customer()
    async with running_service(partial_settings(db_url, graph_api, openai_server)) as service:
        openai_server.stream_interval = 0.005  # ~200 words/s: the answer takes ~1 s
        openai_server.script(ANSWER)
        await say(service, graph_api, customer, text_message(customer, "I want to book a bike"))

        parts = graph_api.texts_to(customer)
        assert len(parts) == 3
        assert "\n\n".join(parts) == ANSWER
        assert all(not part.startswith("\n") and not part.endswith("\n") for part in parts)
        # The first part left before the model had finished writing the answer.
        first_sent = graph_api.sent_to(customer)[0]["received_at"]
        assert first_sent < openai_server.streams_done[-1]
        # "typing…" again after each early part, on the customer's message.
        assert len(graph_api.read_receipts) >= 3
        rows = await outbox(service, customer)
        assert [(r["part"], r["status"], r["partial"]) for r in rows] == [
            (0, "sent", "true"),
            (1, "sent", "true"),
            (2, "sent", None),
        ]
        transcript = await service.fetch(
            "SELECT content FROM agent_messages WHERE role = 'agent' AND conversation_id ="
            " (SELECT id FROM agent_conversations WHERE wa_id = %s)",
            customer,
        )
        assert [t["content"] for t in transcript] == [ANSWER]


async def test_flag_off_sends_the_answer_whole(
    db_url: str, graph_api: FakeGraphAPI, openai_server: FakeOpenAIServer
) -> None:
    customer = new_customer()
    settings = partial_settings(db_url, graph_api, openai_server, flag=False)
    async with running_service(settings) as service:
        openai_server.script(ANSWER)
        await say(service, graph_api, customer, text_message(customer, "I want to book a bike"))
        assert graph_api.texts_to(customer) == [ANSWER]


async def test_pacing_refusal_defers_a_part_without_breaking_the_order(
    db_url: str, graph_api: FakeGraphAPI, openai_server: FakeOpenAIServer
) -> None:
    customer = new_customer()
    async with running_service(partial_settings(db_url, graph_api, openai_server)) as service:
        openai_server.stream_interval = 0.005
        openai_server.script(ANSWER)
        # Every try of the first part is refused: too many messages to this user.
        graph_api.fail_next(4, status=400, code=131056, title="(#131056) Pair rate limit hit")
        await say(service, graph_api, customer, text_message(customer, "I want to book a bike"))

        parts = graph_api.texts_to(customer)
        assert "\n\n".join(parts) == ANSWER and len(parts) <= 3
        assert [r["status"] for r in await outbox(service, customer)] == ["sent"] * len(parts)


async def test_a_stream_broken_after_a_part_ends_with_an_apology(
    db_url: str, graph_api: FakeGraphAPI, openai_server: FakeOpenAIServer
) -> None:
    customer = new_customer()
    async with running_service(partial_settings(db_url, graph_api, openai_server)) as service:
        openai_server.stream_cut_after = 100  # words: past the first paragraph, not the end
        openai_server.script(ANSWER)
        await say(service, graph_api, customer, text_message(customer, "I want to book a bike"))

        received = graph_api.texts_to(customer)
        assert received[-1] == Notices.load().say("cut_short", "en")
        early = received[:-1]
        assert early and ANSWER.startswith("\n\n".join(early))
        assert all(part in PARAGRAPHS for part in early)  # whole paragraphs only


@settings(max_examples=200, deadline=None)
@given(
    paragraphs=st.lists(
        st.text(alphabet="abc xyz.,!?é", min_size=1, max_size=5000).map(str.strip).filter(bool),
        min_size=1,
        max_size=12,
    ),
    cuts=st.lists(st.integers(min_value=1, max_value=60), min_size=1, max_size=40),
)
def test_parts_and_rest_always_make_the_whole_answer(
    paragraphs: list[str], cuts: list[int]
) -> None:
    """However the model's stream is chunked, the early parts are whole paragraphs
    within WhatsApp's limit, and with the rest they are exactly the answer."""
    answer = "\n\n".join(paragraphs)
    cutter = ParagraphCutter(max_parts=3, first_chars=100, later_chars=1500)
    parts: list[str] = []
    position, index = 0, 0
    while position < len(answer):
        size = cuts[index % len(cuts)]
        parts += cutter.feed(answer[position : position + size], "msg-1")
        position, index = position + size, index + 1
    rest = answer[cutter.consumed :].strip()
    assert len(parts) <= 2 and all(0 < len(part) <= 4096 for part in parts)
    assert "\n\n".join([*parts, rest] if rest else parts) == answer
