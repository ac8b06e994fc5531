"""The service's own notices are in the customer's language: recognised from their
words, kept on the contact for turns without words (a tap), followed when they switch,
and English for a language the service has no texts for."""

from __future__ import annotations

import datetime as dt
import re
import uuid

from graph.composition.confirmation_texts import ConfirmationTexts
from nodes.notices import REFERENCE_LANGUAGE, Notices
from tests.fakes.graph_api import FakeGraphAPI
from tests.fakes.meta_payloads import envelope, interactive_reply, text_message
from tests.fakes.openai_server import FakeOpenAIServer, ToolCall
from tests.support import RunningService, eventually, running_service
from tests.support_outcomes import new_customer, outcome_settings
from tests.support_outcomes import say as outcome_say
from tests.test_accounting import console_settings, say
from tests.test_agent_flows import agent_settings, next_saturday_rental_slot, tap_confirm
from tests.test_agent_flows import say as flow_say
from tests.test_csat import after_idle, csat_lists, hooks_of
from tools.demo import seed_demo

NOTICES = Notices.load()


def test_every_language_has_the_notices_with_their_placeholders() -> None:
    """A translation names only known notices, with the same {placeholders}; the
    languages the router recognises all have their texts, and each fits a message."""
    reference = NOTICES.reference
    assert {"en", "fr", "es", "pt", "sw", "rw"} <= NOTICES.languages
    for language, texts in NOTICES.by_language.items():
        assert set(texts) <= set(reference), language
        for key, text in texts.items():
            fields = set(re.findall(r"{(\w+)}", text))
            assert fields == set(re.findall(r"{(\w+)}", reference[key])), (language, key)
            assert 0 < len(text) <= 1024, (language, key)
    for language in NOTICES.languages:  # the rating question is a WhatsApp list
        assert len(NOTICES.say("csat_button", language)) <= 20, language
        for key in ("csat_section", "csat_5", "csat_4", "csat_3", "csat_2", "csat_1"):
            assert len(NOTICES.say(key, language)) <= 24, (language, key)
        assert len(NOTICES.say("csat_skip", language)) <= 24, language
        for key in ("csat_5_description", "csat_1_description", "csat_skip_description"):
            assert len(NOTICES.say(key, language)) <= 72, (language, key)
    assert NOTICES.say("apology", "de") == reference["apology"]  # no German texts
    assert NOTICES.say("rate_block", "fr", duration="5 minutes").endswith("après.")


def test_a_wait_is_written_in_the_language_of_the_notice_it_goes_into() -> None:
    ten_minutes, an_hour = dt.timedelta(minutes=10), dt.timedelta(seconds=3590)
    assert "pendant 10 minutes" in NOTICES.say("rate_block", "fr", duration=ten_minutes)
    assert "dakika 10" in NOTICES.say("rate_block", "sw", duration=ten_minutes)
    assert "1 hora" in NOTICES.say("rate_block", "es", duration=an_hour)
    # German has no notices: the English text, with an English duration in it.
    assert "paused for 10 minutes" in NOTICES.say("rate_block", "de", duration=ten_minutes)


async def _tap(service: RunningService, customer: str) -> None:
    """A tap on a button (no words to recognise a language in), waited for."""
    done = "SELECT count(*) AS n FROM conversation_runs WHERE status = 'done'"
    before = (await service.fetch(done))[0]["n"]
    tap = interactive_reply(customer, "menu:booking", "Bookings")
    assert (await service.post_webhook(envelope(tap))).status_code == 200

    async def finished() -> bool:
        return bool((await service.fetch(done))[0]["n"] > before)

    await eventually(finished, within=20, what="the tap's turn to finish")


async def test_a_capped_customer_reads_the_cap_in_their_language_even_after_a_tap(
    db_url: str, graph_api: FakeGraphAPI, openai_server: FakeOpenAIServer
) -> None:
    settings = console_settings(
        db_url, graph_api, openai_server, conversation_token_cap=1, cap_action="message"
    )
    french, english = ("2507" + str(uuid.uuid4().int)[:8] for _ in range(2))
    async with running_service(settings) as service:
        openai_server.script("Bonjour ! Quel jour ?", "Hello! Which day?")
        await say(service, french, "Bonjour, je voudrais réserver un vélo pour samedi")
        await say(service, english, "Hello, I would like to book a bike for Saturday")

        await say(service, french, "samedi matin s'il vous plaît, pour deux personnes")
        assert graph_api.texts_to(french)[-1] == NOTICES.say("spending_cap", "fr")
        await _tap(service, french)  # no words: the language kept on the contact
        assert graph_api.texts_to(french)[-1] == NOTICES.say("spending_cap", "fr")
        rows = await service.fetch("SELECT language FROM contacts WHERE wa_id = %s", french)
        assert rows[0]["language"] == "fr"

        # They switch to Swahili: the next notice follows them.
        await say(service, french, "nataka kukodi baiskeli kesho asubuhi tafadhali")
        assert graph_api.texts_to(french)[-1] == NOTICES.say("spending_cap", "sw")

        await say(service, english, "Saturday morning please, for two people")
        assert graph_api.texts_to(english)[-1] == NOTICES.say("spending_cap", REFERENCE_LANGUAGE)


