"""The booking tools on real Postgres, called through a LangGraph tool node exactly as the
agents call them: free slots, asking before booking, moving a booking at the right price,
cancelling, and what they refuse or keep single (a slot raced by two customers, a re-run
tool call, the per-customer limit, another customer's booking, bad dates and ids, a
conversation with no customer)."""

from __future__ import annotations

import asyncio
import datetime as dt

from graph.infra.database import Pool
from tests.support import query
from tests.support_availability import LISTED_SLOT, slot_ids
from tests.support_bookings import (
    Customer,
    alice,
    bob,
    booking_number,
    business_tools,
    open_day,
    pool,
    tool_graph,
)

__all__ = ["alice", "bob", "pool"]  # the fixtures, used by name below


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
