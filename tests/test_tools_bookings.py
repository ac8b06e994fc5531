"""Demo data, catalog, bookings and support tickets on real Postgres, called through a
LangGraph tool node exactly as the agents call them."""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from langchain_core.messages import AIMessage, ToolMessage
from langchain_core.runnables import RunnableConfig
from langchain_core.tools import BaseTool
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.prebuilt import ToolNode
from langgraph.types import Command, Interrupt

from graph.context import ConversationContext
from graph.infra.database import Pool, open_pool
from tests.support import query, service_settings
from tools.bookings import make_booking_tools
from tools.catalog import make_catalog_tools
from tools.demo import seed_demo
from tools.payment_providers import ManualBankTransferProvider
from tools.payments import make_payment_tools
from tools.tickets import make_ticket_tools

ALICE, BOB = "250788000111", "250788000222"
KIGALI = ZoneInfo("Africa/Kigali")


@dataclass
class Outcome:
    config: RunnableConfig
    text: str = ""
    interrupt: Interrupt | None = None


class Customer:
    """One AI tool call per run, with the customer in the runtime context."""

    def __init__(self, graph: CompiledStateGraph[Any, Any, Any, Any], wa_id: str) -> None:
        self.graph = graph
        self.context = ConversationContext(conversation_id="c-" + wa_id, wa_id=wa_id)

    async def call(self, name: str, args: dict[str, Any], *, call_id: str = "") -> Outcome:
        config: RunnableConfig = {"configurable": {"thread_id": f"thread-{self.context.wa_id}"}}
        call = {"name": name, "args": args, "id": call_id or f"call_{uuid.uuid4().hex[:8]}"}
        return await self._run({"messages": [AIMessage(content="", tool_calls=[call])]}, config)

    async def resume(self, outcome: Outcome, answer: object) -> Outcome:
        return await self._run(Command(resume=answer), outcome.config)

    async def confirmed(self, name: str, args: dict[str, Any], *, call_id: str = "") -> Outcome:
        """The call, with the customer tapping Confirm when it asks."""
        asked = await self.call(name, args, call_id=call_id)
        return asked if asked.interrupt is None else await self.resume(asked, "confirm:yes")

    async def _run(self, payload: Any, config: RunnableConfig) -> Outcome:
        result = await self.graph.ainvoke(payload, config, context=self.context)
        if result.get("__interrupt__"):
            return Outcome(config, interrupt=result["__interrupt__"][0])
        last = result["messages"][-1]
        assert isinstance(last, ToolMessage)
        return Outcome(config, text=str(last.content))


def tool_graph(tools: Sequence[BaseTool]) -> CompiledStateGraph[Any, Any, Any, Any]:
    builder = StateGraph(MessagesState, context_schema=ConversationContext)
    builder.add_node("tools", ToolNode(list(tools)))
    builder.add_edge(START, "tools")
    builder.add_edge("tools", END)
    return builder.compile(checkpointer=InMemorySaver())


@pytest.fixture
async def pool(db_url: str) -> AsyncIterator[Pool]:
    async with open_pool(db_url, service_settings(db_url)) as pool:
        await seed_demo(pool)
        yield pool


def business_tools(pool: Pool) -> list[BaseTool]:
    manual = ManualBankTransferProvider(bank_name="BK", account_name="Shop", account_number="1")
    return [
        *make_catalog_tools(pool),
        *make_booking_tools(pool, max_upcoming_per_customer=3),
        *make_ticket_tools(pool),
        *make_payment_tools(pool, manual),
    ]


@pytest.fixture
def alice(pool: Pool) -> Customer:
    return Customer(tool_graph(business_tools(pool)), ALICE)


@pytest.fixture
def bob(pool: Pool) -> Customer:
    return Customer(tool_graph(business_tools(pool)), BOB)


