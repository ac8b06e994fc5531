"""What each tap of the rule-based menu does (nodes/menu.py has the node and the ids).

One method per kind of tap, each returning a state update: a list or buttons to show,
or a call of the agents' own tool for the `menu_tools` node to run.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping
from typing import Any

from langchain_core.messages import AIMessage, ToolMessage
from langchain_core.tools import BaseTool

from graph.privacy import mask_text
from graph.state import (
    ButtonsReply,
    MenuReply,
    MenuRow,
    Reply,
    ReplyButton,
)
from nodes.fallback import FallbackTexts, as_history
from nodes.local_formats import day_in
from nodes.menu_texts import MenuTexts
from tools.common import DECLINED, REFUSED
from tools.listings import Listings, ListRow

TICKET = "ticket"
DAY = "day"  # the days with free slots are on screen: a typed day picks one
_MIN_TICKET_CHARS = 10
_SUBJECT_CHARS = 80


class MenuActions:
    """What each tap does; one method per kind of tap, each returning a state update."""

    def __init__(
        self,
        texts: FallbackTexts,
        listings: Listings,
        tools: Mapping[str, BaseTool],
        *,
        menu_texts: MenuTexts | None = None,
        language: str | None = None,
    ) -> None:
        self.texts = texts
        self.listings = listings
        self.tools = tools
        self.menu_texts = menu_texts or MenuTexts(texts)
        self.language = language

    def serving(self, phone_number_id: str | None) -> MenuActions:
        """The same actions for one business number's conversation (its catalog)."""
        listings = self.listings.for_number(phone_number_id)
        return MenuActions(
            self.texts, listings, self.tools, menu_texts=self.menu_texts, language=self.language
        )

    def speaking(self, language: str | None) -> MenuActions:
        """The same actions, answering in `language` where the texts have it."""
        return MenuActions(
            self.texts, self.listings, self.tools, menu_texts=self.menu_texts, language=language
        )

    def say(self, key: str, **values: object) -> str:
        return self.menu_texts.say(key, self.language, **values)

    async def on_tap(self, tapped: str, wa_id: str) -> dict[str, Any] | None:
        kind, _, value = tapped.partition(":")
        if tapped == "menu:sales":
            return self.listing("products", await self.listings.products())
        if tapped == "menu:booking":
            return self.buttons(
                self.say("booking"), ("book:days", "book_a_slot"), ("bookings:mine", "my_bookings")
            )
        if tapped == "book:days":
            days = await self.listings.days_with_free_slots()
            return {**self.listing("pick_day", days), "menu_awaiting": DAY if days else None}
        if tapped == "bookings:mine":
            return self.listing("my_bookings_list", await self.listings.upcoming_bookings(wa_id))
        if tapped == "menu:payment":
            unpaid = await self.listings.upcoming_bookings(wa_id, unpaid_only=True)
            rows = [
                ListRow(f"paybooking:{r.id.split(':')[1]}", r.title, r.description) for r in unpaid
            ]
            rows.append(ListRow("payment:status", self.say("payment_status")))
            return self.listing("payments", rows)
        if tapped == "payment:status":
            return self.call("get_payment_status", {})
        if tapped == "menu:tech_support" and "create_support_ticket" in self.tools:
            return {**self.text(self.say("describe_problem")), "menu_awaiting": TICKET}
        if tapped == "menu:customer_service":
            return self.buttons(self.say("customer_service"), ("menu:human", "talk_to_person"))
        return await self.on_item(kind, value)

    async def on_item(self, kind: str, value: str) -> dict[str, Any] | None:
        """Taps that carry an id: a product, a day, a slot, a booking."""
        if kind == "product":
            return self.call("get_product", {"sku": value})
        if kind == "buy":
            return self.call("create_payment", {"items": [{"sku": value, "quantity": 1}]})
        if kind == "day" and (day := _parse_day(value)) is not None:
            slots = await self.listings.free_slots(day)
            return self.listing("pick_slot", slots, day=day_in(day, self.language))
        if kind == "slot" and value.isdigit():
            return self.call("create_booking", {"slot_id": int(value)})
        if kind == "booking" and value.isdigit():
            return self.buttons(
                self.say("booking_choice", booking=value),
                (f"paybooking:{value}", "pay"),
                (f"cancelbooking:{value}", "cancel_booking"),
            )
        if kind == "paybooking" and value.isdigit():
            return self.call("create_payment", {"booking_id": int(value)})
        if kind == "cancelbooking" and value.isdigit():
            return self.call("cancel_booking", {"booking_id": int(value)})
        return None

    def on_ticket_text(self, text: str) -> dict[str, Any] | None:
        if len(text.strip()) < _MIN_TICKET_CHARS:
            return {**self.text(self.say("describe_more")), "menu_awaiting": TICKET}
        subject = ticket_subject(text)
        return self.call("create_support_ticket", {"subject": subject, "description": text[:2000]})

    async def after_tool(
        self, call: dict[str, Any], result: ToolMessage, wa_id: str
    ) -> dict[str, Any]:
        """The tool's answer to the customer, with the next sensible taps."""
        content = str(result.content)
        if result.status == "error":  # the tool broke, or its arguments were refused
            return self.buttons(self.say("unavailable"), ("menu:human", "talk_to_person"))
        if content.startswith(REFUSED):
            reason = content.removeprefix(REFUSED).split(". ")[0].rstrip(".")
            return self.buttons(self.say("not_done", reason=reason))
        if content.startswith(DECLINED):
            return self.buttons(self.say("nothing_changed"))
        if call["name"] == "get_product":
            return await self.after_product(call["args"]["sku"], content)
        if call["name"] == "create_booking":
            booking = await self.listings.booking_on_slot(wa_id, int(call["args"]["slot_id"]))
            if booking is not None:
                return self.buttons(content, (f"paybooking:{booking}", "pay_now"))
        return self.buttons(content)

    async def after_product(self, sku: str, description: str) -> dict[str, Any]:
        kind = await self.listings.product_kind(sku)
        if kind == "product":
            return self.buttons(description, (f"buy:{sku}", "buy_one"))
        if kind == "service":
            return self.buttons(description, ("book:days", "book_a_slot"))
        return self.buttons(description)

    # --- replies -------------------------------------------------------------------
    def call(self, tool: str, args: dict[str, Any]) -> dict[str, Any] | None:
        """Hand the action to the tool node; None when this deployment lacks the tool."""
        if tool not in self.tools:
            return None
        call_id = f"menu_{uuid.uuid4().hex[:24]}"
        request = AIMessage(
            content="", name="menu", tool_calls=[{"name": tool, "args": args, "id": call_id}]
        )
        return {"messages": [request], "menu_awaiting": None}

    def listing(self, key: str, rows: list[ListRow], **values: object) -> dict[str, Any]:
        if not rows:
            return self.buttons(self.say(f"{key}_empty", **values))
        menu_rows: list[MenuRow] = []
        for row in rows[:9]:
            menu_row: MenuRow = {"id": row.id, "title": row.title[:24]}
            if row.description:
                menu_row["description"] = row.description[:72]
            menu_rows.append(menu_row)
        menu_rows.append({"id": "menu:main", "title": self.say("main_menu")[:24]})
        reply: MenuReply = {
            "kind": "menu",
            "body": self.say(key, **values)[:1024],
            "button": self.say("choose")[:20],
            "sections": [{"title": self.say("options")[:24], "rows": menu_rows}],
        }
        return self.reply(reply)

    def buttons(self, body: str, *choices: tuple[str, str]) -> dict[str, Any]:
        """Up to two choices of the caller's, then always the way back to the main menu."""
        buttons: list[ReplyButton] = [
            {"id": tap, "title": self.say(title)[:20]} for tap, title in choices[:2]
        ]
        buttons.append({"id": "menu:main", "title": self.say("main_menu")[:20]})
        reply: ButtonsReply = {"kind": "buttons", "body": body[:1024], "buttons": buttons}
        return self.reply(reply)

    def text(self, body: str) -> dict[str, Any]:
        return self.reply({"kind": "text", "text": body})

    def reply(self, reply: Reply) -> dict[str, Any]:
        return {"messages": [as_history(reply, "menu")], "replies": [reply], "menu_awaiting": None}


def ticket_subject(text: str, limit: int = _SUBJECT_CHARS) -> str:
    """The first line staff read of a ticket, from the customer's description.

    Masked before it is cut: a card or phone number cut in half is no longer one the
    masking recognises, and its digits would stay in the subject and the tool records.
    Cut between words, so no word (or mask label) is left in pieces.
    """
    line = mask_text(" ".join(text.split()))
    if len(line) <= limit:
        return line
    head = line[: limit - 1]
    return (head.rsplit(" ", 1)[0] if " " in head else head) + "…"


def _parse_day(value: str) -> dt.date | None:
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        return None
