"""Booking tools: free slots, book, reschedule, cancel, list mine.

Booking, moving and cancelling each ask the customer first (a Confirm / Cancel button):
a booking holds a slot and a price the model picked from free text, a move gives the
old slot away (someone may take it at once) and may change the price, a cancellation
cannot be taken back. Each question shows the time, the bike and the price.

Double booking is impossible by construction: `bookings_one_per_slot` (a partial unique
index) admits one live booking per slot, so two customers racing for the same slot get
one booking and one polite "just taken" with alternatives. Times are shown and read in
the business's time zone; the database keeps UTC. The SQL is in tools/booking_store.py.
"""

from __future__ import annotations

import datetime as dt
import itertools
from dataclasses import dataclass
from typing import Any, Literal
from zoneinfo import ZoneInfo

import psycopg.errors
from langchain_core.tools import BaseTool
from langgraph.prebuilt import ToolRuntime
from pydantic import Field, field_validator

from tools import booking_store as store
from tools.common import (
    CustomerToolArgs,
    Pool,
    ToolAnswer,
    ToolArgs,
    ToolFailure,
    business_tool,
    confirmed,
    customer_wa_id,
    declined,
    format_money,
    idempotency_key,
    receipt,
    showing_tool,
)

BOOKING_HORIZON_DAYS = 60


class CheckAvailabilityArgs(ToolArgs):
    date: dt.date = Field(description="YYYY-MM-DD, today or later.")
    kind: Literal["rental", "repair", "any"] = Field(default="any")

    @field_validator("date")
    @classmethod
    def _not_past_nor_far(cls, value: dt.date) -> dt.date:
        # UTC "today" minus a day: the tool re-checks against the business's own today.
        today = dt.datetime.now(dt.UTC).date()
        if value < today - dt.timedelta(days=1):
            raise ValueError("date is in the past")
        if value > today + dt.timedelta(days=BOOKING_HORIZON_DAYS):
            raise ValueError(f"bookings open at most {BOOKING_HORIZON_DAYS} days ahead")
        return value


class CreateBookingArgs(CustomerToolArgs):
    slot_id: int = Field(gt=0, description="From check_availability.")
    notes: str = Field(default="", max_length=300, description="E.g. bike size, the fault.")


class RescheduleBookingArgs(CustomerToolArgs):
    booking_id: int = Field(gt=0, description="From list_my_bookings.")
    new_slot_id: int = Field(gt=0, description="From check_availability.")


class CancelBookingArgs(CustomerToolArgs):
    booking_id: int = Field(gt=0, description="From list_my_bookings.")
    reason: str = Field(default="", max_length=200)


class ListMyBookingsArgs(CustomerToolArgs):
    include_past: bool = Field(default=False)