def open_day(after_days: int = 1) -> dt.date:
    day = dt.datetime.now(KIGALI).date() + dt.timedelta(days=after_days)
    return day + dt.timedelta(days=1) if day.weekday() == 6 else day


# A slot in a check_availability answer: "City bike 1 (slot 21)", after ": ", ", " or "; ".
LISTED_SLOT = re.compile(r"(?:: |, |; )([^,;:]+?) \(slot (\d+)\)")


def slot_ids(text: str) -> list[int]:
    return [int(found.group(2)) for found in LISTED_SLOT.finditer(text)]


def booking_number(text: str) -> int:
    return int(text.split("#")[1].split()[0])


async def test_seeding_twice_changes_nothing(db_url: str, pool: Pool) -> None:
    tables = ["catalog_items", "booking_resources", "booking_slots"]
    counts = "SELECT " + ", ".join(f"(SELECT count(*) FROM {t}) AS {t}" for t in tables)
    before = await query(db_url, counts)
    snapshot = await query(db_url, "SELECT * FROM booking_slots ORDER BY id")
    again = await seed_demo(pool)
    assert (again.catalog_added, again.resources_added, again.slots_added) == (0, 0, 0)
    assert await query(db_url, counts) == before
    assert await query(db_url, "SELECT * FROM booking_slots ORDER BY id") == snapshot
    assert before[0]["catalog_items"] >= 20 and before[0]["booking_slots"] > 200


async def test_catalog_search_and_prices(alice: Customer) -> None:
    helmets = (await alice.call("search_catalog", {"query": "helmet"})).text
    assert "[ACC-HELMET] Adult helmet" in helmets and "18,000 RWF" in helmets
    assert "[ACC-HELMET-KID]" in helmets
    cheap = (await alice.call("search_catalog", {"query": "helmet", "max_price": 15000})).text
    assert "ACC-HELMET-KID" in cheap and "[ACC-HELMET]" not in cheap
    rentals = (await alice.call("search_catalog", {"category": "Rental", "kind": "service"})).text
    assert rentals.count("per slot") == 3
    parts = (await alice.call("search_catalog", {"category": "parts", "limit": 10})).text
    assert "out of stock" in parts
    in_stock = await alice.call("search_catalog", {"category": "parts", "in_stock_only": True})
    assert "PART-CHAIN-9S" not in in_stock.text
    product = (await alice.call("get_product", {"sku": "acc-lock-u"})).text
    assert "15,000 RWF" in product and "8 in stock" in product and "Hardened steel" in product

    unknown = (await alice.call("get_product", {"sku": "NOPE"})).text
    assert unknown.startswith("Not done: no active item with SKU NOPE")
    reversed_range = await alice.call("search_catalog", {"min_price": 9, "max_price": 1})
    assert (
        reversed_range.text.startswith("Invalid arguments") and "min_price" in reversed_range.text
    )
    nothing = await alice.call("search_catalog", {"query": "submarine"})
    assert nothing.text.startswith("No catalog items match")


