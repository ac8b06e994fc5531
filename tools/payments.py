"""Payment tools: create a payment (after the customer confirms), check it, cancel it.

The amount is never taken from the model: it is computed (tools/pricing.py) from a booking or
from catalog prices, so a confused or manipulated model cannot charge a made-up sum.

Paying twice is prevented at three levels: the confirmation interrupt (nothing happens
before "yes"), `payments.idempotency_key` UNIQUE (the confirmed tool call, stable across
resumes, re-runs and replays, maps to one row), and the provider's Idempotency-Key (a
crash between the provider's answer and our update cannot create a second link).
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any
from zoneinfo import ZoneInfo

import psycopg.errors
import structlog
from langchain_core.tools import BaseTool
from langgraph.prebuilt import ToolRuntime
from pydantic import Field, model_validator

from graph.state import MediaReply
from tools.common import (
    CustomerToolArgs,
    Pool,
    ToolAnswer,
    ToolFailure,
    business_number,
    confirmed,
    customer_wa_id,
    declined,
    ensure_contact,
    format_money,
    idempotency_key,
    receipt,
    showing_tool,
)
from tools.payment_providers import PaymentLinkRequest, PaymentProvider, PaymentProviderError
from tools.pricing import ItemLine, Quote, quote_for

log = structlog.get_logger(__name__)


class CreatePaymentArgs(CustomerToolArgs):
    booking_id: int | None = Field(default=None, gt=0, description="A booking to pay.")
    items: list[ItemLine] | None = Field(
        default=None,
        min_length=1,
        max_length=10,
        description="Or catalog products to pay.",
    )

    @model_validator(mode="after")
    def _one_subject(self) -> CreatePaymentArgs:
        if (self.booking_id is None) == (self.items is None):
            raise ValueError("give exactly one of booking_id or items")
        return self


class PaymentReferenceArgs(CustomerToolArgs):
    reference: str | None = Field(
        default=None,
        max_length=20,
        pattern=r"^[A-Za-z0-9-]+$",
        description="PAY-...; empty: the latest.",
    )


class CancelPaymentArgs(CustomerToolArgs):
    reference: str = Field(max_length=20, pattern=r"^[A-Za-z0-9-]+$", description="PAY-...")


def payment_reference(key: str) -> str:
    """Deterministic from the idempotency key: a re-run shows the same reference."""
    digest = hashlib.sha256(key.encode()).digest()
    return "PAY-" + base64.b32encode(digest).decode()[:8]


class PaymentDesk:
    """The customer's payments, as the agents' tools act on them: always the run's
    customer's; creating and cancelling wait for the customer's confirmation tap."""

    def __init__(self, pool: Pool, provider: PaymentProvider, zone: ZoneInfo) -> None:
        self.pool = pool
        self.provider = provider
        self.zone = zone

    def describe(self, row: dict[str, Any]) -> str:
        return _payment_text(row, self.zone)

    def created(self, row: dict[str, Any]) -> ToolAnswer:
        """A payment the customer confirmed: how to pay is their receipt."""
        shown = _payment_text(row, self.zone, for_customer=True)
        return "Payment created: " + self.describe(row), receipt(f"Payment {shown}")

    async def create_payment(
        self,
        runtime: ToolRuntime[Any, Any],
        booking_id: int | None = None,
        items: list[ItemLine] | None = None,
    ) -> ToolAnswer:
        wa_id = customer_wa_id(runtime)
        key = idempotency_key(runtime, "payment", wa_id)
        if (done := await _payment_by_key(self.pool, key)) is not None:
            # A re-run of a call the customer already confirmed: finish it, never redo it.
            if done["provider_reference"] is None and done["status"] in ("creating", "failed"):
                done = await _request_link(self.pool, self.provider, done, wa_id)
            return self.created(done)
        number = business_number(runtime)
        quote = await quote_for(self.pool, wa_id, booking_id, items or [], phone_number_id=number)
        if booking_id is not None and (open_one := await _open_payment(self.pool, booking_id)):
            return "This booking already has a payment: " + self.describe(open_one), []
        amount = format_money(quote.amount_minor, quote.currency)
        if not confirmed(
            "create_payment",
            f"Pay {amount} for {quote.description}?",
            {"amount_minor": quote.amount_minor, "currency": quote.currency},
            yes_title="Confirm payment",
        ):
            return declined("no payment was created."), []
        try:
            row = await _claim(self.pool, wa_id, key, quote, self.provider.name)
        except psycopg.errors.UniqueViolation:  # another call opened one for this booking
            assert booking_id is not None
            if open_one := await _open_payment(self.pool, booking_id):
                return "This booking already has a payment: " + self.describe(open_one), []
            raise
        if row["provider_reference"] is None:
            row = await _request_link(self.pool, self.provider, row, wa_id)
        return self.created(row)

    async def get_payment_status(
        self, runtime: ToolRuntime[Any, Any], reference: str | None = None
    ) -> ToolAnswer:
        """The payment for the model; its receipt, once paid, for the customer."""
        wa_id = customer_wa_id(runtime)
        row = await _customer_payment(self.pool, wa_id, reference)
        if row["status"] == "pending" and row["provider"] == self.provider.name:
            row = await _refresh(self.pool, self.provider, row)
        if row["status"] != "paid" or not row["receipt_url"]:
            return self.describe(row), []
        document: MediaReply = {
            "kind": "document",
            "link": row["receipt_url"],
            "filename": f"receipt-{row['reference']}.pdf",
            "caption": f"Receipt {row['reference']}",
        }
        return self.describe(row) + " (Its receipt is sent to the customer with your answer.)", [
            document
        ]

    async def cancel_payment(self, runtime: ToolRuntime[Any, Any], reference: str) -> ToolAnswer:
        wa_id = customer_wa_id(runtime)
        row = await _customer_payment(self.pool, wa_id, reference)
        if row["status"] == "cancelled":
            return f"Payment {row['reference']} is already cancelled.", []
        if row["status"] != "pending":
            raise ToolFailure(
                f"payment {row['reference']} is {row['status']}; only a pending payment can "
                "be cancelled. Refunds are handled by a person."
            )
        amount = format_money(int(row["amount_minor"]), row["currency"])
        if not confirmed(
            "cancel_payment",
            f"Cancel payment {row['reference']} of {amount} ({row['description']})?",
            {"reference": row["reference"]},
            yes_title="Yes, cancel it",
            no_title="No, keep it",
        ):
            kept = f"they kept payment {row['reference']}; nothing was changed."
            return declined(kept), []
        if row["provider"] == self.provider.name and row["provider_reference"]:
            await self.provider.cancel(row["provider_reference"])
        await _set_status(self.pool, int(row["id"]), "cancelled")
        done = f"Payment {row['reference']} is cancelled; its link no longer works."
        return done, receipt(f"{done[:-1]} ({amount}, {row['description']}).")


def make_payment_tools(
    pool: Pool, provider: PaymentProvider, *, timezone: str = "Africa/Kigali"
) -> list[BaseTool]:
    """`create_payment` and `cancel_payment` (both ask the customer to confirm) and
    `get_payment_status`, for the customer of the run."""
    desk = PaymentDesk(pool, provider, ZoneInfo(timezone))
    return [
        showing_tool(
            desk.create_payment,
            name="create_payment",
            description="A payment link or transfer instructions for a booking or products, "
            "at our prices; the customer confirms with a button.",
            args_schema=CreatePaymentArgs,
        ),
        showing_tool(
            desk.get_payment_status,
            name="get_payment_status",
            description="A payment's status.",
            args_schema=PaymentReferenceArgs,
        ),
        showing_tool(
            desk.cancel_payment,
            name="cancel_payment",
            description="Cancel a pending payment; the customer confirms with a button.",
            args_schema=CancelPaymentArgs,
        ),
    ]


async def _payment_by_key(pool: Pool, key: str) -> dict[str, Any] | None:
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT * FROM payments WHERE idempotency_key = %s", (key,))
        return await cur.fetchone()


async def _open_payment(pool: Pool, booking_id: int) -> dict[str, Any] | None:
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT * FROM payments WHERE booking_id = %s"
            " AND status IN ('creating', 'pending', 'paid')",
            (booking_id,),
        )
        return await cur.fetchone()


async def _claim(pool: Pool, wa_id: str, key: str, quote: Quote, provider: str) -> dict[str, Any]:
    """The payment row of this tool call: inserted once, found again on any re-run."""
    async with pool.connection() as conn, conn.transaction():
        await ensure_contact(conn, wa_id)
        cur = await conn.execute(
            "INSERT INTO payments (reference, wa_id, booking_id, items, description,"
            " amount_minor, currency, provider, idempotency_key)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)"
            " ON CONFLICT (idempotency_key) DO NOTHING RETURNING *",
            (
                payment_reference(key),
                wa_id,
                quote.booking_id,
                json.dumps(quote.items),
                quote.description,
                quote.amount_minor,
                quote.currency,
                provider,
                key,
            ),
        )
        row = await cur.fetchone()
        if row is None:
            cur = await conn.execute("SELECT * FROM payments WHERE idempotency_key = %s", (key,))
            row = await cur.fetchone()
    assert row is not None
    return row


async def _request_link(
    pool: Pool, provider: PaymentProvider, row: dict[str, Any], wa_id: str
) -> dict[str, Any]:
    request = PaymentLinkRequest(
        reference=row["reference"],
        idempotency_key=row["idempotency_key"],
        amount_minor=int(row["amount_minor"]),
        currency=row["currency"],
        description=row["description"],
        customer_wa_id=wa_id,
    )
    try:
        link = await provider.create_link(request)
    except PaymentProviderError as exc:
        log.warning("payment.provider_failed", provider=provider.name, error=str(exc)[:200])
        await _set_status(pool, int(row["id"]), "failed", error=str(exc)[:500])
        raise ToolFailure(
            "the payment service did not answer, so no link was created and nothing was "
            "charged. Suggest trying again in a few minutes."
        ) from exc
    async with pool.connection() as conn:
        cur = await conn.execute(
            "UPDATE payments SET provider_reference = %s, payment_url = %s, instructions = %s,"
            " status = %s, expires_at = %s, error = NULL, updated_at = now()"
            " WHERE id = %s RETURNING *",
            (link.provider_reference, link.url, link.instructions, link.status,
             link.expires_at, row["id"]),
        )  # fmt: skip
        updated = await cur.fetchone()
    assert updated is not None
    return updated


async def _customer_payment(pool: Pool, wa_id: str, reference: str | None) -> dict[str, Any]:
    async with pool.connection() as conn:
        if reference:
            cur = await conn.execute(
                "SELECT * FROM payments WHERE wa_id = %s AND reference = upper(%s)",
                (wa_id, reference),
            )
        else:
            cur = await conn.execute(
                "SELECT * FROM payments WHERE wa_id = %s ORDER BY created_at DESC, id DESC LIMIT 1",
                (wa_id,),
            )
        row = await cur.fetchone()
    if row is None:
        which = f"payment {reference.upper()}" if reference else "payments"
        raise ToolFailure(f"the customer has no {which}.")
    return row


async def _refresh(pool: Pool, provider: PaymentProvider, row: dict[str, Any]) -> dict[str, Any]:
    """Ask the provider; its answer wins. Unreachable: report what we know."""
    if not row["provider_reference"]:
        return row
    try:
        view = await provider.get_status(row["provider_reference"])
    except PaymentProviderError as exc:
        log.warning("payment.status_unavailable", provider=provider.name, error=str(exc)[:200])
        return row
    if view is None or view.status == row["status"]:
        return row
    return await _set_status(pool, int(row["id"]), view.status, receipt_url=view.receipt_url)


async def _set_status(
    pool: Pool,
    payment_id: int,
    status: str,
    *,
    error: str | None = None,
    receipt_url: str | None = None,
) -> dict[str, Any]:
    async with pool.connection() as conn:
        cur = await conn.execute(
            "UPDATE payments SET status = %s, error = coalesce(%s, error), updated_at = now(),"
            " paid_at = CASE WHEN %s = 'paid' THEN coalesce(paid_at, now()) ELSE paid_at END,"
            " receipt_url = coalesce(%s, receipt_url)"
            " WHERE id = %s RETURNING *",
            (status, error, status, receipt_url, payment_id),
        )
        row = await cur.fetchone()
    assert row is not None
    return row


async def mark_payment_paid(pool: Pool, reference: str) -> bool:
    """For the operator (admin API): a manual transfer arrived. False if not pending."""
    async with pool.connection() as conn:
        cur = await conn.execute(
            "UPDATE payments SET status = 'paid', paid_at = now(), updated_at = now()"
            " WHERE reference = %s AND status = 'pending'",
            (reference.upper(),),
        )
        return cur.rowcount == 1


def _payment_text(row: dict[str, Any], zone: ZoneInfo, *, for_customer: bool = False) -> str:
    """A payment as the model reads it, or (`for_customer`) without its status tag."""
    amount = format_money(int(row["amount_minor"]), row["currency"])
    status = "" if for_customer else f" [{row['status']}]"
    text = f"{row['reference']}{status} {amount} for {row['description']}."
    if row["status"] == "pending":
        if row["payment_url"]:
            text += f" Pay here: {row['payment_url']}"
        if row["instructions"]:
            text += f" {row['instructions']}"
        if row["expires_at"]:
            text += f" Valid until {row['expires_at'].astimezone(zone):%d %b %Y %H:%M}."
    return text
