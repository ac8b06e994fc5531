"""Demo data, the catalog and support tickets on real Postgres, called through a LangGraph
tool node exactly as the agents call them, and forgetting a customer: seeding twice
changes nothing, search and prices, tickets only their owner sees, and the erasure of a
customer's bookings, payments and tickets."""

from __future__ import annotations

from graph.infra.database import Pool
from tests.support import query
from tests.support_availability import slot_ids
from tests.support_bookings import ALICE, Customer, alice, bob, booking_number, open_day, pool
from tools.demo import seed_demo

__all__ = ["alice", "bob", "pool"]  # the fixtures, used by name below


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