@dataclass(frozen=True)
class BookingDesk:
    """What the booking tools do, for the customer of the run: each method is one tool,
    its parameters the tool's (the runtime names the customer)."""

    pool: Pool
    zone: ZoneInfo
    max_upcoming: int

    async def check_availability(self, date: dt.date, kind: str = "any") -> str:
        today = dt.datetime.now(self.zone).date()
        if date < today:
            raise ToolFailure(f"{date.isoformat()} is in the past; today is {today.isoformat()}.")
        rows = await store.free_slots(self.pool, date, self.zone, kind)
        if not rows:
            return f"No free {_kind_label(kind)}slots on {_day(date)}. Try another day."
        heading = f"Free slots on {_day(date)} ({self.zone.key} time), as name (slot id) at price:"
        return "\n".join([heading, *_free_lines(rows, self.zone)])

    async def create_booking(
        self, slot_id: int, runtime: ToolRuntime[Any, Any], notes: str = ""
    ) -> ToolAnswer:
        wa_id = customer_wa_id(runtime)
        key = idempotency_key(runtime, "booking", wa_id)
        booking_id = await store.booking_by_key(self.pool, key)
        if booking_id is None:  # not made yet: ask, then book
            async with self.pool.connection() as conn:
                slot = await store.bookable(conn, wa_id, slot_id, self.max_upcoming)
            if not confirmed(
                "create_booking",
                f"Book {_offer(slot, self.zone)}?",
                {"slot_id": slot_id, "price_minor": slot["price_minor"]},
                yes_title="Book it",
                no_title="Cancel",
            ):
                return declined(f"slot {slot_id} was not booked."), []
            try:
                booking_id = await store.insert_booking(
                    self.pool, wa_id, slot_id, notes, key, self.max_upcoming
                )
            except psycopg.errors.UniqueViolation:
                raise store.taken(slot_id) from None
        booking = await store.customer_booking(self.pool, wa_id, booking_id)
        shown = f"Booking #{booking_id}: {_offer(booking, self.zone)}."
        return "Booked: " + _booking_line(booking, self.zone), receipt(shown)

    async def reschedule_booking(
        self, booking_id: int, new_slot_id: int, runtime: ToolRuntime[Any, Any]
    ) -> ToolAnswer:
        wa_id = customer_wa_id(runtime)
        booking = await store.customer_booking(self.pool, wa_id, booking_id)
        note = ""
        if booking["slot_id"] != new_slot_id:  # else moved already (a re-run), or no change
            async with self.pool.connection() as conn:
                move = await store.plan_move(conn, booking, new_slot_id)
            if not confirmed(
                "reschedule_booking",
                _move_question(move, self.zone),
                {
                    "booking_id": booking_id,
                    "new_slot_id": new_slot_id,
                    "price_minor": move.price_minor,
                },
                yes_title="Yes, move it",
                no_title="No, keep it",
            ):
                kept = f"they kept booking #{booking_id} as it was; nothing was changed."
                return declined(kept), []
            note = await _move(self.pool, wa_id, booking_id, new_slot_id, move)
        booking = await store.customer_booking(self.pool, wa_id, booking_id)
        shown = f"Booking #{booking_id} is now {_offer(booking, self.zone)}."
        if note:
            shown += " Its unpaid payment link no longer works."
        return "Rescheduled: " + _booking_line(booking, self.zone) + note, receipt(shown)

    async def cancel_booking(
        self, booking_id: int, runtime: ToolRuntime[Any, Any], reason: str = ""
    ) -> ToolAnswer:
        wa_id = customer_wa_id(runtime)
        booking = await store.customer_booking(self.pool, wa_id, booking_id)
        if booking["status"] == "cancelled":
            return f"Booking #{booking_id} is already cancelled.", []
        store.require_upcoming(booking)
        if not confirmed(
            "cancel_booking",
            f"Cancel booking #{booking_id}: {_booking_line(booking, self.zone)}?",
            {"booking_id": booking_id},
            yes_title="Yes, cancel it",
            no_title="No, keep it",
        ):
            kept = f"they chose to keep booking #{booking_id}; nothing was changed."
            return declined(kept), []
        released = await store.cancel_booking(self.pool, wa_id, booking_id, reason)
        note = f" {released} unpaid payment link(s) for it were voided." if released else ""
        shown = f"Booking #{booking_id} ({_offer(booking, self.zone)}) is cancelled."
        if released:
            shown += " Its unpaid payment link no longer works."
        return f"Booking #{booking_id} is cancelled.{note}", receipt(shown)

    async def list_my_bookings(
        self, runtime: ToolRuntime[Any, Any], include_past: bool = False
    ) -> str:
        wa_id = customer_wa_id(runtime)
        where = "" if include_past else " AND b.status = 'confirmed' AND s.ends_at > now()"
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                f"{store.BOOKING_SQL} WHERE b.wa_id = %s{where}"
                " ORDER BY s.starts_at LIMIT 20".encode(),
                (wa_id,),
            )
            rows = await cur.fetchall()
        if not rows:
            return "The customer has no upcoming bookings."
        return "\n".join(_booking_line(row, self.zone) for row in rows)


def make_booking_tools(
    pool: Pool, *, timezone: str = "Africa/Kigali", max_upcoming_per_customer: int = 5
) -> list[BaseTool]:
    """`check_availability`, `create_booking`, `reschedule_booking`, `cancel_booking`
    (the three that change something ask for confirmation) and `list_my_bookings`, for
    the customer of the run."""
    desk = BookingDesk(pool, ZoneInfo(timezone), max_upcoming_per_customer)
    return [
        business_tool(
            desk.check_availability,
            name="check_availability",
            description="Free rental and workshop slots of a day: slot ids, prices.",
            args_schema=CheckAvailabilityArgs,
        ),
        showing_tool(
            desk.create_booking,
            name="create_booking",
            description="Book a free slot; the customer confirms with a button.",
            args_schema=CreateBookingArgs,
        ),
        showing_tool(
            desk.reschedule_booking,
            name="reschedule_booking",
            description="Move a booking to another free slot (another bike costs its own "
            "price); the customer confirms with a button.",
            args_schema=RescheduleBookingArgs,
        ),
        showing_tool(
            desk.cancel_booking,
            name="cancel_booking",
            description="Cancel a booking; the customer confirms with a button.",
            args_schema=CancelBookingArgs,
        ),
        business_tool(
            desk.list_my_bookings,
            name="list_my_bookings",
            description="The customer's upcoming bookings.",
            args_schema=ListMyBookingsArgs,
        ),
    ]


