"""What a payment is for and how much it is, computed from our own tables.

The model names a booking or products; the amount always comes from the booking's price
(fixed when booked) or the catalog's current prices, with stock checked.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import Field

from tools.common import SOLD_HERE, Connection, Pool, ToolArgs, ToolFailure


class ItemLine(ToolArgs):
    sku: str = Field(min_length=2, max_length=40, pattern=r"^[A-Za-z0-9][A-Za-z0-9-]*$")
    quantity: int = Field(default=1, ge=1, le=20)


@dataclass(frozen=True)
class Quote:
    """What a payment is for, priced from our tables."""

    description: str
    amount_minor: int
    currency: str
    booking_id: int | None = None
    items: list[dict[str, Any]] = field(default_factory=list)


async def quote_for(
    pool: Pool,
    wa_id: str,
    booking_id: int | None,
    items: list[ItemLine],
    *,
    phone_number_id: str | None = None,
) -> Quote:
    """The quote for one booking of this customer, or for products (those sold on
    `phone_number_id`: a shop never bills another shop's item)."""
    async with pool.connection() as conn:
        if booking_id is not None:
            return await _booking_quote(conn, wa_id, booking_id)
        return await _items_quote(conn, items, phone_number_id)


async def _booking_quote(conn: Connection, wa_id: str, booking_id: int) -> Quote:
    cur = await conn.execute(
        "SELECT b.id, b.status, b.price_minor, b.currency, r.name, s.starts_at"
        " FROM bookings b JOIN booking_slots s ON s.id = b.slot_id"
        " JOIN booking_resources r ON r.id = s.resource_id"
        " WHERE b.id = %s AND b.wa_id = %s",
        (booking_id, wa_id),
    )
    row = await cur.fetchone()
    if row is None:
        raise ToolFailure(f"the customer has no booking #{booking_id}; use list_my_bookings.")
    if row["status"] != "confirmed":
        raise ToolFailure(f"booking #{booking_id} is {row['status']}; it cannot be paid.")
    if row["price_minor"] <= 0:
        raise ToolFailure(f"booking #{booking_id} is free of charge; nothing to pay.")
    day = row["starts_at"].strftime("%d %b")
    return Quote(
        description=f"booking #{booking_id} ({row['name']}, {day})",
        amount_minor=int(row["price_minor"]),
        currency=row["currency"],
        booking_id=booking_id,
    )


async def _items_quote(conn: Connection, items: list[ItemLine], number: str | None) -> Quote:
    quantities: dict[str, int] = {}
    for line in items:
        quantities[line.sku.upper()] = quantities.get(line.sku.upper(), 0) + line.quantity
    cur = await conn.execute(
        "SELECT sku, name, price_minor, currency, stock FROM catalog_items"
        f" WHERE sku = ANY(%(skus)s) AND active AND kind = 'product' AND {SOLD_HERE}",
        {"skus": list(quantities), "number": number},
    )
    found = {row["sku"]: row for row in await cur.fetchall()}
    if missing := sorted(set(quantities) - set(found)):
        raise ToolFailure(f"no product with SKU {', '.join(missing)}; use search_catalog.")
    lines: list[dict[str, Any]] = []
    for sku, quantity in quantities.items():
        row = found[sku]
        if row["stock"] is not None and row["stock"] < quantity:
            raise ToolFailure(f"only {row['stock']} of {row['name']} ({sku}) left in stock.")
        lines.append(
            {
                "sku": sku,
                "name": row["name"],
                "quantity": quantity,
                "unit_price_minor": row["price_minor"],
            }
        )
    if len({found[sku]["currency"] for sku in quantities}) > 1:
        raise ToolFailure("these products are priced in different currencies; pay separately.")
    return Quote(
        description=", ".join(f"{line['quantity']} × {line['name']}" for line in lines),
        amount_minor=sum(line["unit_price_minor"] * line["quantity"] for line in lines),
        currency=found[next(iter(quantities))]["currency"],
        items=lines,
    )
