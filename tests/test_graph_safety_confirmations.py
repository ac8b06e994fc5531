"""Confirm / Cancel buttons answer only the question they came with.

WhatsApp keeps every question the bot asked on the customer's screen. A tap on the
Confirm button of an earlier question must not confirm whatever is pending now: it
confirms nothing, the customer is told so and sees the current question again.
"""

from __future__ import annotations

import uuid
from typing import Any

from tests.fakes.graph_api import FakeGraphAPI
from tests.fakes.meta_payloads import envelope, interactive_reply, text_message
from tests.support import RunningService, eventually, running_service, service_settings
from tools.demo import seed_demo

JSON = dict[str, Any]


class Chat:
    """One customer of the rule-based menu; each call is one whole turn."""

    def __init__(self, service: RunningService, graph_api: FakeGraphAPI) -> None:
        self.service = service
        self.graph_api = graph_api
        self.wa_id = "2507" + str(uuid.uuid4().int)[:8]

    async def send(self, payload: JSON) -> list[JSON]:
        """What the bot sent back for this message, once its run is finished."""
        before = len(self.graph_api.sent_to(self.wa_id))
        runs = await self._runs_done()
        assert (await self.service.post_webhook(envelope(payload))).status_code == 200

        async def finished() -> bool:
            return await self._runs_done() > runs

        await eventually(finished, within=20, what="the turn to finish")
        return self.graph_api.sent_to(self.wa_id)[before:]

    async def write(self, text: str) -> list[JSON]:
        return await self.send(text_message(self.wa_id, text))

    async def tap(self, message: JSON, title: str = "", *, prefix: str = "") -> list[JSON]:
        """Tap the option of `message` whose title contains `title` or whose id starts
        with `prefix`."""
        tap_id, tap_title = next(
            (i, t)
            for i, t in choices(message)
            if (prefix and i.startswith(prefix)) or (title and title in t)
        )
        is_list = message["interactive"]["type"] == "list"
        return await self.send(interactive_reply(self.wa_id, tap_id, tap_title, list_reply=is_list))

    async def _runs_done(self) -> int:
        rows = await self.service.fetch(
            "SELECT count(*) AS n FROM conversation_runs r JOIN agent_conversations c"
            " ON c.id = r.conversation_id WHERE c.wa_id = %s AND r.status = 'done'",
            self.wa_id,
        )
        return int(rows[0]["n"])


def choices(message: JSON) -> list[tuple[str, str]]:
    assert message["type"] == "interactive", message
    action = message["interactive"]["action"]
    if "buttons" in action:
        return [(b["reply"]["id"], b["reply"]["title"]) for b in action["buttons"]]
    return [(r["id"], r["title"]) for s in action["sections"] for r in s["rows"]]


def body(message: JSON) -> str:
    if message["type"] == "text":
        return str(message["text"]["body"])
    return str(message["interactive"]["body"]["text"])


async def book_first_free_slot(chat: Chat) -> list[JSON]:
    """Menu → Bookings → Book a slot → first day → first slot (confirmed if asked)."""
    [menu] = await chat.write("hello")
    [bookings] = await chat.tap(menu, "Bookings")
    [days] = await chat.tap(bookings, "Book a slot")
    [slots] = await chat.tap(days, prefix="day:")
    booked = await chat.tap(slots, prefix="slot:")
    if any(i.startswith("confirm:yes") for i, _ in choices(booked[-1])):
        booked = await chat.tap(booked[-1], prefix="confirm:yes")
    assert "Booked" in body(booked[-1]), body(booked[-1])
    return booked


async def test_an_earlier_questions_confirm_button_confirms_nothing_now(
    db_url: str, graph_api: FakeGraphAPI
) -> None:
    settings = service_settings(db_url, whatsapp_api_base_url=graph_api.base_url)
    async with running_service(settings) as service:
        await seed_demo(service.services.pool)
        ada = Chat(service, graph_api)
        booked = await book_first_free_slot(ada)

        # First question: pay for the booking. Ada says no.
        [pay_question] = await ada.tap(booked[-1], "Pay now")
        assert "Pay" in body(pay_question)
        [kept] = await ada.tap(pay_question, prefix="confirm:no")
        assert body(kept) == "Alright, nothing was changed."
        [menu] = await ada.tap(kept, "Main menu")

        # Second question: cancel the booking. It is pending now.
        [bookings] = await ada.tap(menu, "Bookings")
        [mine] = await ada.tap(bookings, "My bookings")
        [booking] = await ada.tap(mine, prefix="booking:")
        [cancel_question] = await ada.tap(booking, "Cancel booking")
        assert "Cancel booking" in body(cancel_question)

        # Ada taps Confirm on the first question, still on her screen.
        stale = await ada.tap(pay_question, prefix="confirm:yes")
        rows = await service.fetch("SELECT status FROM bookings WHERE wa_id = %s", ada.wa_id)
        assert [r["status"] for r in rows] == ["confirmed"]  # not cancelled
        assert await service.fetch("SELECT id FROM payments") == []  # nor paid
        [again] = stale
        assert "earlier question" in body(again)
        assert body(cancel_question) in body(again)  # the current question, asked again
        assert [t for _, t in choices(again)] == [t for _, t in choices(cancel_question)]

        # The current question's own button still works.
        done = await ada.tap(again, prefix="confirm:yes")
        rows = await service.fetch("SELECT status FROM bookings WHERE wa_id = %s", ada.wa_id)
        assert [r["status"] for r in rows] == ["cancelled"]
        assert "is cancelled" in body(done[-1])


async def test_writing_instead_of_tapping_cancels_the_question_and_is_answered(
    db_url: str, graph_api: FakeGraphAPI
) -> None:
    settings = service_settings(db_url, whatsapp_api_base_url=graph_api.base_url)
    async with running_service(settings) as service:
        await seed_demo(service.services.pool)
        ada = Chat(service, graph_api)
        booked = await book_first_free_slot(ada)
        [pay_question] = await ada.tap(booked[-1], "Pay now")

        cancelled, answered = await ada.write("menu")
        assert body(cancelled) == "Alright, nothing was changed."
        assert "Bookings" in [title for _, title in choices(answered)]  # the menu, for "menu"
        assert await service.fetch("SELECT id FROM payments") == []
        late = await ada.tap(pay_question, prefix="confirm:yes")
        assert "earlier question" in body(late[-1])
        assert await service.fetch("SELECT id FROM payments") == []
