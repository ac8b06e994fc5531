"""Payments on real Postgres and a local payment-link service: nothing happens before the
customer's "yes", and no resume, re-run or replay ever pays twice."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from graph.infra.database import Pool, create_checkpointer
from tests.fakes.payment_provider import FakePaymentProvider
from tests.support import query
from tests.support_availability import slot_ids
from tests.support_bookings import ALICE, Customer, open_day, pool, tool_graph
from tools.bookings import make_booking_tools
from tools.catalog import make_catalog_tools
from tools.payment_providers import (
    HttpPaymentLinkProvider,
    ManualBankTransferProvider,
    PaymentProvider,
)
from tools.payments import make_payment_tools, mark_payment_paid

__all__ = ["pool"]  # the fixture, used by name below


@pytest.fixture
def payment_service() -> Iterator[FakePaymentProvider]:
    with FakePaymentProvider() as service:
        yield service


@pytest.fixture
async def http_provider(
    payment_service: FakePaymentProvider,
) -> AsyncIterator[HttpPaymentLinkProvider]:
    provider = HttpPaymentLinkProvider(
        base_url=payment_service.base_url,
        api_key=payment_service.api_key,
        timeout_seconds=2.0,
        max_attempts=3,
        backoff_base=0.001,
    )
    yield provider
    await provider.aclose()


def customer(pool: Pool, provider: PaymentProvider, wa_id: str = ALICE, **graph: Any) -> Customer:
    tools = [*make_booking_tools(pool), *make_payment_tools(pool, provider)]
    return Customer(tool_graph(tools, **graph), wa_id)


async def book_a_rental(who: Customer) -> int:
    rows = await query_slots(who, open_day())
    asked = await who.call("create_booking", {"slot_id": rows})
    assert asked.interrupt is not None  # a booking asks the customer first
    booked = await who.resume(asked, "confirm:yes")
    assert booked.text.startswith("Booked: booking #"), booked.text
    return int(booked.text.split("#")[1].split()[0])


async def query_slots(who: Customer, day: dt.date) -> int:
    listed = await who.call("check_availability", {"date": day.isoformat(), "kind": "rental"})
    return slot_ids(listed.text)[0]


async def payments(db_url: str) -> list[dict[str, Any]]:
    return await query(db_url, "SELECT * FROM payments ORDER BY id")


async def test_payment_waits_for_yes_and_is_made_once_across_resumes_and_replays(
    db_url: str, pool: Pool, http_provider: HttpPaymentLinkProvider,
    payment_service: FakePaymentProvider,
) -> None:  # fmt: skip
    saver = create_checkpointer(pool)  # the real checkpointer, as in production
    alice = customer(pool, http_provider, checkpointer=saver)
    booking_id = await book_a_rental(alice)

    asked = await alice.call("create_payment", {"booking_id": booking_id}, call_id="call_pay")
    assert asked.interrupt is not None
    question = asked.interrupt.value
    assert question["type"] == "confirmation"
    assert question["action"] == "create_payment"
    assert "6,000 RWF" in question["summary"] and f"#{booking_id}" in question["summary"]
    assert [b["id"] for b in question["buttons"]] == ["confirm:yes", "confirm:no"]
    assert all(len(b["title"]) <= 20 for b in question["buttons"])
    assert await payments(db_url) == [] and payment_service.requests == []

    done = await alice.resume(asked, "confirm:yes")
    assert done.text.startswith("Payment created: PAY-"), done.text
    assert "/pay/pl_0001" in done.text
    [row] = await payments(db_url)
    assert (row["status"], row["amount_minor"], row["booking_id"]) == ("pending", 6000, booking_id)

    # A second "yes" for the same run, then a replay of the tool node from its checkpoint.
    await alice.resume(asked, "confirm:yes")
    history = [state async for state in alice.graph.aget_state_history(asked.config)]
    before_tools = next(state for state in history if state.next == ("tools",))
    replayed = await alice.graph.ainvoke(None, before_tools.config, context=alice.context)
    assert not replayed.get("__interrupt__")  # already confirmed: not asked again
    assert row["reference"] in str(replayed["messages"][-1].content)
    assert len(await payments(db_url)) == 1
    assert payment_service.created() == 1


async def test_a_crash_after_the_provider_answered_does_not_create_a_second_link(
    db_url: str, pool: Pool, http_provider: HttpPaymentLinkProvider,
    payment_service: FakePaymentProvider,
) -> None:  # fmt: skip
    alice = customer(pool, http_provider)
    booking_id = await book_a_rental(alice)
    asked = await alice.call("create_payment", {"booking_id": booking_id})
    await alice.resume(asked, "confirm:yes")
    [before] = await payments(db_url)
    # As if the worker died between the provider's answer and our UPDATE: the retried
    # job re-runs the tool node, which asks the provider again with the same key.
    await pool_execute(pool, "UPDATE payments SET provider_reference = NULL, status = 'creating'")
    history = [state async for state in alice.graph.aget_state_history(asked.config)]
    before_tools = next(state for state in history if state.next == ("tools",))
    rerun = await alice.graph.ainvoke(None, before_tools.config, context=alice.context)
    assert "Payment created" in str(rerun["messages"][-1].content)
    [after] = await payments(db_url)
    assert after["provider_reference"] == before["provider_reference"]
    assert after["status"] == "pending"
    assert payment_service.created() == 1
    other = await alice.call("create_payment", {"booking_id": booking_id})
    assert other.interrupt is None and "already has a payment" in other.text


async def pool_execute(pool: Pool, sql: str, *params: Any) -> None:
    async with pool.connection() as conn:
        await conn.execute(sql.encode(), params)


async def test_declining_creates_nothing(
    db_url: str, pool: Pool, http_provider: HttpPaymentLinkProvider,
    payment_service: FakePaymentProvider,
) -> None:  # fmt: skip
    alice = customer(pool, http_provider)
    booking_id = await book_a_rental(alice)
    asked = await alice.call("create_payment", {"booking_id": booking_id})
    declined = await alice.resume(asked, "confirm:no")
    assert "did not confirm" in declined.text
    free_text = await alice.resume(
        await alice.call("create_payment", {"booking_id": booking_id}), "hmm, maybe"
    )
    assert "did not confirm" in free_text.text
    assert await payments(db_url) == []
    assert payment_service.requests == []


async def test_amounts_come_from_catalog_prices_and_stock(
    db_url: str, pool: Pool, http_provider: HttpPaymentLinkProvider
) -> None:
    alice = customer(pool, http_provider)
    items = [{"sku": "acc-helmet", "quantity": 2}, {"sku": "ACC-BOTTLE"}]
    asked = await alice.call("create_payment", {"items": items})
    assert asked.interrupt is not None
    assert "39,500 RWF" in asked.interrupt.value["summary"]  # 2 × 18,000 + 3,500
    await alice.resume(asked, "confirm:yes")
    [row] = await payments(db_url)
    assert row["amount_minor"] == 39_500 and len(row["items"]) == 2

    unknown = await alice.call("create_payment", {"items": [{"sku": "NOPE-1"}]})
    assert unknown.text.startswith("Not done: no product with SKU NOPE-1")
    out_of_stock = await alice.call("create_payment", {"items": [{"sku": "PART-CHAIN-9S"}]})
    assert "left in stock" in out_of_stock.text
    both = await alice.call("create_payment", {"booking_id": 1, "items": items})
    assert both.text.startswith("Invalid arguments") and "exactly one" in both.text
    made_up = await alice.call("create_payment", {"items": items, "amount": 10})
    assert made_up.text.startswith("Invalid arguments") and "amount" in made_up.text
    assert len(await payments(db_url)) == 1


async def test_provider_errors_are_retried_then_reported_politely(
    db_url: str, pool: Pool, http_provider: HttpPaymentLinkProvider,
    payment_service: FakePaymentProvider,
) -> None:  # fmt: skip
    alice = customer(pool, http_provider)
    payment_service.fail_next(2, status=503)
    asked = await alice.call("create_payment", {"items": [{"sku": "ACC-LIGHTS"}]})
    done = await alice.resume(asked, "confirm:yes")
    assert done.text.startswith("Payment created"), done.text
    assert len(payment_service.requests) == 3  # two 503s, then the link

    payment_service.fail_next(10, status=500)
    asked = await alice.call("create_payment", {"items": [{"sku": "ACC-PUMP"}]})
    failed = await alice.resume(asked, "confirm:yes")
    assert failed.text.startswith("Not done: the payment service did not answer")
    statuses = [row["status"] for row in await payments(db_url)]
    assert statuses == ["pending", "failed"]

    payment_service.fail_next(0)
    payment_service.delay = 0.5
    slow = HttpPaymentLinkProvider(
        base_url=payment_service.base_url, api_key="pk-test", timeout_seconds=0.1,
        max_attempts=2, backoff_base=0.001,
    )  # fmt: skip
    try:
        bob = customer(pool, slow, wa_id="250788000222")
        asked = await bob.call("create_payment", {"items": [{"sku": "ACC-GLOVES"}]})
        timed_out = await bob.resume(asked, "confirm:yes")
    finally:
        await slow.aclose()
    assert timed_out.text.startswith("Not done: the payment service did not answer")


async def test_status_follows_the_provider_and_cancelling_asks_first(
    db_url: str, pool: Pool, http_provider: HttpPaymentLinkProvider,
    payment_service: FakePaymentProvider,
) -> None:  # fmt: skip
    alice = customer(pool, http_provider)
    for sku in ("ACC-HELMET", "ACC-LOCK-U"):
        await alice.resume(await alice.call("create_payment", {"items": [{"sku": sku}]}), True)
    first, second = await payments(db_url)

    payment_service.mark_paid(first["provider_reference"])
    status = await alice.call("get_payment_status", {"reference": first["reference"]})
    assert f"{first['reference']} [paid]" in status.text
    latest = await alice.call("get_payment_status", {})
    assert second["reference"] in latest.text and "[pending]" in latest.text

    refused = await alice.call("cancel_payment", {"reference": first["reference"]})
    assert "only a pending payment can be cancelled" in refused.text
    asked = await alice.call("cancel_payment", {"reference": second["reference"]})
    assert asked.interrupt is not None and asked.interrupt.value["action"] == "cancel_payment"
    kept = await alice.resume(asked, "confirm:no")
    assert "kept" in kept.text
    asked = await alice.call("cancel_payment", {"reference": second["reference"]})
    cancelled = await alice.resume(asked, "confirm:yes")
    assert "is cancelled" in cancelled.text
    assert payment_service.links[second["provider_reference"]]["status"] == "cancelled"
    bob = customer(pool, http_provider, wa_id="250788000222")
    assert (
        "has no payment"
        in (await bob.call("get_payment_status", {"reference": first["reference"]})).text
    )


async def test_manual_bank_transfer_gives_a_reference_staff_can_settle(
    db_url: str, pool: Pool
) -> None:
    manual = ManualBankTransferProvider(
        bank_name="Bank of Kigali", account_name="Inzira Bikes Ltd",
        account_number="00040-0123456-78", mobile_money_code="123456",
    )  # fmt: skip
    alice = customer(pool, manual)
    booking_id = await book_a_rental(alice)
    asked = await alice.call("create_payment", {"booking_id": booking_id})
    done = await alice.resume(asked, {"id": "confirm:yes"})
    [row] = await payments(db_url)
    assert row["provider"] == "manual_bank_transfer"
    assert row["reference"] in done.text and "00040-0123456-78" in done.text
    assert "merchant code 123456" in done.text
    again = await alice.call("create_payment", {"booking_id": booking_id})
    assert again.interrupt is None and "already has a payment" in again.text

    assert await mark_payment_paid(pool, row["reference"])
    status = await alice.call("get_payment_status", {})
    assert "[paid]" in status.text


async def test_a_paid_payments_receipt_goes_to_the_customer_as_a_document(
    db_url: str, pool: Pool, http_provider: HttpPaymentLinkProvider,
    payment_service: FakePaymentProvider,
) -> None:  # fmt: skip
    alice = customer(pool, http_provider)
    await alice.resume(await alice.call("create_payment", {"items": [{"sku": "ACC-HELMET"}]}), True)
    [payment] = await payments(db_url)
    pending = await alice.call("get_payment_status", {})
    receipt = "https://pay.example/receipts/" + payment["provider_reference"] + ".pdf"
    payment_service.mark_paid(payment["provider_reference"], receipt_url=receipt)
    paid = await alice.call("get_payment_status", {})
    again = await alice.call("get_payment_status", {"reference": payment["reference"]})
    assert pending.shown == []
    assert (
        paid.shown
        == again.shown
        == [
            {
                "kind": "document",
                "link": receipt,
                "filename": f"receipt-{payment['reference']}.pdf",
                "caption": f"Receipt {payment['reference']}",
            }
        ]
    )
    assert "[paid]" in paid.text and "receipt is sent" in paid.text
    assert receipt not in paid.text  # the model is told, the address stays out of its prompt


async def test_a_shop_shows_and_bills_its_own_items_and_the_shared_ones_only(
    pool: Pool, http_provider: HttpPaymentLinkProvider
) -> None:
    await pool_execute(
        pool,
        "INSERT INTO catalog_items (sku, kind, name, category, price_minor, currency, stock,"
        " phone_number_id) VALUES ('BELL-GOLD', 'product', 'Golden bell', 'accessories',"
        " 9000, 'RWF', 3, 'SHOP2')",
    )
    tools = tool_graph([*make_catalog_tools(pool), *make_payment_tools(pool, http_provider)])
    first, second = Customer(tools, ALICE, "SHOP1"), Customer(tools, ALICE, "SHOP2")
    assert "BELL-GOLD" not in (await first.call("search_catalog", {"query": "bell"})).text
    assert "BELL-GOLD" in (await second.call("search_catalog", {"query": "bell"})).text
    assert "no active item" in (await first.call("get_product", {"sku": "BELL-GOLD"})).text
    billed = await first.call("create_payment", {"items": [{"sku": "BELL-GOLD"}]})
    assert billed.interrupt is None and "no product with SKU BELL-GOLD" in billed.text
    asked = await second.call("create_payment", {"items": [{"sku": "BELL-GOLD"}]})
    assert asked.interrupt is not None  # its own shop asks the customer to confirm
    shared = await first.call("get_product", {"sku": "ACC-HELMET"})
    assert "ACC-HELMET" in shared.text  # an item of no number is sold on every number