async def test_booking_lifecycle_with_confirmed_cancellation(alice: Customer, db_url: str) -> None:
    day = open_day()
    listed = (
        await alice.call("check_availability", {"date": day.isoformat(), "kind": "rental"})
    ).text
    morning = next(
        line for line in listed.splitlines() if line.startswith("08:00–12:30 (rental): ")
    )
    assert "City bike 3 (slot " in morning and " at 6,000 RWF; " in morning
    assert len(slot_ids(listed)) == 12  # six bikes, morning and afternoon, each listed once
    first, *others = slot_ids(listed)

    booked = await alice.confirmed("create_booking", {"slot_id": first, "notes": "tall rider"})
    assert booked.text.startswith("Booked: booking #") and "tall rider" in booked.text
    booking = booking_number(booked.text)
    after = (
        await alice.call("check_availability", {"date": day.isoformat(), "kind": "rental"})
    ).text
    assert first not in slot_ids(after)

    moved = await alice.confirmed(
        "reschedule_booking", {"booking_id": booking, "new_slot_id": others[0]}
    )
    assert moved.text.startswith(f"Rescheduled: booking #{booking}")
    repair = slot_ids(
        (await alice.call("check_availability", {"date": day.isoformat(), "kind": "repair"})).text
    )[0]
    wrong = await alice.call("reschedule_booking", {"booking_id": booking, "new_slot_id": repair})
    assert "pick a rental slot" in wrong.text

    asked = await alice.call("cancel_booking", {"booking_id": booking, "reason": "rain"})
    assert asked.interrupt is not None
    assert asked.interrupt.value["action"] == "cancel_booking"
    assert [b["title"] for b in asked.interrupt.value["buttons"]] == [
        "Yes, cancel it",
        "No, keep it",
    ]
    kept = await alice.resume(asked, "confirm:no")
    assert "keep booking" in kept.text
    assert "[confirmed]" in (await alice.call("list_my_bookings", {})).text

    asked = await alice.call("cancel_booking", {"booking_id": booking, "reason": "rain"})
    cancelled = await alice.resume(asked, "confirm:yes")
    assert cancelled.text == f"Booking #{booking} is cancelled."
    assert (await alice.call("list_my_bookings", {})).text.startswith("The customer has no")
    history = (await alice.call("list_my_bookings", {"include_past": True})).text
    assert "[cancelled]" in history
    again = await alice.call("cancel_booking", {"booking_id": booking})
    assert again.interrupt is None and "already cancelled" in again.text
    [row] = await query(db_url, "SELECT status, cancel_reason FROM bookings")
    assert row == {"status": "cancelled", "cancel_reason": "rain"}


def slots_of(listing: str, resource: str) -> list[int]:
    """The free slots of one bike (by name) in a check_availability answer."""
    return [
        int(found.group(2)) for found in LISTED_SLOT.finditer(listing) if found.group(1) == resource
    ]


async def test_booking_asks_first_and_a_moved_booking_takes_the_new_price(
    alice: Customer, db_url: str
) -> None:
    day = open_day()
    listing = (
        await alice.call("check_availability", {"date": day.isoformat(), "kind": "rental"})
    ).text
    city, ebike = slots_of(listing, "City bike 1")[0], slots_of(listing, "E-bike 1")[-1]

    asked = await alice.call("create_booking", {"slot_id": city})
    assert asked.interrupt is not None and asked.interrupt.value["action"] == "create_booking"
    assert "6,000 RWF" in asked.interrupt.value["summary"]
    assert await query(db_url, "SELECT id FROM bookings") == []  # nothing before the yes
    declined = await alice.resume(asked, "confirm:no")
    assert declined.text.startswith("The customer did not confirm")
    assert await query(db_url, "SELECT id FROM bookings") == []
    booking = booking_number((await alice.confirmed("create_booking", {"slot_id": city})).text)
    await alice.resume(await alice.call("create_payment", {"booking_id": booking}), "confirm:yes")

    # Moving to an e-bike: asked first, at the e-bike's price, and the unpaid 6,000 RWF
    # payment does not survive the move.
    move = {"booking_id": booking, "new_slot_id": ebike}
    asked = await alice.call("reschedule_booking", move)
    assert asked.interrupt is not None and asked.interrupt.value["action"] == "reschedule_booking"
    summary = asked.interrupt.value["summary"]
    assert "15,000 RWF" in summary and "6,000 RWF" in summary
    kept = await alice.resume(asked, "confirm:no")
    assert "nothing was changed" in kept.text
    [row] = await query(db_url, "SELECT slot_id, price_minor FROM bookings")
    assert row == {"slot_id": city, "price_minor": 6000}

    moved = await alice.confirmed("reschedule_booking", move)
    assert moved.text.startswith(f"Rescheduled: booking #{booking}") and "15,000 RWF" in moved.text
    [row] = await query(db_url, "SELECT slot_id, price_minor FROM bookings")
    assert row == {"slot_id": ebike, "price_minor": 15000}
    payments = await query(db_url, "SELECT status, amount_minor FROM payments ORDER BY id")
    assert payments == [{"status": "cancelled", "amount_minor": 6000}]
    asked = await alice.call("create_payment", {"booking_id": booking})
    assert asked.interrupt is not None and "15,000 RWF" in asked.interrupt.value["summary"]


