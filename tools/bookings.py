"""Booking tools: free slots, book, reschedule, cancel (after a confirmation), list mine.

Double booking is impossible by construction: `bookings_one_per_slot` (a partial unique
index) admits one live booking per slot, so two customers racing for the same slot get
one booking and one polite "just taken" with alternatives. Times are shown and read in
the business's time zone; the database keeps UTC.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal
from zoneinfo import ZoneInfo

import psycopg.errors
from langchain_core.tools import BaseTool
from langgraph.prebuilt import ToolRuntime
from pydantic import Field, field_validator

from tools.common import (
    Connection,
    CustomerToolArgs,
    Pool,
    ToolArgs,
    ToolFailure,
    business_tool,
    confirmed,
    customer_wa_id,
    declined,
    ensure_contact,
    format_money,
    idempotency_key,
)

BOOKING_HORIZON_DAYS = 60
_SLOT_SQL = """
    SELECT s.id AS slot_id, s.starts_at, s.ends_at, s.active AS slot_active,
           r.code, r.name AS resource_name, r.kind, r.active AS resource_active,
           c.price_minor, c.currency
    FROM booking_slots s
    JOIN booking_resources r ON r.id = s.resource_id
    JOIN catalog_items c ON c.sku = r.service_sku
"""
_BOOKING_SQL = """
    SELECT b.id, b.status, b.notes, b.price_minor, b.currency, b.slot_id,
           s.starts_at, s.ends_at, r.name AS resource_name, r.kind
    FROM bookings b
    JOIN booking_slots s ON s.id = b.slot_id
    JOIN booking_resources r ON r.id = s.resource_id
