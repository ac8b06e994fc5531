"""Episodes through the real webhook → worker → graph → fake Graph API path: what a turn
adds to its episode, closing after the idle time (the sweep is called with a clock set
ahead), closing on a goodbye the agent confirms, and not closing when it asks back."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from nodes.goodbye import is_goodbye
from nodes.notices import Notices
from tests.fakes.graph_api import FakeGraphAPI
from tests.fakes.meta_payloads import text_message
from tests.fakes.openai_server import FakeOpenAIServer
from tests.support import running_service
from tests.support_outcomes import episodes_of, new_customer, outcome_settings, say

NOTICES = Notices.load()


async def test_an_episode_closes_after_the_idle_time_as_resolved_by_the_bot(
    db_url: str, graph_api: FakeGraphAPI, openai_server: FakeOpenAIServer
) -> None:
    customer = new_customer()
    settings = outcome_settings(db_url, graph_api, openai_server, episode_idle_minutes=30)
    async with running_service(settings) as service:
        openai_server.script("We are open from 8:00 to 18:00, Monday to Saturday.")
        await say(service, text_message(customer, "What are your opening hours?"))
        openai_server.script("Yes, we take MTN and Airtel mobile money.")
        await say(service, text_message(customer, "Can I pay with mobile money?"))

        [episode] = await episodes_of(service, customer)
        assert episode["closed_at"] is None and episode["turns"] == 2
        assert episode["agents"] == ["customer_service", "payment"]  # the router switched
        assert episode["started_at"] <= episode["first_response_at"] <= episode["last_response_at"]
        assert episode["tokens"] > 0  # the fake model reports usage on every answer

        hooks = service.services.runner.outcomes
        assert hooks is not None
        soon = datetime.now(UTC) + timedelta(minutes=10)
        assert await hooks.close_idle(soon) == []  # 10 minutes quiet: still open
        later = datetime.now(UTC) + timedelta(minutes=31)
        [closed] = await hooks.close_idle(later)
        assert closed.outcome == "resolved_bot"

        [episode] = await episodes_of(service, customer)
        assert (episode["close_reason"], episode["outcome"]) == ("idle", "resolved_bot")

        openai_server.script("A city bike is 5,000 RWF a day.")
        await say(service, text_message(customer, "How much is a city bike?"))
        first, second = await episodes_of(service, customer)
        assert first["id"] == episode["id"] and second["closed_at"] is None


async def test_a_goodbye_closes_the_episode_unless_the_answer_asks_back(
    db_url: str, graph_api: FakeGraphAPI, openai_server: FakeOpenAIServer
) -> None:
    customer = new_customer()
    async with running_service(outcome_settings(db_url, graph_api, openai_server)) as service:
        openai_server.script("Helmets are included. Shall I book a bike for you?")
        await say(service, text_message(customer, "Do you give a helmet with the rental bike?"))
        openai_server.script("Anything else I can help you with?")
        await say(service, text_message(customer, "ok thanks"))  # after a question: the agent
        [episode] = await episodes_of(service, customer)
        assert episode["closed_at"] is None  # the agent asked back: not the end yet

        openai_server.script("You're welcome, enjoy your ride!")
        await say(service, text_message(customer, "No thanks, bye!"))
        [episode] = await episodes_of(service, customer)
        assert (episode["close_reason"], episode["outcome"]) == ("goodbye", "resolved_bot")
        assert episode["turns"] == 3
        assert graph_api.texts_to(customer)[-1] == "You're welcome, enjoy your ride!"


async def test_thanks_after_an_answer_are_answered_without_the_model_and_close_it(
    db_url: str, graph_api: FakeGraphAPI, openai_server: FakeOpenAIServer
) -> None:
    customer = new_customer()
    async with running_service(outcome_settings(db_url, graph_api, openai_server)) as service:
        openai_server.script("Oui, le casque est compris avec chaque location.")
        await say(service, text_message(customer, "Le casque est compris avec le vélo ?"))
        calls = len(openai_server.requests)
        await say(service, text_message(customer, "Super, merci beaucoup !"))

        assert len(openai_server.requests) == calls  # no model call for the thanks
        assert graph_api.texts_to(customer)[-1] == NOTICES.say("goodbye", "fr")
        [episode] = await episodes_of(service, customer)
        assert (episode["close_reason"], episode["outcome"]) == ("goodbye", "resolved_bot")

        # Thanks with a question still reach the agent, who reads the whole history.
        openai_server.script("Oui, un cadenas aussi.")
        await say(service, text_message(customer, "merci, et un cadenas ?"))
        assert graph_api.texts_to(customer)[-1] == "Oui, un cadenas aussi."
        assert "Avec plaisir" in str(openai_server.requests[-1])


async def test_an_escalation_nobody_answered_is_abandoned(
    db_url: str, graph_api: FakeGraphAPI, openai_server: FakeOpenAIServer
) -> None:
    customer = new_customer()
    async with running_service(outcome_settings(db_url, graph_api, openai_server)) as service:
        await say(service, text_message(customer, "I want to talk to a human please"))
        [episode] = await episodes_of(service, customer)
        assert episode["escalated"] and episode["waiting"] == "human"
        assert episode["agents"] == [] and episode["handoffs"] == 1  # bot → a person
        hooks = service.services.runner.outcomes
        assert hooks is not None
        [closed] = await hooks.close_idle(datetime.now(UTC) + timedelta(hours=1))
        assert (closed.outcome, closed.escalation_open) == ("abandoned", True)


def test_goodbye_phrases_in_several_languages() -> None:
    for text in [
        "thanks!",
        "Thank you very much, bye",
        "merci beaucoup",
        "murakoze cyane",
        "asante sana",
        "ok 👍 thanks",
        "gracias, adiós",
    ]:
        assert is_goodbye(text), text
    for text in [
        "thanks, how much is a helmet?",
        "thank you but the bike is broken",
        "ok",
        "hello",
        "bye the way I want to book for Sunday at 10",
    ]:
        assert not is_goodbye(text), text