async def test_a_paid_booking_moves_within_its_service_and_keeps_its_price(
    alice: Customer, db_url: str
) -> None:
    day = open_day(2)
    listing = (
        await alice.call("check_availability", {"date": day.isoformat(), "kind": "rental"})
    ).text
    city = slots_of(listing, "City bike 1")
    booking = booking_number((await alice.confirmed("create_booking", {"slot_id": city[0]})).text)
    await alice.confirmed("create_payment", {"booking_id": booking})
    await query(db_url, "UPDATE payments SET status = 'paid' RETURNING id")
    await query(
        db_url, "UPDATE catalog_items SET price_minor = 7000 WHERE sku = 'RENT-CITY' RETURNING sku"
    )

    ebike = slots_of(listing, "E-bike 1")[-1]
    refused = await alice.call("reschedule_booking", {"booking_id": booking, "new_slot_id": ebike})
    assert refused.interrupt is None and "a person settles the difference" in refused.text

    other_city = slots_of(listing, "City bike 2")[-1]
    move = {"booking_id": booking, "new_slot_id": other_city}
    moved = await alice.confirmed("reschedule_booking", move)
    assert moved.text.startswith("Rescheduled") and "6,000 RWF" in moved.text  # as agreed
    [row] = await query(db_url, "SELECT slot_id, price_minor FROM bookings")
    assert row == {"slot_id": other_city, "price_minor": 6000}
    assert [p["status"] for p in await query(db_url, "SELECT status FROM payments")] == ["paid"]


async def test_one_slot_raced_by_two_customers_is_booked_once(
    alice: Customer, bob: Customer, db_url: str
) -> None:
    listed = await alice.call("check_availability", {"date": open_day(2).isoformat()})
    slot = slot_ids(listed.text)[0]
    results = await asyncio.gather(
        alice.confirmed("create_booking", {"slot_id": slot}),
        bob.confirmed("create_booking", {"slot_id": slot}),
    )
    texts = sorted(result.text for result in results)
    assert texts[0].startswith("Booked: ")
    assert texts[1].startswith("Not done: slot") and "just taken" in texts[1]
    assert len(await query(db_url, "SELECT id FROM bookings WHERE slot_id = %s", slot)) == 1


async def test_a_rerun_tool_call_books_once_and_limits_hold(alice: Customer, db_url: str) -> None:
    slots = slot_ids(
        (await alice.call("check_availability", {"date": open_day(3).isoformat()})).text
    )
    first = await alice.confirmed("create_booking", {"slot_id": slots[0]}, call_id="call_same")
    rerun = await alice.call("create_booking", {"slot_id": slots[0]}, call_id="call_same")
    assert rerun.interrupt is None  # made already: not asked again
    assert first.text == rerun.text
    assert len(await query(db_url, "SELECT id FROM bookings")) == 1
    for slot in slots[1:3]:
        booked = await alice.confirmed("create_booking", {"slot_id": slot})
        assert booked.text.startswith("Booked")
    fourth = await alice.call("create_booking", {"slot_id": slots[3]})  # refused before asking
    assert "already has 3 upcoming bookings" in fourth.text


async def test_customers_only_see_and_change_their_own(alice: Customer, bob: Customer) -> None:
    slot = slot_ids(
        (await alice.call("check_availability", {"date": open_day().isoformat()})).text
    )[0]
    booking = booking_number((await alice.confirmed("create_booking", {"slot_id": slot})).text)
    assert "has no booking" in (await bob.call("cancel_booking", {"booking_id": booking})).text
    assert "no upcoming bookings" in (await bob.call("list_my_bookings", {})).text
    stolen = await bob.call("create_payment", {"booking_id": booking})
    assert stolen.interrupt is None and "has no booking" in stolen.text


