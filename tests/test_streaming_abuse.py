"""A streamed turn meets the same abuse gate and spending caps as a WhatsApp message:
a blacklisted customer, one over the rate limit or past the daily token budget gets an
error event and the model is never called; the refused message is kept, marked with its
reason; and a streamed turn's tokens count against the budget like any other."""

from __future__ import annotations

from tests.fakes.graph_api import FakeGraphAPI
from tests.fakes.openai_server import FakeOpenAIServer
from tests.support import RunningService, running_service
from tests.support_abuse import BLACKLIST, BLOCK_PREFIX, BUDGET, NOTICES, WARNING
from tests.support_streaming import answered_once, stream, stream_settings, web_conversation


async def _refusals_of(
    service: RunningService, conversation: dict[str, str]
) -> list[tuple[str, str]]:
    """The conversation's messages the gate refused, with its reason, in order."""
    rows = await service.fetch(
        "SELECT text, gate FROM inbound_messages WHERE conversation_id = %s"
        " AND gate IS NOT NULL AND gate <> 'admitted' ORDER BY id",
        conversation["conversation_id"],
    )
    return [(row["text"], row["gate"]) for row in rows]


async def test_a_blacklisted_customers_stream_is_refused_before_the_model(
    db_url: str, graph_api: FakeGraphAPI, openai_server: FakeOpenAIServer
) -> None:
    async with running_service(stream_settings(db_url, graph_api, openai_server)) as service:
        conversation = await answered_once(service, openai_server)
        blacklist = service.services.abuse.blacklist
        await blacklist.add(conversation["customer"], reason="abuse", source="manual", actor="t")
        asked_before = len(openai_server.requests)
        events = await stream(service, conversation, "how much is it?")
        refused = await _refusals_of(service, conversation)
    assert events == [("error", {"code": "blacklisted", "message": BLACKLIST})]
    assert len(openai_server.requests) == asked_before  # the model was never called
    assert refused == [("how much is it?", "blacklisted")]  # kept, marked, as WhatsApp's


async def test_a_stream_over_the_rate_limit_is_refused_before_the_model(
    db_url: str, graph_api: FakeGraphAPI, openai_server: FakeOpenAIServer
) -> None:
    """One turn a minute here: the second turn is warned and the third blocked, each
    written to the audit log under the web customer's key."""
    settings = stream_settings(
        db_url, graph_api, openai_server, rate_limits="1/1m", block_durations="10m"
    )
    async with running_service(settings) as service:
        conversation = await answered_once(service, openai_server)
        asked_before = len(openai_server.requests)
        warned = await stream(service, conversation, "how much is it?")
        blocked = await stream(service, conversation, "hello?")
        audit = await service.fetch(
            "SELECT action FROM audit_log WHERE target = %s ORDER BY id", conversation["customer"]
        )
        refused = await _refusals_of(service, conversation)
    assert warned == [("error", {"code": "rate_limited", "message": WARNING})]
    assert [kind for kind, _ in blocked] == ["error"] and blocked[0][1]["code"] == "blocked"
    assert blocked[0][1]["message"] == BLOCK_PREFIX + "10 minutes. Please write again after that."
    assert len(openai_server.requests) == asked_before
    assert [row["action"] for row in audit] == ["abuse.warned", "abuse.blocked"]
    assert refused == [("how much is it?", "rate_limited"), ("hello?", "blocked")]


async def test_a_stream_past_the_daily_token_budget_is_refused_before_the_model(
    db_url: str, graph_api: FakeGraphAPI, openai_server: FakeOpenAIServer
) -> None:
    settings = stream_settings(db_url, graph_api, openai_server, daily_token_budget=1)
    async with running_service(settings) as service:  # one answered turn spends it all
        conversation = await answered_once(service, openai_server)
        asked_before = len(openai_server.requests)
        events = await stream(service, conversation, "how much is it?")
    assert events == [("error", {"code": "over_budget", "message": BUDGET})]
    assert len(openai_server.requests) == asked_before


async def test_a_streamed_turns_tokens_count_against_the_daily_budget(
    db_url: str, graph_api: FakeGraphAPI, openai_server: FakeOpenAIServer
) -> None:
    async with running_service(stream_settings(db_url, graph_api, openai_server)) as service:
        conversation = await web_conversation(service)
        limiter = service.services.abuse.limiter
        before = await limiter.tokens_today(conversation["customer"])
        openai_server.script("A city bike costs 10000 RWF a day.")
        events = await stream(service, conversation, "how much is it?")
        after = await limiter.tokens_today(conversation["customer"])
    assert events[-1][0] == "final"
    assert after > before == 0


async def test_a_streamed_turn_meets_the_spending_caps_like_any_other(
    db_url: str, graph_api: FakeGraphAPI, openai_server: FakeOpenAIServer
) -> None:
    """The stream runs the same runner as WhatsApp: past the conversation's token cap,
    the customer reads the cap message and the model is not called."""
    settings = stream_settings(
        db_url, graph_api, openai_server, conversation_token_cap=1, cap_action="message"
    )
    async with running_service(settings) as service:
        conversation = await answered_once(service, openai_server)
        await service.services.accounting.writer.flush()  # type: ignore[union-attr]
        asked_before = len(openai_server.requests)
        events = await stream(service, conversation, "how much is it?")
    cap_notice = NOTICES.say("spending_cap", "en")
    assert events[-1] == ("final", {**events[-1][1], "texts": [cap_notice]})
    assert len(openai_server.requests) == asked_before
