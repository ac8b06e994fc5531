"""The demo business, Inzira Bikes (rentals, repairs, accessories in Kigali), so that a
fresh `make serve` answers like a real shop. Loaded by `wa-agent seed-demo`.

Seeding only adds what is missing (catalog items by SKU, resources by code, slots by
resource and start, documents by content hash): running it twice changes nothing, and
it never overwrites what an operator edited since (prices, stock, deactivated items).
"""

from __future__ import annotations

import asyncio
import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo

from tools.common import Connection, Pool
from tools.knowledge import KnowledgeBase, SyncReport, load_documents

DEMO_CURRENCY = "RWF"
KNOWLEDGE_DIR = Path(__file__).resolve().parent.parent / "prompts" / "knowledge"

# sku, kind, name, category, price (RWF), unit, stock (None: a service), description
CATALOG: tuple[tuple[str, str, str, str, int, str, int | None, str], ...] = (
    ("RENT-CITY", "service", "City bike rental, half day", "rental", 6000, "slot", None,
     "Upright city bike with basket, lock and helmet. Morning or afternoon slot."),
    ("RENT-MTB", "service", "Mountain bike rental, half day", "rental", 10000, "slot", None,
     "21-gear mountain bike with front suspension, helmet and repair kit."),
    ("RENT-EBIKE", "service", "E-bike rental, half day", "rental", 15000, "slot", None,
     "Electric-assist bike (25 km/h, about 50 km range), helmet and charger."),
    ("REP-APPOINTMENT", "service", "Workshop appointment", "repair", 3000, "slot", None,
     "One-hour inspection and written quote; deducted from the repair bill."),
    ("REP-PUNCTURE", "service", "Puncture repair", "repair", 2000, "job", None,
     "Patch or replace the inner tube (tube extra), done while you wait."),
    ("REP-BRAKES", "service", "Brake adjustment or pad fitting", "repair", 4000, "job", None,
     "Labour only; brake pads are sold separately."),
    ("REP-GEARS", "service", "Gear adjustment", "repair", 4000, "job", None,
     "Derailleur indexing and cable tension."),
    ("REP-SERVICE-BASIC", "service", "Basic service", "repair", 8000, "job", None,
     "Clean, adjust brakes and gears, lubricate chain, check tyres. Half a day."),
    ("REP-SERVICE-FULL", "service", "Full service", "repair", 20000, "job", None,
     "Basic service plus wheel truing, bearings and cables. One to two days; parts extra."),
    ("ACC-HELMET", "product", "Adult helmet", "accessories", 18000, "item", 12,
     "Ventilated helmet, sizes M and L, adjustable fit."),
    ("ACC-HELMET-KID", "product", "Children's helmet", "accessories", 12000, "item", 6,
     "Helmet for children aged 5 to 12."),
    ("ACC-LOCK-U", "product", "U-lock with two keys", "accessories", 15000, "item", 8,
     "Hardened steel U-lock with frame mount."),
    ("ACC-LIGHTS", "product", "LED light set (front and rear)", "accessories", 9000, "item",
     15, "USB-rechargeable lights, about 6 hours per charge."),
    ("ACC-BOTTLE", "product", "Water bottle 750 ml", "accessories", 3500, "item", 30,
     "BPA-free bottle that fits standard cages."),
    ("ACC-GLOVES", "product", "Cycling gloves", "accessories", 7000, "item", 10,
     "Padded fingerless gloves, sizes S to XL."),
    ("ACC-PUMP", "product", "Mini pump", "accessories", 8500, "item", 9,
     "Fits Presta and Schrader valves, frame mount included."),
    ("PART-TUBE-26", "product", "Inner tube 26 inch", "parts", 4000, "item", 25,
     "For most city and older mountain bikes."),
    ("PART-TUBE-700C", "product", "Inner tube 700c", "parts", 4000, "item", 20,
     "For road and hybrid bikes."),
    ("PART-TYRE-MTB", "product", "Mountain bike tyre 27.5 inch", "parts", 22000, "item", 6,
     "Knobby all-terrain tyre, 2.2 inch wide."),
    ("PART-BRAKE-PADS", "product", "Brake pads (pair)", "parts", 5000, "item", 18,
     "V-brake pads; ask us for disc-brake pads."),
    ("PART-CHAIN-9S", "product", "Chain, 9-speed", "parts", 14000, "item", 0,
     "Back in stock soon; we can order it for you."),
    ("BIKE-CITY-REFURB", "product", "Refurbished city bike", "bikes", 180000, "item", 2,
     "Ex-rental city bike, fully serviced, 3 months warranty."),
)  # fmt: skip

