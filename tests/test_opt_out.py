"""Proactive messaging, as the customer and the operator see it, through the real
webhook → worker → fake Graph API path.

A customer who writes only STOP (in any of our languages, any case, with punctuation)
gets one short confirmation without any agent run, is recorded as opted out, and is no
longer asked for a rating; START brings them back and the rating is asked again. "stop"
inside a sentence is a message for the agents. Erasure takes the choice with the
customer. An operator cannot queue a free-form reply once WhatsApp's 24-hour window has
closed: the admin API says so at once (409) instead of accepting a send Meta refuses.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from nodes.notices import Notices
from server.outcomes.consent import keyword_of, may_message_first
from server.runner.queue import OPERATOR_REPLY_TASK
from tests.fakes.graph_api import FakeGraphAPI
from tests.fakes.meta_payloads import message_value, text_message
from tests.fakes.openai_server import FakeOpenAIServer
from tests.support import RunningService, running_service
from tests.support_outcomes import ADMIN_HEADERS, new_customer, outcome_settings, say
from tests.test_csat import after_idle, csat_lists, hooks_of

OPTED_OUT = Notices.load().say("opted_out", "en")
OPTED_IN = Notices.load().say("opted_in", "en")


async def consent_of(service: RunningService, customer: str) -> list[dict[str, object]]:
    return await service.fetch(
        "SELECT opted_out, changed_at, source FROM proactive_consent WHERE wa_id = %s", customer
    )


@pytest.mark.parametrize(
    "text",
    ["STOP", "stop", "Stop.", " stop! ", "Unsubscribe", "opt-out", "Arrêter", "ARRETER",
     "parar", "¡Parar!", "acha", "Sitisha", "hagarara", "Stop promotions"],
)  # fmt: skip
def test_a_whole_message_stop_word_is_an_opt_out(text: str) -> None:
    assert keyword_of(text) == "stop"


@pytest.mark.parametrize("text", ["START", "start", "Subscribe", "commencer", "Anza", "tangira"])
def test_a_whole_message_start_word_is_an_opt_in(text: str) -> None:
    assert keyword_of(text) == "start"


@pytest.mark.parametrize(
    "text",
    ["the chain won't stop making noise", "please stop sending the wrong bike",
     "stop?? why", "bus stop near the shop", "stopping by tomorrow", "", "🛑"],
)  # fmt: skip
def test_a_stop_word_inside_a_sentence_is_no_keyword(text: str) -> None:
    assert keyword_of(text) is None


async def test_stop_is_confirmed_once_without_an_agent_and_recorded(
    db_url: str, graph_api: FakeGraphAPI, openai_server: FakeOpenAIServer
) -> None:
    customer = new_customer()
    async with running_service(outcome_settings(db_url, graph_api, openai_server)) as service:
        await say(service, text_message(customer, "Stop."), turn=False)
        assert graph_api.texts_to(customer) == [OPTED_OUT]
        assert "START" in OPTED_OUT and "anytime" in OPTED_OUT
        assert openai_server.requests == []  # no model, no agent
        [row] = await consent_of(service, customer)
        assert (row["opted_out"], row["source"]) == (True, "keyword")
        assert not await may_message_first(service.services.pool, customer)

        # A template's "Stop promotions" quick-reply button says the same; the time
        # recorded stays that of the first no.
        tap = message_value(customer, "button", {"text": "Stop promotions", "payload": "x"})
        await say(service, tap, turn=False)
        assert graph_api.texts_to(customer) == [OPTED_OUT, OPTED_OUT]
        assert await consent_of(service, customer) == [row]
        assert openai_server.requests == []


async def test_an_opted_out_customer_is_answered_but_not_asked_for_a_rating_until_start(
    db_url: str, graph_api: FakeGraphAPI, openai_server: FakeOpenAIServer
) -> None:
    customer = new_customer()
    settings = outcome_settings(db_url, graph_api, openai_server, flags=frozenset({"csat"}))
    async with running_service(settings) as service:
        await say(service, text_message(customer, "STOP"), turn=False)
        openai_server.script("We are open from 8:00 to 18:00, Monday to Saturday.")
        await say(service, text_message(customer, "What are your opening hours?"))
        assert graph_api.texts_to(customer)[-1].startswith("We are open")  # still answered
        [closed] = await hooks_of(service).close_idle(after_idle())
        assert closed.outcome == "resolved_bot"
        assert csat_lists(graph_api, customer) == []  # no question they did not ask for

        model_calls = len(openai_server.requests)
        await say(service, text_message(customer, "Start"), turn=False)
        assert graph_api.texts_to(customer)[-1] == OPTED_IN
        assert len(openai_server.requests) == model_calls
        [row] = await consent_of(service, customer)
        assert (row["opted_out"], row["source"]) == (False, "keyword")

        openai_server.script("A city bike is 5,000 RWF a day.")
        await say(service, text_message(customer, "How much is a city bike?"))
        [second] = await hooks_of(service).close_idle(after_idle())
        assert second.outcome == "resolved_bot"
        assert len(csat_lists(graph_api, customer)) == 1  # asked again


async def test_stop_inside_a_sentence_and_start_when_not_opted_out_go_to_the_agents(
    db_url: str, graph_api: FakeGraphAPI, openai_server: FakeOpenAIServer
) -> None:
    customer = new_customer()
    async with running_service(outcome_settings(db_url, graph_api, openai_server)) as service:
        openai_server.script("Sorry about that! Which bike did you order?")
        await say(service, text_message(customer, "please stop sending the wrong bike"))
        assert len(openai_server.requests) == 1
        assert graph_api.texts_to(customer) == ["Sorry about that! Which bike did you order?"]

        # "start" is also how people open a chat with a bot: nothing to opt back into.
        openai_server.script("Hello! How can I help you today?")
        await say(service, text_message(customer, "START"))
        assert OPTED_IN not in graph_api.texts_to(customer)
        assert await consent_of(service, customer) == []
        assert await may_message_first(service.services.pool, customer)


async def test_erasure_takes_the_choice_with_the_customer(
    db_url: str, graph_api: FakeGraphAPI, openai_server: FakeOpenAIServer
) -> None:
    customer = "25078" + str(uuid.uuid4().int)[:7]  # a valid MTN Rwanda number
    async with running_service(outcome_settings(db_url, graph_api, openai_server)) as service:
        await say(service, text_message(customer, "arrêter"), turn=False)
        assert len(await consent_of(service, customer)) == 1
        async with httpx.AsyncClient(base_url=service.base_url, headers=ADMIN_HEADERS) as admin:
            erased = await admin.delete(f"/admin/api/users/+{customer}")
        assert erased.status_code == 200, erased.text
        assert erased.json()["deleted"]["consent"] == 1
        assert await consent_of(service, customer) == []


async def test_an_operator_reply_after_the_24_hour_window_is_refused_before_queueing(
    db_url: str, graph_api: FakeGraphAPI, openai_server: FakeOpenAIServer
) -> None:
    customer = new_customer()
    async with running_service(outcome_settings(db_url, graph_api, openai_server)) as service:
        await say(service, text_message(customer, "I want to talk to a human please"))
        [conversation] = await service.fetch(
            "SELECT id FROM agent_conversations WHERE wa_id = %s AND status = 'escalated'",
            customer,
        )
        last_written = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=25)
        await wrote_last_at(service, conversation["id"], last_written)
        sent_before = len(graph_api.sent_to(customer))
        url = f"/admin/api/conversations/{conversation['id']}/messages"
        async with httpx.AsyncClient(base_url=service.base_url, headers=ADMIN_HEADERS) as admin:
            refused = await admin.post(url, json={"text": "Sorry for the wait!"})
            assert refused.status_code == 409
            detail = refused.json()["detail"]
            closed = f"{last_written + timedelta(hours=24):%Y-%m-%d %H:%M} UTC"
            assert f"24-hour customer-service window closed at {closed}" in detail
            assert "approved template" in detail
            jobs = await service.fetch(
                "SELECT count(*) AS n FROM procrastinate_jobs WHERE task_name = %s",
                OPERATOR_REPLY_TASK,
            )
            assert jobs[0]["n"] == 0  # nothing queued, nothing audited as sent
            audited = "SELECT 1 FROM audit_log WHERE action = 'conversation.reply'"
            assert await service.fetch(audited) == []

            fresh = datetime.now(UTC) - timedelta(hours=23)
            await wrote_last_at(service, conversation["id"], fresh)
            accepted = await admin.post(url, json={"text": "Sorry for the wait!"})
            assert accepted.status_code == 202, accepted.text
            uuid.UUID(accepted.json()["action_id"])
        await graph_api.wait_for_async(
            lambda: "Sorry for the wait!" in graph_api.texts_to(customer)
        )
        assert len(graph_api.sent_to(customer)) == sent_before + 1


async def wrote_last_at(service: RunningService, conversation_id: object, at: datetime) -> None:
    """The customer's last message, as if Meta had stamped and delivered it at `at`."""
    await service.execute(
        "UPDATE inbound_messages SET sent_at = %s, received_at = %s WHERE conversation_id = %s",
        at,
        at,
        conversation_id,
    )
    await service.execute(
        "UPDATE agent_conversations SET last_inbound_at = %s WHERE id = %s", at, conversation_id
    )
