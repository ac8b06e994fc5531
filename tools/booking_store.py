"""The bookings tables as the booking tools use them: free slots, one booking, a move.

Every rule that decides whether a change may happen lives here and runs twice: once to
put the right question to the customer, and again under the row lock of the change
itself, because a slot can be taken (or a payment made) while the customer reads.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

import psycopg

from tools.common import Connection, Pool, ToolFailure, ensure_contact, format_money

SLOT_SQL = """
    SELECT s.id AS slot_id, s.starts_at, s.ends_at, s.active AS slot_active,
           r.code, r.name AS resource_name, r.kind, r.active AS resource_active,
           r.service_sku, c.price_minor, c.currency
    FROM booking_slots s
    JOIN booking_resources r ON r.id = s.resource_id
    JOIN catalog_items c ON c.sku = r.service_sku
"""
BOOKING_SQL = """
    SELECT b.id, b.status, b.notes, b.price_minor, b.currency, b.slot_id,
           s.starts_at, s.ends_at, r.name AS resource_name, r.kind, r.service_sku
    FROM bookings b
    JOIN booking_slots s ON s.id = b.slot_id
    JOIN booking_resources r ON r.id = s.resource_id
"""
_UNPAID = ("creating", "pending")


async def free_slots(pool: Pool, date: dt.date, zone: ZoneInfo, kind: str) -> list[dict[str, Any]]:
    start = dt.datetime.combine(date, dt.time(), zone)
    params: dict[str, Any] = {"start": start, "end": start + dt.timedelta(days=1), "kind": kind}
    sql = f"""{SLOT_SQL}
        WHERE s.starts_at >= %(start)s AND s.starts_at < %(end)s AND s.starts_at > now()
          AND s.active AND r.active AND (%(kind)s = 'any' OR r.kind = %(kind)s)
          AND NOT EXISTS (SELECT 1 FROM bookings b
                          WHERE b.slot_id = s.id AND b.status <> 'cancelled')
        ORDER BY s.starts_at, r.kind, r.code LIMIT 30"""
    async with pool.connection() as conn:
        cur = await conn.execute(sql.encode(), params)
        return list(await cur.fetchall())


async def free_slot(conn: Connection, slot_id: int, *, moving: int | None = None) -> dict[str, Any]:
    """A slot that can be booked now (or that booking `moving` may move to)."""
    cur = await conn.execute(f"{SLOT_SQL} WHERE s.id = %s".encode(), (slot_id,))
    slot = await cur.fetchone()
    if slot is None or not (slot["slot_active"] and slot["resource_active"]):
        raise ToolFailure(f"there is no slot {slot_id}; use check_availability for valid ids.")
    if slot["starts_at"] <= dt.datetime.now(dt.UTC):
        raise ToolFailure(f"slot {slot_id} has already started; pick a later one.")
    cur = await conn.execute(
        "SELECT 1 FROM bookings WHERE slot_id = %s AND status <> 'cancelled' AND id <> %s",
        (slot_id, moving or 0),
    )
    if await cur.fetchone() is not None:
        raise taken(slot_id)
    return slot


def taken(slot_id: int) -> ToolFailure:
    return ToolFailure(
        f"slot {slot_id} was just taken by someone else. Check availability again "
        "and offer the customer another slot."
    )


async def bookable(conn: Connection, wa_id: str, slot_id: int, max_upcoming: int) -> dict[str, Any]:
    """The slot, if this customer may book it now: free, and under their limit."""
    slot = await free_slot(conn, slot_id)
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
    return slot


async def booking_by_key(pool: Pool, key: str) -> int | None:
    """The booking a tool call already made (a re-run after the customer's yes)."""
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT id FROM bookings WHERE idempotency_key = %s", (key,))
        row = await cur.fetchone()
    return None if row is None else int(row["id"])


async def insert_booking(
    pool: Pool, wa_id: str, slot_id: int, notes: str, key: str, max_upcoming: int
) -> int:
    """The booking's id; a re-run of the same tool call returns the booking it made."""
    async with pool.connection() as conn, conn.transaction():
        cur = await conn.execute("SELECT id FROM bookings WHERE idempotency_key = %s", (key,))
        if (done := await cur.fetchone()) is not None:
            return int(done["id"])
        slot = await bookable(conn, wa_id, slot_id, max_upcoming)
        await ensure_contact(conn, wa_id)
        cur = await conn.execute(
            "INSERT INTO bookings (wa_id, slot_id, notes, price_minor, currency,"
            " idempotency_key) VALUES (%s, %s, %s, %s, %s, %s) RETURNING id",
            (wa_id, slot_id, notes.strip(), slot["price_minor"], slot["currency"], key),
        )
        row = await cur.fetchone()
        assert row is not None
        return int(row["id"])


@dataclass(frozen=True)
class Move:
    """A booking moved to another slot, and what that does to its price and payments.

    Within one service the price agreed at booking stays; another service (an e-bike
    instead of a city bike) costs what that service costs. A new price cancels the
    unpaid payments asking for the old one; a paid booking keeps its price or a person
    settles the difference.
    """

    booking: dict[str, Any]
    slot: dict[str, Any]
    price_minor: int
    currency: str
    unpaid: list[dict[str, Any]] = field(default_factory=list)

    @property
    def repriced(self) -> bool:
        return (self.price_minor, self.currency) != (
            int(self.booking["price_minor"]),
            self.booking["currency"],
        )

    @property
    def price(self) -> str:
        return format_money(self.price_minor, self.currency)


async def plan_move(conn: Connection, booking: dict[str, Any], new_slot_id: int) -> Move:
    require_upcoming(booking)
    slot = await free_slot(conn, new_slot_id, moving=int(booking["id"]))
    if slot["kind"] != booking["kind"]:
        raise ToolFailure(
            f"slot {new_slot_id} is a {slot['kind']} slot but booking #{booking['id']} is a "
            f"{booking['kind']}; pick a {booking['kind']} slot."
        )
    same_service = slot["service_sku"] == booking["service_sku"]
    source = booking if same_service else slot
    cur = await conn.execute(
        "SELECT reference, status, amount_minor, currency FROM payments"
        " WHERE booking_id = %s AND status IN ('creating', 'pending', 'paid') ORDER BY id",
        (booking["id"],),
    )
    payments = list(await cur.fetchall())
    unpaid = [p for p in payments if p["status"] in _UNPAID]
    move = Move(booking, slot, int(source["price_minor"]), source["currency"], unpaid)
    if move.repriced and any(p["status"] == "paid" for p in payments):
        old = format_money(int(booking["price_minor"]), booking["currency"])
        raise ToolFailure(
            f"booking #{booking['id']} is paid ({old}) and slot {new_slot_id} costs "
            f"{move.price}; a person settles the difference. Offer a slot of the same "
            "service, or to hand over to a person."
        )
    return move


async def move_booking(
    pool: Pool, wa_id: str, booking_id: int, new_slot_id: int, agreed: tuple[int, str]
) -> Move | None:
    """Move the booking at the price the customer agreed to; None when it is already
    on that slot (a re-run after success)."""
    async with pool.connection() as conn, conn.transaction():
        booking = await customer_booking(conn, wa_id, booking_id, lock=True)
        if booking["slot_id"] == new_slot_id:
            return None
        move = await plan_move(conn, booking, new_slot_id)
        if (move.price_minor, move.currency) != agreed:
            raise ToolFailure(
                f"the price of slot {new_slot_id} changed meanwhile ({move.price}); "
                "nothing was moved. Ask the customer again."
            )
        await conn.execute(
            "UPDATE bookings SET slot_id = %s, price_minor = %s, currency = %s,"
            " updated_at = now() WHERE id = %s",
            (new_slot_id, move.price_minor, move.currency, booking_id),
        )
        if move.repriced and move.unpaid:
            await conn.execute(
                "UPDATE payments SET status = 'cancelled', updated_at = now()"
                " WHERE booking_id = %s AND status IN ('creating', 'pending')",
                (booking_id,),
            )
        return move


async def cancel_booking(pool: Pool, wa_id: str, booking_id: int, reason: str) -> int:
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


async def customer_booking(
    source: Pool | Connection, wa_id: str, booking_id: int, *, lock: bool = False
) -> dict[str, Any]:
    """One of this customer's bookings; someone else's is reported as not found."""
    sql = f"{BOOKING_SQL} WHERE b.id = %s AND b.wa_id = %s" + (" FOR UPDATE OF b" if lock else "")
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


def require_upcoming(booking: dict[str, Any]) -> None:
    if booking["status"] != "confirmed":
        raise ToolFailure(f"booking #{booking['id']} is {booking['status']}; it cannot change.")
    if booking["starts_at"] <= dt.datetime.now(dt.UTC):
        raise ToolFailure(
            f"booking #{booking['id']} has already started; changes need a person at the shop."
        )
