"""Structured, read-only views of the business for the rule-based menu.

The agents' tools answer in sentences a model reads; a WhatsApp list needs rows with
ids and short titles instead. These queries give the menu those rows. Anything that
changes data still goes through the agents' tools (the menu calls the same tools), so
confirmations, idempotency and limits are the same with or without a model.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from tools.common import SOLD_HERE, Pool, format_money

_FREE_SLOT_FILTER = """
    s.starts_at > now() AND s.active AND r.active
    AND NOT EXISTS (SELECT 1 FROM bookings b WHERE b.slot_id = s.id AND b.status <> 'cancelled')
"""


@dataclass(frozen=True)
class ListRow:
    """One row of a WhatsApp list: an id the tap sends back, a title, a description."""

    id: str
    title: str
    description: str = ""


@dataclass(frozen=True)
class Listings:
    """The menu's read-only queries, in the business's time zone."""

    pool: Pool
    timezone: str = "Africa/Kigali"
    # The conversation's business number: its own items beside the shared ones (None:
    # every item, as in Studio and tests).
    phone_number_id: str | None = None

    def for_number(self, phone_number_id: str | None) -> Listings:
        return dataclasses.replace(self, phone_number_id=phone_number_id or None)

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    async def products(self, limit: int = 9) -> list[ListRow]:
        """The cheapest active services and products, both kinds always shown (a list
        holds ten rows: the menu's own "main menu" row and nine items)."""
        rows = await self._fetch(
            "SELECT * FROM (SELECT sku, name, kind, price_minor, currency, unit, stock,"
            " row_number() OVER (PARTITION BY kind ORDER BY price_minor, sku) AS rank"
            f" FROM catalog_items WHERE active AND {SOLD_HERE}) ranked"
            " WHERE rank <= %(per_kind)s ORDER BY kind DESC, price_minor, sku LIMIT %(limit)s",
            {"per_kind": (limit + 1) // 2, "limit": limit, "number": self.phone_number_id},
        )
        return [ListRow(f"product:{r['sku']}", r["name"], _price_and_stock(r)) for r in rows]

    async def product_kind(self, sku: str) -> str | None:
        """`product`, `service`, or None for an unknown or inactive SKU."""
        rows = await self._fetch(
            f"SELECT kind, stock FROM catalog_items WHERE sku = %(sku)s AND active AND {SOLD_HERE}",
            {"sku": sku, "number": self.phone_number_id},
        )
        if not rows:
            return None
        return "sold_out" if rows[0]["stock"] == 0 else str(rows[0]["kind"])

    async def days_with_free_slots(self, days: int = 7) -> list[ListRow]:
        """The next days on which at least one slot is free, with how many."""
        rows = await self._fetch(
            "SELECT (s.starts_at AT TIME ZONE %s)::date AS day, count(*) AS free"
            " FROM booking_slots s JOIN booking_resources r ON r.id = s.resource_id"
            f" WHERE {_FREE_SLOT_FILTER} AND s.starts_at < now() + make_interval(days => %s)"
            " GROUP BY 1 ORDER BY 1 LIMIT 10",
            (self.timezone, days),
        )
        return [
            ListRow(f"day:{r['day'].isoformat()}", f"{r['day']:%a %d %b}", f"{r['free']} free")
            for r in rows
        ]

    async def free_slots(self, day: dt.date, limit: int = 10) -> list[ListRow]:
        start = dt.datetime.combine(day, dt.time(), self.zone)
        rows = await self._fetch(
            "SELECT s.id, s.starts_at, s.ends_at, r.name, c.price_minor, c.currency"
            " FROM booking_slots s JOIN booking_resources r ON r.id = s.resource_id"
            " JOIN catalog_items c ON c.sku = r.service_sku"
            f" WHERE {_FREE_SLOT_FILTER} AND s.starts_at >= %s AND s.starts_at < %s"
            " ORDER BY s.starts_at, r.code LIMIT %s",
            (start, start + dt.timedelta(days=1), limit),
        )
        return [
            ListRow(
                f"slot:{r['id']}",
                self._span(r["starts_at"], r["ends_at"]),
                f"{r['name']} · {format_money(int(r['price_minor']), r['currency'])}",
            )
            for r in rows
        ]

    async def upcoming_bookings(self, wa_id: str, *, unpaid_only: bool = False) -> list[ListRow]:
        unpaid = (
            " AND NOT EXISTS (SELECT 1 FROM payments p WHERE p.booking_id = b.id"
            " AND p.status IN ('creating', 'pending', 'paid'))"
            if unpaid_only
            else ""
        )
        rows = await self._fetch(
            "SELECT b.id, s.starts_at, s.ends_at, r.name, b.price_minor, b.currency"
            " FROM bookings b JOIN booking_slots s ON s.id = b.slot_id"
            " JOIN booking_resources r ON r.id = s.resource_id"
            f" WHERE b.wa_id = %s AND b.status = 'confirmed' AND s.ends_at > now(){unpaid}"
            " ORDER BY s.starts_at LIMIT 9",
            (wa_id,),
        )
        return [
            ListRow(
                f"booking:{r['id']}",
                f"#{r['id']} {r['starts_at'].astimezone(self.zone):%a %d %b %H:%M}",
                f"{r['name']} · {format_money(int(r['price_minor']), r['currency'])}",
            )
            for r in rows
        ]

    async def booking_on_slot(self, wa_id: str, slot_id: int) -> int | None:
        """The customer's live booking of a slot: what a tap on that slot just made."""
        rows = await self._fetch(
            "SELECT id FROM bookings WHERE wa_id = %s AND slot_id = %s AND status = 'confirmed'",
            (wa_id, slot_id),
        )
        return int(rows[0]["id"]) if rows else None

    def _span(self, starts_at: dt.datetime, ends_at: dt.datetime) -> str:
        start, end = starts_at.astimezone(self.zone), ends_at.astimezone(self.zone)
        return f"{start:%H:%M}–{end:%H:%M}"

    async def _fetch(
        self, sql: str, params: tuple[Any, ...] | dict[str, Any]
    ) -> list[dict[str, Any]]:
        async with self.pool.connection() as conn:
            cur = await conn.execute(sql.encode(), params)
            return list(await cur.fetchall())


def _price_and_stock(row: dict[str, Any]) -> str:
    price = format_money(int(row["price_minor"]), row["currency"])
    per = "" if row["unit"] == "item" else f"/{row['unit']}"
    if row["stock"] is None:
        return f"{price}{per}"
    stock = "sold out" if row["stock"] == 0 else f"{row['stock']} in stock"
    return f"{price}{per} · {stock}"
