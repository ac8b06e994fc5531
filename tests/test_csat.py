"""CSAT through the real webhook → worker → fake Graph API path: the question is sent
once after a resolved episode, the tap is recorded against the episode and its agent
without any agent run, a comment is kept, a second episode the same day is not asked
again, and nothing is asked while an escalation is open or with the flag off."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from server.outcomes.episodes import ClosedEpisode
from server.outcomes.hooks import OutcomeHooks
from tests.fakes.graph_api import FakeGraphAPI
from tests.fakes.meta_payloads import interactive_reply, text_message
from tests.fakes.openai_server import FakeOpenAIServer
from tests.support import RunningService, running_service
from tests.support_outcomes import (
    admin_call,
    episodes_of,
    new_customer,
    outcome_settings,
    say,
)


def hooks_of(service: RunningService) -> OutcomeHooks:
    hooks = service.services.runner.outcomes
    assert isinstance(hooks, OutcomeHooks)
    return hooks


def csat_lists(graph_api: FakeGraphAPI, customer: str) -> list[dict[str, Any]]:
    return [
        m["interactive"]
        for m in graph_api.sent_to(customer)
        if m.get("type") == "interactive" and m["interactive"]["type"] == "list"
    ]


def after_idle() -> datetime:
    return datetime.now(UTC) + timedelta(minutes=45)


async def answered_and_closed(
    service: RunningService, openai_server: FakeOpenAIServer, customer: str
) -> ClosedEpisode:
    """The customer's question answered, then the episode closed as idle."""
    openai_server.script("We are open from 8:00 to 18:00, Monday to Saturday.")
    await say(service, text_message(customer, "What are your opening hours?"))
    [closed] = await hooks_of(service).close_idle(after_idle())
    return closed


async def test_rating_asked_once_and_recorded_from_the_tap_without_an_agent_run(
    db_url: str, graph_api: FakeGraphAPI, openai_server: FakeOpenAIServer
) -> None:
    customer = new_customer()
    settings = outcome_settings(db_url, graph_api, openai_server, flags=frozenset({"csat"}))
    async with running_service(settings) as service:
        closed = await answered_and_closed(service, openai_server, customer)
        assert await hooks_of(service).csat.request(closed) is False  # never twice

        [question] = csat_lists(graph_api, customer)
        rows = question["action"]["sections"][0]["rows"]
        assert len(rows) == 6 and rows[-1]["title"] == "Skip"
        four = next(row for row in rows if row["title"].startswith("4"))

        model_calls = len(openai_server.requests)
        tap = interactive_reply(customer, four["id"], four["title"], list_reply=True)
        await say(service, tap, turn=False)
        answers = await service.fetch("SELECT * FROM csat_responses")
        assert [(a["episode_id"], a["rating"], a["agent"]) for a in answers] == [
            (uuid.UUID(closed.id), 4, "customer_service")
        ]
        assert graph_api.texts_to(customer)[-1].startswith("Thank you for your rating")

        comment = text_message(customer, "The staff at the shop were very kind")
        await say(service, comment, turn=False)
        [answer] = await service.fetch("SELECT comment FROM csat_responses")
        assert answer["comment"] == "The staff at the shop were very kind"
        assert len(openai_server.requests) == model_calls  # no agent ran for tap or comment
        assert len(await episodes_of(service, customer)) == 1  # and no episode opened

        openai_server.script("A city bike is 5,000 RWF a day.")
        await say(service, text_message(customer, "How much is a city bike?"))
        assert len(openai_server.requests) == model_calls + 1  # a question is answered
        [second] = await hooks_of(service).close_idle(after_idle())
        assert second.outcome == "resolved_bot"
        assert len(csat_lists(graph_api, customer)) == 1  # at most once a day per customer


async def test_a_text_once_the_comment_window_passed_is_answered_not_kept(
    db_url: str, graph_api: FakeGraphAPI, openai_server: FakeOpenAIServer
) -> None:
    customer = new_customer()
    settings = outcome_settings(db_url, graph_api, openai_server, flags=frozenset({"csat"}))
    async with running_service(settings) as service:
        closed = await answered_and_closed(service, openai_server, customer)
        await say(service, interactive_reply(customer, f"csat:{closed.id}:5", "5"), turn=False)
        window = timedelta(minutes=settings.csat_comment_minutes)
        await service.execute(
            "UPDATE csat_responses SET answered_at = now() - %s", window + timedelta(minutes=1)
        )
        openai_server.script("A city bike is 5,000 RWF a day.")
        await say(service, text_message(customer, "How much is a city bike?"))
        [answer] = await service.fetch("SELECT rating, comment FROM csat_responses")
        assert (answer["rating"], answer["comment"]) == (5, None)
        assert graph_api.texts_to(customer)[-1] == "A city bike is 5,000 RWF a day."


async def test_a_tap_for_another_conversations_episode_is_ignored(
    db_url: str, graph_api: FakeGraphAPI, openai_server: FakeOpenAIServer
) -> None:
    alice, mallory = new_customer(), new_customer()
    settings = outcome_settings(db_url, graph_api, openai_server, flags=frozenset({"csat"}))
    async with running_service(settings) as service:
        closed = await answered_and_closed(service, openai_server, alice)
        forged = f"csat:{closed.id}:1"
        model_calls = len(openai_server.requests)
        tap = interactive_reply(mallory, forged, "1 - Very poor", list_reply=True)
        await say(service, tap, turn=False)
        assert await service.fetch("SELECT * FROM csat_responses") == []
        assert len(openai_server.requests) == model_calls


async def test_no_question_while_an_escalation_is_open(
    db_url: str, graph_api: FakeGraphAPI, openai_server: FakeOpenAIServer
) -> None:
    customer = new_customer()
    settings = outcome_settings(db_url, graph_api, openai_server, flags=frozenset({"csat"}))
    async with running_service(settings) as service:
        await say(service, text_message(customer, "I want to talk to a human please"))
        [conversation] = await service.fetch(
            "SELECT id FROM agent_conversations WHERE wa_id = %s", customer
        )
        response = await admin_call(
            service,
            "POST",
            f"/admin/api/conversations/{conversation['id']}/messages",
            json={"text": "Hello, Alice from the shop here."},
        )
        assert response.status_code == 202
        await graph_api.wait_for_async(
            lambda: "Hello, Alice from the shop here." in graph_api.texts_to(customer)
        )
        [closed] = await hooks_of(service).close_idle(after_idle())
        assert (closed.outcome, closed.escalation_open) == ("resolved_human", True)
        assert csat_lists(graph_api, customer) == []
        [episode] = await episodes_of(service, customer)
        assert episode["csat_requested_at"] is None


async def test_flag_off_sends_no_question(
    db_url: str, graph_api: FakeGraphAPI, openai_server: FakeOpenAIServer
) -> None:
    customer = new_customer()
    async with running_service(outcome_settings(db_url, graph_api, openai_server)) as service:
        closed = await answered_and_closed(service, openai_server, customer)
        assert closed.outcome == "resolved_bot"
        assert csat_lists(graph_api, customer) == []