# code, name, kind, the SKU that prices one slot
RESOURCES: tuple[tuple[str, str, str, str], ...] = (
    ("CITY-1", "City bike 1", "rental", "RENT-CITY"),
    ("CITY-2", "City bike 2", "rental", "RENT-CITY"),
    ("CITY-3", "City bike 3", "rental", "RENT-CITY"),
    ("MTB-1", "Mountain bike 1", "rental", "RENT-MTB"),
    ("MTB-2", "Mountain bike 2", "rental", "RENT-MTB"),
    ("EBIKE-1", "E-bike 1", "rental", "RENT-EBIKE"),
    ("WORKSHOP", "Workshop bench", "repair", "REP-APPOINTMENT"),
)

_SATURDAY, _SUNDAY = 5, 6


def opening_slots(kind: str, day: dt.date) -> list[tuple[dt.time, dt.time]]:
    """The shop's slots for a day (local time), as rentals.md and repairs.md describe."""
    if day.weekday() == _SUNDAY:
        return []
    saturday = day.weekday() == _SATURDAY
    if kind == "rental":
        afternoon_end = dt.time(17) if saturday else dt.time(17, 30)
        return [(dt.time(8), dt.time(12, 30)), (dt.time(13), afternoon_end)]
    last = 13 if saturday else 17
    return [(dt.time(hour), dt.time(hour + 1)) for hour in range(9, last)]


@dataclass(frozen=True)
class SeedReport:
    catalog_added: int
    resources_added: int
    slots_added: int
    knowledge: SyncReport | None

    def summary(self) -> str:
        docs = (
            "knowledge base skipped"
            if self.knowledge is None
            else f"{len(self.knowledge.indexed)} document(s) indexed, "
            f"{len(self.knowledge.unchanged)} unchanged"
        )
        return (
            f"catalog: {self.catalog_added} item(s) added; resources: {self.resources_added} "
            f"added; slots: {self.slots_added} added; {docs}"
        )


async def seed_demo(
    pool: Pool,
    *,
    timezone: str = "Africa/Kigali",
    days: int = 14,
    today: dt.date | None = None,
    knowledge: KnowledgeBase | None = None,
    knowledge_dir: Path = KNOWLEDGE_DIR,
) -> SeedReport:
    """Add the demo catalog, resources and the next `days` days of slots; index the
    knowledge documents when a knowledge base is given."""
    zone = ZoneInfo(timezone)
    start_day = today or dt.datetime.now(zone).date()
    async with pool.connection() as conn, conn.transaction():
        catalog_added = await _seed_catalog(conn)
        resources_added = await _seed_resources(conn)
        slots_added = await _seed_slots(conn, zone, start_day, days)
    report = None
    if knowledge is not None:
        documents = await asyncio.to_thread(load_documents, knowledge_dir)
        report = await knowledge.sync(documents)
    return SeedReport(catalog_added, resources_added, slots_added, report)


async def _seed_catalog(conn: Connection) -> int:
    added = 0
    for sku, kind, name, category, price, unit, stock, description in CATALOG:
        cur = await conn.execute(
            "INSERT INTO catalog_items (sku, kind, name, category, price_minor, currency,"
            " unit, stock, description) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)"
            " ON CONFLICT (sku) DO NOTHING",
            (sku, kind, name, category, price, DEMO_CURRENCY, unit, stock, description),
        )
        added += cur.rowcount
    return added


async def _seed_resources(conn: Connection) -> int:
    added = 0
    for code, name, kind, sku in RESOURCES:
        cur = await conn.execute(
            "INSERT INTO booking_resources (code, name, kind, service_sku)"
            " VALUES (%s, %s, %s, %s) ON CONFLICT (code) DO NOTHING",
            (code, name, kind, sku),
        )
        added += cur.rowcount
    return added


async def _seed_slots(conn: Connection, zone: ZoneInfo, first_day: dt.date, days: int) -> int:
    cur = await conn.execute(
        "SELECT id, kind FROM booking_resources WHERE code = ANY(%s)",
        ([code for code, *_ in RESOURCES],),
    )
    resources = await cur.fetchall()
    rows: list[tuple[int, dt.datetime, dt.datetime]] = []
    for offset in range(days):
        day = first_day + dt.timedelta(days=offset)
        for resource in resources:
            for start, end in opening_slots(resource["kind"], day):
                rows.append(
                    (
                        resource["id"],
                        dt.datetime.combine(day, start, zone),
                        dt.datetime.combine(day, end, zone),
                    )
                )
    async with conn.cursor() as cursor:
        await cursor.executemany(
            "INSERT INTO booking_slots (resource_id, starts_at, ends_at)"
            " VALUES (%s, %s, %s) ON CONFLICT (resource_id, starts_at) DO NOTHING",
            rows,
        )
        return max(cursor.rowcount, 0)