def _day(date: dt.date) -> str:
    return date.strftime("%a %d %b %Y")


def _span(starts_at: dt.datetime, ends_at: dt.datetime, zone: ZoneInfo) -> str:
    start, end = starts_at.astimezone(zone), ends_at.astimezone(zone)
    return f"{start:%a %d %b} {start:%H:%M}–{end:%H:%M}"


def _kind_label(kind: str) -> str:
    return "" if kind == "any" else f"{kind} "


def _free_lines(rows: list[dict[str, Any]], zone: ZoneInfo) -> list[str]:
    """One line per time span and kind, its slots grouped by price:
    `08:00–12:30 (rental): City bike 1 (slot 21), City bike 2 (slot 23) at 6,000 RWF; …`.

    The model reads this answer again on every later call of the conversation, so a day
    of twelve bikes is written in a third of the tokens one line per slot would take."""
    lines = []
    by_span = itertools.groupby(rows, key=lambda r: (r["starts_at"], r["ends_at"], r["kind"]))
    for (starts_at, ends_at, kind), in_span in by_span:
        start, end = starts_at.astimezone(zone), ends_at.astimezone(zone)
        priced = itertools.groupby(in_span, key=lambda r: (r["price_minor"], r["currency"]))
        groups = [
            ", ".join(f"{r['resource_name']} (slot {r['slot_id']})" for r in same)
            + f" at {format_money(int(price), currency)}"
            for (price, currency), same in priced
        ]
        lines.append(f"{start:%H:%M}–{end:%H:%M} ({kind}): " + "; ".join(groups))
    return lines


def _booking_line(row: dict[str, Any], zone: ZoneInfo) -> str:
    price = format_money(int(row["price_minor"]), row["currency"])
    when = _span(row["starts_at"], row["ends_at"], zone)
    notes = f", notes: {row['notes']}" if row["notes"] else ""
    return (
        f"booking #{row['id']} [{row['status']}] {when}, {row['resource_name']} "
        f"({row['kind']}), {price}{notes}"
    )


def _offer(slot: dict[str, Any], zone: ZoneInfo) -> str:
    price = format_money(int(slot["price_minor"]), slot["currency"])
    return f"{_span(slot['starts_at'], slot['ends_at'], zone)}, {slot['resource_name']}, {price}"


def _move_question(move: store.Move, zone: ZoneInfo) -> str:
    """What the customer agrees to: from where to where, and what it costs now."""
    booking = move.booking
    old_price = format_money(int(booking["price_minor"]), booking["currency"])
    old = f"{_span(booking['starts_at'], booking['ends_at'], zone)}, {booking['resource_name']}"
    new = f"{_span(move.slot['starts_at'], move.slot['ends_at'], zone)}, "
    new += move.slot["resource_name"]
    question = f"Move booking #{booking['id']} from {old} ({old_price}) to {new} ({move.price})?"
    if move.repriced:
        question += f" The price becomes {move.price}."
        for payment in move.unpaid:
            amount = format_money(int(payment["amount_minor"]), payment["currency"])
            question += f" Unpaid payment {payment['reference']} of {amount} will be cancelled."
    return question


async def _move(
    pool: Pool, wa_id: str, booking_id: int, new_slot_id: int, planned: store.Move
) -> str:
    """Move it at the price the customer agreed to; what the model should add."""
    try:
        done = await store.move_booking(
            pool, wa_id, booking_id, new_slot_id, (planned.price_minor, planned.currency)
        )
    except psycopg.errors.UniqueViolation:
        raise ToolFailure(
            f"slot {new_slot_id} was just taken; the booking was not moved. "
            "Check availability again."
        ) from None
    if done is None or not (done.repriced and done.unpaid):
        return ""
    references = ", ".join(p["reference"] for p in done.unpaid)
    return (
        f" The price changed, so unpaid payment {references} was cancelled; create a new "
        f"payment for {done.price} when the customer wants to pay."
    )