"""


class CheckAvailabilityArgs(ToolArgs):
    date: dt.date = Field(description="The day wanted, YYYY-MM-DD, today or later.")
    kind: Literal["rental", "repair", "any"] = Field(
        default="any", description="'rental' for bike hire slots, 'repair' for workshop slots."
    )

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
    slot_id: int = Field(gt=0, description="A free slot's id from check_availability.")
    notes: str = Field(
        default="",
        max_length=300,
        description="What the customer told us: bike size, the fault to repair, etc.",
    )


class RescheduleBookingArgs(CustomerToolArgs):
    booking_id: int = Field(gt=0, description="The booking to move, from list_my_bookings.")
    new_slot_id: int = Field(gt=0, description="A free slot's id from check_availability.")


class CancelBookingArgs(CustomerToolArgs):
    booking_id: int = Field(gt=0, description="The booking to cancel, from list_my_bookings.")
    reason: str = Field(default="", max_length=200, description="Why, in the customer's words.")


class ListMyBookingsArgs(CustomerToolArgs):
    include_past: bool = Field(default=False, description="Also past and cancelled bookings.")


def make_booking_tools(
    pool: Pool, *, timezone: str = "Africa/Kigali", max_upcoming_per_customer: int = 5
) -> list[BaseTool]:
    """`check_availability`, `create_booking`, `reschedule_booking`, `cancel_booking`
    (asks for confirmation) and `list_my_bookings`, for the customer of the run."""
    zone = ZoneInfo(timezone)

    async def check_availability(date: dt.date, kind: str = "any") -> str:
        today = dt.datetime.now(zone).date()
        if date < today:
            raise ToolFailure(f"{date.isoformat()} is in the past; today is {today.isoformat()}.")
        rows = await _free_slots(pool, date, zone, kind)
        if not rows:
            return f"No free {_kind_label(kind)}slots on {_day(date)}. Try another day."
        lines = [_slot_line(row, zone) for row in rows]
        return f"Free slots on {_day(date)} ({timezone} time):\n" + "\n".join(lines)

    async def create_booking(slot_id: int, runtime: ToolRuntime[Any, Any], notes: str = "") -> str:
        wa_id = customer_wa_id(runtime)
        key = idempotency_key(runtime, "booking", wa_id)
        try:
            booking_id = await _insert_booking(
                pool, wa_id, slot_id, notes, key, max_upcoming_per_customer
            )
        except psycopg.errors.UniqueViolation:
            raise ToolFailure(
                f"slot {slot_id} was just taken by someone else. Check availability again "
                "and offer the customer another slot."
            ) from None
        booking = await _customer_booking(pool, wa_id, booking_id)
        return "Booked: " + _booking_line(booking, zone)

    async def reschedule_booking(
        booking_id: int, new_slot_id: int, runtime: ToolRuntime[Any, Any]
    ) -> str:
        wa_id = customer_wa_id(runtime)
        try:
            await _move_booking(pool, wa_id, booking_id, new_slot_id)
        except psycopg.errors.UniqueViolation:
            raise ToolFailure(
                f"slot {new_slot_id} was just taken; the booking was not moved. "
                "Check availability again."
            ) from None
        booking = await _customer_booking(pool, wa_id, booking_id)
        return "Rescheduled: " + _booking_line(booking, zone)

    async def cancel_booking(
        booking_id: int, runtime: ToolRuntime[Any, Any], reason: str = ""
    ) -> str:
        wa_id = customer_wa_id(runtime)
        booking = await _customer_booking(pool, wa_id, booking_id)
        if booking["status"] == "cancelled":
            return f"Booking #{booking_id} is already cancelled."
        _require_upcoming(booking)
        summary = f"Cancel booking #{booking_id}: {_booking_line(booking, zone)}?"
        if not confirmed(
            "cancel_booking",
            summary,
            {"booking_id": booking_id},
            yes_title="Yes, cancel it",
            no_title="No, keep it",
        ):
            return declined(f"they chose to keep booking #{booking_id}; nothing was changed.")
        released = await _cancel(pool, wa_id, booking_id, reason)
        note = f" {released} unpaid payment link(s) for it were voided." if released else ""
        return f"Booking #{booking_id} is cancelled.{note}"

    async def list_my_bookings(runtime: ToolRuntime[Any, Any], include_past: bool = False) -> str:
        wa_id = customer_wa_id(runtime)
        where = "" if include_past else " AND b.status = 'confirmed' AND s.ends_at > now()"
        async with pool.connection() as conn:
            cur = await conn.execute(
                f"{_BOOKING_SQL} WHERE b.wa_id = %s{where} ORDER BY s.starts_at LIMIT 20".encode(),
                (wa_id,),
            )
            rows = await cur.fetchall()
        if not rows:
            return "The customer has no upcoming bookings."
        return "\n".join(_booking_line(row, zone) for row in rows)

    return [
        business_tool(
            check_availability,
            name="check_availability",
            description="Free bike-rental and repair slots on a given day, with slot ids "
            "and prices. Always check before proposing or booking a slot.",
            args_schema=CheckAvailabilityArgs,
        ),
        business_tool(
            create_booking,
            name="create_booking",
            description="Book one free slot (by slot id) for the customer.",
            args_schema=CreateBookingArgs,
        ),
        business_tool(
            reschedule_booking,
            name="reschedule_booking",
            description="Move one of the customer's upcoming bookings to another free slot.",
            args_schema=RescheduleBookingArgs,
        ),
        business_tool(
            cancel_booking,
            name="cancel_booking",
            description="Cancel one of the customer's upcoming bookings. The customer is "
            "asked to confirm with a button before anything changes.",
            args_schema=CancelBookingArgs,
        ),
        business_tool(
            list_my_bookings,
            name="list_my_bookings",
            description="The customer's bookings (upcoming only unless include_past).",
            args_schema=ListMyBookingsArgs,
        ),
    ]


async def _free_slots(pool: Pool, date: dt.date, zone: ZoneInfo, kind: str) -> list[dict[str, Any]]:
    start = dt.datetime.combine(date, dt.time(), zone)
    params: dict[str, Any] = {"start": start, "end": start + dt.timedelta(days=1), "kind": kind}
    sql = f"""{_SLOT_SQL}
        WHERE s.starts_at >= %(start)s AND s.starts_at < %(end)s AND s.starts_at > now()
          AND s.active AND r.active AND (%(kind)s = 'any' OR r.kind = %(kind)s)
          AND NOT EXISTS (SELECT 1 FROM bookings b
                          WHERE b.slot_id = s.id AND b.status <> 'cancelled')
        ORDER BY s.starts_at, r.kind, r.code LIMIT 30"""
    async with pool.connection() as conn:
        cur = await conn.execute(sql.encode(), params)
        return list(await cur.fetchall())


async def _bookable_slot(conn: Connection, slot_id: int) -> dict[str, Any]:
    cur = await conn.execute(f"{_SLOT_SQL} WHERE s.id = %s".encode(), (slot_id,))
    slot = await cur.fetchone()
    if slot is None or not (slot["slot_active"] and slot["resource_active"]):
        raise ToolFailure(f"there is no slot {slot_id}; use check_availability for valid ids.")
    if slot["starts_at"] <= dt.datetime.now(dt.UTC):
        raise ToolFailure(f"slot {slot_id} has already started; pick a later one.")
    return slot


async def _insert_booking(
    pool: Pool, wa_id: str, slot_id: int, notes: str, key: str, max_upcoming: int
) -> int:
    """The booking's id; a re-run of the same tool call returns the booking it made."""
    async with pool.connection() as conn, conn.transaction():
        cur = await conn.execute("SELECT id FROM bookings WHERE idempotency_key = %s", (key,))
        if (done := await cur.fetchone()) is not None:
            return int(done["id"])
        slot = await _bookable_slot(conn, slot_id)
        await ensure_contact(conn, wa_id)
        cur = await conn.execute(
            "SELECT count(*) AS n FROM bookings b JOIN booking_slots s ON s.id = b.slot_id"
            " WHERE b.wa_id = %s AND b.status = 'confirmed' AND s.ends_at > now()",
            (wa_id,),
        )
        upcoming = await cur.fetchone()
        if upcoming is not None and upcoming["n"] >= max_upcoming:
            raise ToolFailure(
                f"the customer already has {upcoming['n']} upcoming bookings, the most we "
                "hold at once. Offer to change or cancel one, or hand over to a person."
            )
        cur = await conn.execute(
            "INSERT INTO bookings (wa_id, slot_id, notes, price_minor, currency,"
            " idempotency_key) VALUES (%s, %s, %s, %s, %s, %s) RETURNING id",
            (wa_id, slot_id, notes.strip(), slot["price_minor"], slot["currency"], key),
        )
        row = await cur.fetchone()
        assert row is not None
        return int(row["id"])


