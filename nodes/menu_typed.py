"""Typed requests in the rule-based menu: the words lead to the action a tap would.

"I want a bike on Saturday" shows Saturday's free slots, "combien coûte un casque ?"
the helmets with their prices, "nalipaje?" the bookings left to pay, "the chain keeps
falling off" opens a support ticket with those words, "a person please" hands over.
Every action is the tap's own (same lists, same tools, same confirmations); what the
customer asked is read by nodes/intents without any model. Unsure: None, and the topic
menu answers as before.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable
from typing import Any

from langgraph.types import Command

from graph.state import ConversationState
from nodes.intents import ProductWords, RequestReader, TypedRequest, rank_products
from nodes.local_formats import day_in
from nodes.menu_actions import DAY, TICKET, MenuActions
from nodes.notices import latest_language
from tools.listings import ListRow

# Enough rows for a shop's whole catalog to be matched (the list then shows nine).
CATALOG_ROWS = 200
# A day's slots looked at to find those of the resource asked for (a list shows nine).
DAY_SLOT_ROWS = 60
_MIN_TICKET_WORDS = 3


class TypedMenu:
    """What the menu does with a typed message; shared by every conversation.

    `reader` returns the request reader, or None while it is still being fitted (a
    process's first seconds): typed words then get the topic menu, as unsure ones do,
    rather than keeping the customer waiting.
    """

    def __init__(
        self, reader: Callable[[], RequestReader | None], words: ProductWords | None = None
    ) -> None:
        self.reader = reader
        self.words = words or ProductWords.load()

    def language(self, state: ConversationState) -> str | None:
        """The language of the customer's latest typed words that tell one (taps and
        "ok" do not)."""
        reader = self.reader()
        return latest_language(state, reader.language_of) if reader is not None else None

    async def answer(
        self, actions: MenuActions, state: ConversationState, text: str, wa_id: str
    ) -> dict[str, Any] | Command[str] | None:
        reader = self.reader()
        if reader is None:
            return None
        today = dt.datetime.now(actions.listings.zone).date()
        awaiting_day = state.get("menu_awaiting") == DAY
        request = await asyncio.to_thread(reader.read, text, today, awaiting_day=awaiting_day)
        return await self.act(actions.speaking(request.language), request, wa_id)

    async def act(
        self, actions: MenuActions, request: TypedRequest, wa_id: str
    ) -> dict[str, Any] | Command[str] | None:
        if request.action == "human":
            return Command(goto="escalate", update={"menu_awaiting": None})
        if request.action == "booking":
            return await self.booking(actions, request.day, request.text)
        if request.action == "products":
            return await self.products(actions, request.text)
        if request.action == "payment":
            return await actions.on_tap("menu:payment", wa_id)
        if request.action == "ticket" and "create_support_ticket" in actions.tools:
            if len(request.text.split()) < _MIN_TICKET_WORDS:
                return {**actions.text(actions.say("describe_problem")), "menu_awaiting": TICKET}
            return actions.on_ticket_text(request.text)
        return None  # customer service, or unsure: the topic menu

    async def booking(
        self, actions: MenuActions, day: dt.date | None, text: str = ""
    ) -> dict[str, Any]:
        """The named day's free slots; else (or when it has none) the days that have."""
        if day is not None:
            slots = await self.slots_asked_for(actions, day, text)
            if slots:
                return actions.listing("pick_slot", slots, day=day_in(day, actions.language))
        days = await actions.listings.days_with_free_slots()
        if not days:
            return actions.listing("pick_day", [])
        rows = [*days, ListRow("bookings:mine", actions.say("my_bookings"))]
        if day is None:
            listed = actions.listing("pick_day", rows)
        else:
            listed = actions.listing("no_slots_on_day", rows, day=day_in(day, actions.language))
        return {**listed, "menu_awaiting": DAY}

    async def slots_asked_for(self, actions: MenuActions, day: dt.date, text: str) -> list[ListRow]:
        """The day's free slots of what the words name ("a mountain bike", "a repair":
        matched against each slot's resource, as products are), in time order; all of
        them when the words name nothing."""
        slots = await actions.listings.free_slots(day, limit=DAY_SLOT_ROWS)
        resources = [ListRow(slot.id, slot.description) for slot in slots]
        wanted = {row.id for row in rank_products(resources, text, self.words)}
        return [slot for slot in slots if slot.id in wanted] or slots

    async def products(self, actions: MenuActions, text: str) -> dict[str, Any]:
        catalog = await actions.listings.products(limit=CATALOG_ROWS)
        matching = rank_products(catalog, text, self.words)
        if matching:
            return actions.listing("products_matching", matching)
        return actions.listing("products", await actions.listings.products())