async def test_a_person_is_promised_in_the_customers_language(
    db_url: str, graph_api: FakeGraphAPI, openai_server: FakeOpenAIServer
) -> None:
    """The handover is written by the graph: from the customer's own words."""
    french, kinyarwanda = ("2507" + str(uuid.uuid4().int)[:8] for _ in range(2))
    async with running_service(console_settings(db_url, graph_api, openai_server)) as service:
        await say(service, french, "Bonjour, je veux parler à quelqu'un de votre équipe")
        await say(service, kinyarwanda, "Muraho, ndashaka kuvugana n'umuntu w'ikipe yanyu")
    assert graph_api.texts_to(french) == [NOTICES.say("handover", "fr")]
    assert graph_api.texts_to(kinyarwanda) == [NOTICES.say("handover", "rw")]


async def test_stop_is_confirmed_in_the_language_the_customer_wrote_in_before(
    db_url: str, graph_api: FakeGraphAPI, openai_server: FakeOpenAIServer
) -> None:
    """The word STOP tells no language: the one recognised from their first words does."""
    customer = "2507" + str(uuid.uuid4().int)[:8]
    async with running_service(console_settings(db_url, graph_api, openai_server)) as service:
        openai_server.script("Habari! Siku gani?")
        await say(service, customer, "Habari, nataka kukodi baiskeli kesho asubuhi")
        await say(service, customer, "STOP")
    assert graph_api.texts_to(customer)[-1] == NOTICES.say("opted_out", "sw")


async def test_the_rating_question_and_its_thanks_are_in_the_customers_language(
    db_url: str, graph_api: FakeGraphAPI, openai_server: FakeOpenAIServer
) -> None:
    """Asked after the episode closed, outside any turn: the language kept on the
    contact since the customer's first words."""
    customer = new_customer()
    settings = outcome_settings(db_url, graph_api, openai_server, flags=frozenset({"csat"}))
    async with running_service(settings) as service:
        openai_server.script("Nous sommes ouverts de 8 h à 18 h, du lundi au samedi.")
        await outcome_say(service, text_message(customer, "Quels sont vos horaires d'ouverture ?"))
        await hooks_of(service).close_idle(after_idle())
        [question] = csat_lists(graph_api, customer)
        assert question["body"]["text"] == NOTICES.say("csat_question", "fr")
        rows = question["action"]["sections"][0]["rows"]
        assert [row["title"] for row in rows][-1] == NOTICES.say("csat_skip", "fr")
        tap = interactive_reply(customer, rows[0]["id"], rows[0]["title"], list_reply=True)
        await outcome_say(service, tap, turn=False)
    assert graph_api.texts_to(customer)[-1] == NOTICES.say("csat_thanks_rated", "fr")


def test_every_language_confirms_with_buttons_that_fit() -> None:
    texts = ConfirmationTexts.load()
    assert {"fr", "es", "pt", "sw", "rw"} <= set(texts.translations)
    for language in ("en", *texts.translations):
        translated = texts.in_language(language)
        assert 0 < len(translated.confirm) <= 20 and 0 < len(translated.cancel) <= 20, language
        assert translated.confirm != translated.cancel, language
    assert texts.in_language("de") is texts  # a language without texts: English


async def test_a_french_speaker_confirms_a_booking_with_french_buttons(
    db_url: str, graph_api: FakeGraphAPI, openai_server: FakeOpenAIServer
) -> None:
    customer = new_customer()
    async with running_service(agent_settings(db_url, graph_api, openai_server)) as service:
        await seed_demo(service.services.pool)
        saturday, slot_id = await next_saturday_rental_slot(service)
        openai_server.script(
            ToolCall("check_availability", {"date": saturday.isoformat(), "kind": "rental"}),
            ToolCall("create_booking", {"slot_id": slot_id, "notes": "vélo de ville"}),
        )
        asking = text_message(customer, "Bonjour, je voudrais réserver un vélo pour samedi")
        await flow_say(service, graph_api, customer, asking)
        question = graph_api.sent_to(customer)[-1]["interactive"]
        await flow_say(service, graph_api, customer, tap_confirm(graph_api, customer))
        booked = await service.fetch("SELECT status FROM bookings WHERE wa_id = %s", customer)
        receipt = graph_api.texts_to(customer)[-1]  # sent as it is, no model call
    assert receipt.startswith("C'est fait ✅\nBooking #") and "City bike" in receipt
    titles = [button["reply"]["title"] for button in question["action"]["buttons"]]
    assert titles == ["Confirmer", "Annuler"]
    assert question["body"]["text"].startswith("Merci de confirmer :\n")
    assert booked == [{"status": "confirmed"}]  # the French Confirm is the same yes
