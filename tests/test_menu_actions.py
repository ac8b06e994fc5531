"""The rule-based menu leads to the same business actions as the agents: with no model
(or `ai_agent` off) a customer books a slot and pays, each after tapping Confirm, buys a
product and opens a ticket, all by taps, and no model token is spent."""

from __future__ import annotations

import uuid
from typing import Any

from tests.fakes.graph_api import FakeGraphAPI
from tests.fakes.meta_payloads import envelope, interactive_reply, text_message
from tests.fakes.openai_server import FakeOpenAIServer
from tests.support import RunningService, running_service, service_settings
from tools.demo import seed_demo

JSON = dict[str, Any]


class Customer:
    """One WhatsApp customer tapping through the menu, reading what the bot sends."""

    def __init__(self, service: RunningService, graph_api: FakeGraphAPI) -> None:
        self.service = service
        self.graph_api = graph_api
        self.wa_id = "2507" + str(uuid.uuid4().int)[:8]

    async def send(self, payload: JSON) -> JSON:
        before = len(self.graph_api.sent_to(self.wa_id))
        response = await self.service.post_webhook(envelope(payload))
        assert response.status_code == 200
        await self.graph_api.wait_for_async(
            lambda: len(self.graph_api.sent_to(self.wa_id)) > before, 15
        )
        return self.graph_api.sent_to(self.wa_id)[-1]

    async def write(self, text: str) -> JSON:
        return await self.send(text_message(self.wa_id, text))

    async def tap(
        self, message: JSON, title_part: str = "", *, row_id: str = "", prefix: str = ""
    ) -> JSON:
        """Tap the first option of `message` whose title contains `title_part`, whose id
        is `row_id` or starts with `prefix`."""
        options = choices(message)
        chosen = next(
            (i, t)
            for i, t in options
            if (row_id and i == row_id)
            or (prefix and i.startswith(prefix))
            or (title_part and title_part in t)
        )
        is_list = message["interactive"]["type"] == "list"
        return await self.send(interactive_reply(self.wa_id, *chosen, list_reply=is_list))


def choices(message: JSON) -> list[tuple[str, str]]:
    """(id, title) of every button or list row of an interactive message."""
    assert message["type"] == "interactive", body(message)
    action = message["interactive"]["action"]
    if "buttons" in action:
        return [(b["reply"]["id"], b["reply"]["title"]) for b in action["buttons"]]
    return [(r["id"], r["title"]) for s in action["sections"] for r in s["rows"]]


def body(message: JSON) -> str:
    if message["type"] == "text":
        return str(message["text"]["body"])
    return str(message["interactive"]["body"]["text"])


async def test_without_a_model_a_customer_books_a_slot_and_pays_after_confirming(
    db_url: str, graph_api: FakeGraphAPI
) -> None:
    settings = service_settings(db_url, whatsapp_api_base_url=graph_api.base_url)
    async with running_service(settings) as service:
        await seed_demo(service.services.pool)
        ada = Customer(service, graph_api)

        menu = await ada.write("hello")
        bookings = await ada.tap(menu, "Bookings")
        days = await ada.tap(bookings, "Book a slot")
        first_day = choices(days)[0]
        assert first_day[0].startswith("day:")
        slots = await ada.tap(days, row_id=first_day[0])
        slot_id, slot_title = choices(slots)[0]
        assert slot_id.startswith("slot:")

        asked = await ada.tap(slots, row_id=slot_id)
        assert slot_title.split("–")[0] in body(asked) and "RWF" in body(asked)  # when, price
        assert await service.fetch("SELECT id FROM bookings") == []  # nothing before the tap
        booked = await ada.tap(asked, prefix="confirm:yes")
        rows = await service.fetch(
            "SELECT id, slot_id, status FROM bookings WHERE wa_id = %s", ada.wa_id
        )
        assert [(r["slot_id"], r["status"]) for r in rows] == [(int(slot_id[5:]), "confirmed")]
        assert "Booked" in body(booked)
        assert slot_title.split("–")[0] in body(booked)  # the time the customer tapped

        question = await ada.tap(booked, "Pay now")
        # The buttons are bound to this question: `confirm:yes:<tag>`, one tag for both.
        ids = [i for i, _ in choices(question)]
        assert [i.rsplit(":", 1)[0] for i in ids] == ["confirm:yes", "confirm:no"]
        assert len({i.rsplit(":", 1)[1] for i in ids}) == 1
        assert await service.fetch("SELECT id FROM payments") == []  # nothing before the tap

        paid = await ada.tap(question, prefix="confirm:yes")
        payments = await service.fetch("SELECT booking_id, status FROM payments")
        assert [(p["booking_id"], p["status"]) for p in payments] == [(rows[0]["id"], "pending")]
        assert "Payment created" in body(paid)

        # Tapping "Payments" again offers nothing to pay for that booking any more.
        menu_again = await ada.write("menu")
        payments_menu = await ada.tap(menu_again, "Payments")
        assert not any(i.startswith("paybooking:") for i, _ in choices(payments_menu))


async def test_with_ai_off_the_menu_sells_a_product_cancels_on_request_and_opens_a_ticket(
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

        menu = await ada.write("hi")
        products = await ada.tap(menu, "Products")
        offered = {i for i, _ in choices(products) if i.startswith("product:")}
        in_stock = await service.fetch(
            "SELECT sku FROM catalog_items WHERE kind = 'product' AND stock > 0"
        )
        sellable = sorted(offered & {f"product:{r['sku']}" for r in in_stock})
        assert sellable, offered
        detail = await ada.tap(products, row_id=sellable[0])
        question = await ada.tap(detail, "Buy one")
        declined = await ada.tap(question, prefix="confirm:no")
        assert await service.fetch("SELECT id FROM payments") == []
        assert body(declined) == "Alright, nothing was changed."

        help_menu = await ada.write("menu")
        asked = await ada.tap(help_menu, "Technical help")
        assert "ticket" in body(asked)
        opened = await ada.write("The rear brake of my rental bike squeaks and barely stops")
        tickets = await service.fetch("SELECT subject, description FROM support_tickets")
        assert len(tickets) == 1 and "rear brake" in tickets[0]["description"]
        assert "ticket" in body(opened).lower()

    assert openai_server.requests == []  # not one model call for this customer
