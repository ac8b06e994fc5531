"""The rule-based menu: business actions by taps, with no model at all.

Customers for whom the `ai_agent` flag is off, and every customer when no model is
configured, browse the catalog, pick a free slot, book, pay and open a ticket from
WhatsApp lists and buttons. The menu decides what a tap means; the action itself is a
call of the agents' own tool (run by the `menu_tools` node), so the confirmation before
a payment or a cancellation, the idempotency of a re-run and every limit are the same
as on the agents' path.

Tap ids (the id a list row or button sends back):

    menu:main          the topic list            menu:sales       products
    product:<SKU>      one product               buy:<SKU>        pay for one (confirmed)
    menu:booking       book or list bookings     book:days        days with free slots
    day:<YYYY-MM-DD>   free slots that day       slot:<id>        book that slot
    bookings:mine      my upcoming bookings      booking:<id>     pay or cancel it
    menu:payment       unpaid bookings, status   paybooking:<id>  pay a booking (confirmed)
    cancelbooking:<id> cancel (confirmed)        payment:status   latest payment
    menu:tech_support  describe the problem: the next text opens a ticket
    menu:human         a person (routed to `escalate` before the menu runs)
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping
from typing import Any

from langchain_core.messages import AIMessage, ToolMessage
from langchain_core.tools import BaseTool
from langgraph.graph import END
from langgraph.runtime import Runtime

from graph.context import ConversationContext
from graph.privacy import mask_text
from graph.state import (
    ButtonsReply,
    ConversationState,
    MenuReply,
    MenuRow,
    Reply,
    ReplyButton,
)
from nodes.dispatch import customer_turn_text
from nodes.fallback import FallbackTexts, as_history, fallback_reply
from tools.common import DECLINED, REFUSED
from tools.listings import Listings, ListRow

TICKET = "ticket"
_MIN_TICKET_CHARS = 10
_SUBJECT_CHARS = 80


class MenuActions:
    """What each tap does; one method per kind of tap, each returning a state update."""

    def __init__(
        self, texts: FallbackTexts, listings: Listings, tools: Mapping[str, BaseTool]
    ) -> None:
        self.texts = texts
        self.listings = listings
        self.tools = tools

    def say(self, key: str, **values: object) -> str:
        return self.texts.actions[key].format(**values)

    async def on_tap(self, tapped: str, wa_id: str) -> dict[str, Any] | None:
        kind, _, value = tapped.partition(":")
        if tapped == "menu:sales":
            return self.listing("products", await self.listings.products())
        if tapped == "menu:booking":
            return self.buttons(
                self.say("booking"), ("book:days", "book_a_slot"), ("bookings:mine", "my_bookings")
            )
        if tapped == "book:days":
            return self.listing("pick_day", await self.listings.days_with_free_slots())
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
            return self.listing("pick_slot", slots, day=f"{day:%a %d %b}")
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


def make_menu_node(
    texts: FallbackTexts, listings: Listings | None, tools: Mapping[str, BaseTool]
) -> Any:
    """The menu node; without listings (LangGraph Studio, no database) it only offers
    topics, as the plain fallback does."""
    actions = MenuActions(texts, listings, tools) if listings is not None else None

    async def answer_from_menu(
        state: ConversationState, runtime: Runtime[ConversationContext]
    ) -> dict[str, Any]:
        wa_id = runtime.context.wa_id if runtime.context is not None else ""
        update = await _next_step(actions, state, wa_id) if actions and wa_id else None
        if update is not None:
            return update
        reply = fallback_reply(texts, state)
        return {"messages": [as_history(reply, "menu")], "replies": [reply], "menu_awaiting": None}

    return answer_from_menu


async def _next_step(
    actions: MenuActions, state: ConversationState, wa_id: str
) -> dict[str, Any] | None:
    messages = state["messages"]
    last = messages[-1]
    if isinstance(last, ToolMessage):
        request = next(m for m in reversed(messages) if isinstance(m, AIMessage) and m.tool_calls)
        call = next(c for c in request.tool_calls if c["id"] == last.tool_call_id)
        return await actions.after_tool(dict(call), last, wa_id)
    text, tapped = customer_turn_text(state)
    if tapped is not None:
        return await actions.on_tap(tapped, wa_id)
    if state.get("menu_awaiting") == TICKET and text:
        return actions.on_ticket_text(text)
    return None


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


def after_menu(state: ConversationState) -> str:
    last = state["messages"][-1]
    return "menu_tools" if isinstance(last, AIMessage) and last.tool_calls else END


def _parse_day(value: str) -> dt.date | None:
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        return None