async def _move_booking(pool: Pool, wa_id: str, booking_id: int, new_slot_id: int) -> None:
    async with pool.connection() as conn, conn.transaction():
        booking = await _customer_booking(conn, wa_id, booking_id, lock=True)
        if booking["slot_id"] == new_slot_id:
            return  # a re-run after success, or nothing to do
        _require_upcoming(booking)
        slot = await _bookable_slot(conn, new_slot_id)
        if slot["kind"] != booking["kind"]:
            raise ToolFailure(
                f"slot {new_slot_id} is a {slot['kind']} slot but booking #{booking_id} is a "
                f"{booking['kind']}; pick a {booking['kind']} slot."
            )
        await conn.execute(
            "UPDATE bookings SET slot_id = %s, updated_at = now() WHERE id = %s",
            (new_slot_id, booking_id),
        )


async def _cancel(pool: Pool, wa_id: str, booking_id: int, reason: str) -> int:
    """Cancel and void the booking's unpaid payment links; returns how many were voided."""
    async with pool.connection() as conn, conn.transaction():
        await conn.execute(
            "UPDATE bookings SET status = 'cancelled', cancel_reason = %s,"
            " cancelled_at = now(), updated_at = now()"
            " WHERE id = %s AND wa_id = %s AND status = 'confirmed'",
            (reason.strip() or None, booking_id, wa_id),
        )
        cur = await conn.execute(
            "UPDATE payments SET status = 'cancelled', updated_at = now()"
            " WHERE booking_id = %s AND status IN ('creating', 'pending')",
            (booking_id,),
        )
        return cur.rowcount


async def _customer_booking(
    source: Pool | Connection, wa_id: str, booking_id: int, *, lock: bool = False
) -> dict[str, Any]:
    """One of this customer's bookings; someone else's is reported as not found."""
    sql = f"{_BOOKING_SQL} WHERE b.id = %s AND b.wa_id = %s" + (" FOR UPDATE OF b" if lock else "")
    if isinstance(source, psycopg.AsyncConnection):
        cur = await source.execute(sql.encode(), (booking_id, wa_id))
        row = await cur.fetchone()
    else:
        async with source.connection() as conn:
            cur = await conn.execute(sql.encode(), (booking_id, wa_id))
            row = await cur.fetchone()
    if row is None:
        raise ToolFailure(f"the customer has no booking #{booking_id}; use list_my_bookings.")
    return row


def _require_upcoming(booking: dict[str, Any]) -> None:
    if booking["status"] != "confirmed":
        raise ToolFailure(f"booking #{booking['id']} is {booking['status']}; it cannot change.")
    if booking["starts_at"] <= dt.datetime.now(dt.UTC):
        raise ToolFailure(
            f"booking #{booking['id']} has already started; changes need a person at the shop."
        )


def _day(date: dt.date) -> str:
    return date.strftime("%a %d %b %Y")


def _span(starts_at: dt.datetime, ends_at: dt.datetime, zone: ZoneInfo) -> str:
    start, end = starts_at.astimezone(zone), ends_at.astimezone(zone)
    return f"{start:%a %d %b} {start:%H:%M}–{end:%H:%M}"


def _kind_label(kind: str) -> str:
    return "" if kind == "any" else f"{kind} "


def _slot_line(row: dict[str, Any], zone: ZoneInfo) -> str:
    price = format_money(int(row["price_minor"]), row["currency"])
    when = _span(row["starts_at"], row["ends_at"], zone)
    return f"slot {row['slot_id']}: {when}, {row['resource_name']} ({row['kind']}) — {price}"


def _booking_line(row: dict[str, Any], zone: ZoneInfo) -> str:
    price = format_money(int(row["price_minor"]), row["currency"])
    when = _span(row["starts_at"], row["ends_at"], zone)
    notes = f", notes: {row['notes']}" if row["notes"] else ""
    return (
        f"booking #{row['id']} [{row['status']}] {when}, {row['resource_name']} "
        f"({row['kind']}), {price}{notes}"
    )
