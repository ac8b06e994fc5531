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

Typed words lead to the same actions (nodes/menu_typed.py): the intent router's
confident local path picks the action, the day named picks the slots, the words name
the products; unsure, the topic menu answers as before. No model is ever called.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from langchain_core.messages import AIMessage, ToolMessage
from langchain_core.tools import BaseTool
from langgraph.runtime import Runtime
from langgraph.types import Command

from graph.context import ConversationContext
from graph.state import ConversationState, latest_customer_messages, whatsapp_meta
from nodes.dispatch import customer_turn_text
from nodes.fallback import FallbackTexts, as_history, fallback_reply
from nodes.intents import RequestReader
from nodes.intents.shared import ready_shared_reader
from nodes.menu_actions import DAY, TICKET, MenuActions, ticket_subject
from nodes.menu_texts import MenuTexts
from nodes.menu_typed import TypedMenu
from nodes.node_types import RoutingNode
from tools.listings import Listings

__all__ = ["DAY", "TICKET", "MenuActions", "after_menu", "make_menu_node", "ticket_subject"]


def make_menu_node(
    texts: FallbackTexts,
    listings: Listings | None,
    tools: Mapping[str, BaseTool],
    reader: RequestReader | None = None,
) -> RoutingNode:
    """The menu node; without listings (LangGraph Studio, no database) it only offers
    topics, as the plain fallback does. `reader` understands typed requests (built over
    the service's intent router); None: the process's shared one, built on first use."""
    actions = None
    typed = None
    if listings is not None:
        actions = MenuActions(texts, listings, tools, menu_texts=MenuTexts.load(texts))
        typed = TypedMenu((lambda: reader) if reader is not None else ready_shared_reader)
        typed.reader()  # the shared one starts fitting now, at start, in the background

    async def answer_from_menu(
        state: ConversationState, runtime: Runtime[ConversationContext]
    ) -> dict[str, Any] | Command[str]:
        wa_id = runtime.context.wa_id if runtime.context is not None else ""
        update = None
        if actions is not None and typed is not None and wa_id:
            number = runtime.context.phone_number_id if runtime.context is not None else None
            update = await _next_step(actions.serving(number), typed, state, wa_id)
        if update is not None:
            return update
        language = typed.language(state) if typed is not None else None
        if language is None and runtime.context is not None:
            language = runtime.context.language
        reply = fallback_reply(texts.in_language(language), state)
        return {"messages": [as_history(reply, "menu")], "replies": [reply], "menu_awaiting": None}

    return answer_from_menu


async def _next_step(
    actions: MenuActions, typed: TypedMenu, state: ConversationState, wa_id: str
) -> dict[str, Any] | Command[str] | None:
    messages = state["messages"]
    last = messages[-1]
    text, tapped = customer_turn_text(state)
    if isinstance(last, ToolMessage) or tapped is not None:
        actions = actions.speaking(typed.language(state))
    if isinstance(last, ToolMessage):
        request = next(m for m in reversed(messages) if isinstance(m, AIMessage) and m.tool_calls)
        call = next(c for c in request.tool_calls if c["id"] == last.tool_call_id)
        return await actions.after_tool(dict(call), last, wa_id)
    if tapped is not None:
        return await actions.on_tap(tapped, wa_id)
    if state.get("menu_awaiting") == TICKET and text:
        return actions.speaking(typed.language(state)).on_ticket_text(text)
    typed_words = _typed_words(state)
    if typed_words:
        return await typed.answer(actions, state, typed_words, wa_id)
    return None


def _typed_words(state: ConversationState) -> str:
    """The words the customer typed this turn. The stand-in text of an event or a media
    message ("[the customer opened the chat]") is no request: read as one, its words
    could ask for a person; the topic menu, which greets, answers those."""
    turn = latest_customer_messages(state["messages"])
    typed = [str(m.content) for m in turn if whatsapp_meta(m).get("kind", "text") == "text"]
    return "\n".join(t for t in typed if t.strip())


async def after_menu(state: ConversationState) -> Literal["menu_tools", "__end__"]:
    """A coroutine: LangGraph would run a plain function on a thread pool."""
    last = state["messages"][-1]
    return "menu_tools" if isinstance(last, AIMessage) and last.tool_calls else "__end__"
