"""Zero-token conversations: with no model (or `ai_agent` off) typed words lead to the
action a tap would — a day's free slots, matching products with prices, the bookings
left to pay, a support ticket, a person — in the customer's language where the menu has
its texts; unsure, the topic menu. Real service, real database, not one model call."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator
from zoneinfo import ZoneInfo

import pytest
from babel.dates import format_date

from nodes.intents.shared import shared_reader
from tests.fakes.graph_api import FakeGraphAPI
from tests.fakes.openai_server import FakeOpenAIServer
from tests.support import RunningService, running_service, service_settings
from tests.test_menu_actions import Customer, body, choices
from tools.demo import seed_demo

ZONE = ZoneInfo("Africa/Kigali")


@pytest.fixture(scope="module", autouse=True)
async def reader_ready() -> None:
    """The menu's reader is fitted once per process on the first typed message (seconds);
    fitting it here keeps the first customer's reply within the test's wait."""
    await asyncio.to_thread(shared_reader)


@pytest.fixture
async def no_model_service(db_url: str, graph_api: FakeGraphAPI) -> AsyncIterator[RunningService]:
    settings = service_settings(db_url, whatsapp_api_base_url=graph_api.base_url)
    async with running_service(settings) as service:
        await seed_demo(service.services.pool)
        yield service


def next_weekday(weekday: int) -> dt.date:
    """The day "Saturday" means (dateparser, future preferred): never today."""
    today = dt.datetime.now(ZONE).date()
    return today + dt.timedelta(days=(weekday - today.weekday() - 1) % 7 + 1)


def ids(message: dict[str, object]) -> list[str]:
    return [i for i, _ in choices(message)]


async def test_a_typed_booking_request_shows_the_named_days_slots_and_books(
    no_model_service: RunningService, graph_api: FakeGraphAPI
) -> None:
    service = no_model_service
    ada = Customer(service, graph_api)
    saturday = next_weekday(5)

    slots = await ada.write("I want to book a bike for Saturday")
    assert f"{saturday:%a %d %b}" in body(slots), body(slots)
    slot_ids = [i for i in ids(slots) if i.startswith("slot:")]
    assert slot_ids
    rows = await service.fetch(
        "SELECT id FROM booking_slots WHERE id = ANY(%s)"
        " AND (starts_at AT TIME ZONE 'Africa/Kigali')::date = %s",
        [int(i[5:]) for i in slot_ids],
        saturday,
    )
    assert len(rows) == len(slot_ids)  # every slot offered is on that Saturday

    asked = await ada.tap(slots, row_id=slot_ids[0])
    booked = await ada.tap(asked, prefix="confirm:yes")
    assert "Booked" in body(booked)
    [booking] = await service.fetch("SELECT id FROM bookings WHERE wa_id = %s", ada.wa_id)

    # A typed payment question lists what is left to pay: that booking.
    unpaid = await ada.write("how can I pay for it?")
    assert f"paybooking:{booking['id']}" in ids(unpaid)


async def test_days_named_in_other_languages_show_that_days_slots_in_that_language(
    no_model_service: RunningService, graph_api: FakeGraphAPI
) -> None:
    tomorrow = dt.datetime.now(ZONE).date() + dt.timedelta(days=1)
    for text, opening, language in [
        ("je voudrais réserver un vélo pour demain", "Créneaux libres", "fr"),
        ("nataka kukodi baiskeli kesho", "Nafasi wazi", "sw"),
        ("ndashaka gukodesha igare ejo", "Imyanya ikiri ubusa", "rw"),
    ]:
        customer = Customer(no_model_service, graph_api)
        reply = await customer.write(text)
        if tomorrow.weekday() == 6:  # the shop is closed on Sundays: the days that have
            assert any(i.startswith("day:") for i in ids(reply)), body(reply)
            continue
        assert body(reply).startswith(opening), (text, body(reply))
        # The day as that language writes it (CLDR), not the English "Tue 08 Dec".
        label = format_date(tomorrow, "EEE dd MMM", locale=language).rstrip(".")
        assert label in body(reply), (label, body(reply))
        assert any(i.startswith("slot:") for i in ids(reply))


async def test_a_booking_request_without_a_day_lists_the_days_then_a_typed_day_picks_one(
    no_model_service: RunningService, graph_api: FakeGraphAPI
) -> None:
    ada = Customer(no_model_service, graph_api)
    days = await ada.write("can I reserve a mountain bike?")
    day_ids = [i for i in ids(days) if i.startswith("day:")]
    assert day_ids and "bookings:mine" in ids(days)
    saturday = next_weekday(5)
    slots = await ada.write("saturday")
    assert f"{saturday:%a %d %b}" in body(slots)


async def test_product_questions_show_the_matching_products_with_prices(
    no_model_service: RunningService, graph_api: FakeGraphAPI
) -> None:
    ada = Customer(no_model_service, graph_api)
    bikes = await ada.write("how much is a city bike?")
    assert set(ids(bikes)) >= {"product:RENT-CITY", "product:BIKE-CITY-REFURB"}
    assert "product:ACC-HELMET" not in ids(bikes)
    rows = bikes["interactive"]["action"]["sections"][0]["rows"]
    assert all("RWF" in r["description"] for r in rows if r["id"].startswith("product:"))

    juma = Customer(no_model_service, graph_api)
    helmets = await juma.write("kofia ya baiskeli ni bei gani?")
    assert {i for i in ids(helmets) if i.startswith("product:")} == {
        "product:ACC-HELMET",
        "product:ACC-HELMET-KID",
    }
    assert body(helmets).startswith("Hivi ndivyo")  # Swahili texts


async def test_a_problem_report_opens_a_ticket_and_a_person_is_handed_over(
    no_model_service: RunningService, graph_api: FakeGraphAPI
) -> None:
    service = no_model_service
    ada = Customer(service, graph_api)
    opened = await ada.write("the chain of my rental bike keeps falling off on every hill")
    tickets = await service.fetch(
        "SELECT description FROM support_tickets WHERE wa_id = %s", ada.wa_id
    )
    assert [t["description"] for t in tickets] == [
        "the chain of my rental bike keeps falling off on every hill"
    ]
    assert "ticket" in body(opened).lower()

    bea = Customer(service, graph_api)
    handed = await bea.write("I want to talk to a person")
    assert "member of our team" in body(handed)
    [row] = await service.fetch(
        "SELECT status FROM agent_conversations WHERE wa_id = %s", bea.wa_id
    )
    assert row["status"] == "escalated"


async def test_unsure_messages_get_the_topic_menu(
    no_model_service: RunningService, graph_api: FakeGraphAPI
) -> None:
    ada = Customer(no_model_service, graph_api)
    menu = await ada.write("hmm")
    assert "menu:booking" in ids(menu) and "menu:sales" in ids(menu)
    assert body(menu).startswith("Hello!")


async def test_the_topic_menu_is_in_the_customers_language(
    no_model_service: RunningService, graph_api: FakeGraphAPI
) -> None:
    """Unsure what a French speaker wants, the topic menu asks in French."""
    marie = Customer(no_model_service, graph_api)
    menu = await marie.write("bonjour, c'est encore moi, vous vous souvenez de moi ?")
    assert "menu:booking" in ids(menu), body(menu)
    assert body(menu).startswith("Bonjour !"), body(menu)
    assert ("menu:booking", "Réservations") in choices(menu)


async def test_with_ai_off_typed_requests_act_without_a_model_call(
    db_url: str, graph_api: FakeGraphAPI, openai_server: FakeOpenAIServer
) -> None:
    settings = service_settings(
        db_url,
        whatsapp_api_base_url=graph_api.base_url,
        openai_api_key="sk-test",
        openai_base_url=openai_server.base_url + "/v1",
        flags=frozenset({"-ai_agent"}),
    )
    async with running_service(settings) as service:
        await seed_demo(service.services.pool)
        ada = Customer(service, graph_api)
        locks = await ada.write("vous avez des cadenas ?")
        assert "product:ACC-LOCK-U" in ids(locks)
        assert body(locks).startswith("Voici")
        pay = await ada.write("nishyura nte?")
        assert "payment:status" in ids(pay)
    assert openai_server.requests == []


async def test_with_the_model_down_a_typed_booking_request_still_shows_that_days_slots(
    db_url: str, graph_api: FakeGraphAPI, openai_server: FakeOpenAIServer
) -> None:
    settings = service_settings(
        db_url,
        whatsapp_api_base_url=graph_api.base_url,
        openai_api_key="sk-test",
        openai_base_url=openai_server.base_url + "/v1",
    )
    async with running_service(settings) as service:
        await seed_demo(service.services.pool)
        ada = Customer(service, graph_api)
        openai_server.outage(120)
        slots = await ada.write("I want to book a bike for Saturday")
        assert f"{next_weekday(5):%a %d %b}" in body(slots), body(slots)
        assert any(i.startswith("slot:") for i in ids(slots))
        openai_server.outage(0)
        openai_server.script("Happy to help again.")
        assert body(await ada.write("thanks, and can you tell me more?")) == "Happy to help again."
    assert openai_server.requests, "the model was tried before the menu answered"