async def test_bad_dates_and_ids_come_back_as_messages(alice: Customer) -> None:
    past = dt.date.today() - dt.timedelta(days=5)
    answer = await alice.call("check_availability", {"date": past.isoformat()})
    assert answer.text.startswith("Invalid arguments") and "past" in answer.text
    far = await alice.call("check_availability", {"date": "2999-01-01"})
    assert "days ahead" in far.text
    assert (
        "there is no slot 999999" in (await alice.call("create_booking", {"slot_id": 999999})).text
    )
    assert (await alice.call("create_booking", {"slot_id": -1})).text.startswith(
        "Invalid arguments"
    )
    sunday = open_day(7)
    while sunday.weekday() != 6:
        sunday += dt.timedelta(days=1)
    closed = await alice.call("check_availability", {"date": sunday.isoformat()})
    assert closed.text.startswith("No free slots")


async def test_without_a_customer_nothing_is_touched(pool: Pool, db_url: str) -> None:
    anonymous = Customer(tool_graph(business_tools(pool)), "")
    answer = await anonymous.call("list_my_bookings", {})
    assert "cannot tell which customer" in answer.text
    assert await query(db_url, "SELECT * FROM contacts") == []


async def test_support_tickets(alice: Customer, bob: Customer, db_url: str) -> None:
    created = await alice.call(
        "create_support_ticket",
        {
            "subject": "Gears slip after service",
            "description": "Since the basic service last week the chain jumps on hills.",
            "category": "repair",
        },
    )
    assert created.text.startswith("Ticket #")
    ticket = booking_number(created.text)
    await query(db_url, "UPDATE support_tickets SET status = 'waiting_customer' RETURNING id")
    added = await alice.call(
        "add_ticket_comment", {"ticket_id": ticket, "comment": "Mostly in 7th gear."}
    )
    assert added.text == f"Comment added to ticket #{ticket}."
    status = (await alice.call("get_ticket_status", {"ticket_id": ticket})).text
    assert "[open] Gears slip after service (repair, normal)" in status
    assert "customer: Mostly in 7th gear." in status
    assert f"ticket #{ticket}" in (await alice.call("get_ticket_status", {})).text
    assert "has no ticket" in (await bob.call("get_ticket_status", {"ticket_id": ticket})).text
    assert (
        "has no ticket"
        in (await bob.call("add_ticket_comment", {"ticket_id": ticket, "comment": "me too"})).text
    )
    short = await alice.call("create_support_ticket", {"subject": "x", "description": "short"})
    assert short.text.startswith("Invalid arguments")


async def test_forgetting_a_customer_deletes_their_business_rows(
    alice: Customer, db_url: str
) -> None:
    slot = slot_ids(
        (await alice.call("check_availability", {"date": open_day().isoformat()})).text
    )[0]
    booking = booking_number((await alice.confirmed("create_booking", {"slot_id": slot})).text)
    await alice.resume(await alice.call("create_payment", {"booking_id": booking}), "confirm:yes")
    await alice.call(
        "create_support_ticket",
        {"subject": "Lost my gloves", "description": "I left black gloves on the city bike."},
    )
    await alice.call("add_ticket_comment", {"ticket_id": 1, "comment": "Size M."})
    await query(db_url, "DELETE FROM contacts WHERE wa_id = %s RETURNING wa_id", ALICE)
    for table in ("bookings", "payments", "support_tickets", "support_ticket_comments"):
        assert await query(db_url, f"SELECT * FROM {table}") == [], table
    assert slot in slot_ids(
        (await alice.call("check_availability", {"date": open_day().isoformat()})).text
    )
