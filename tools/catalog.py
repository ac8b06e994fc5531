"""Catalog tools: what the shop sells and rents, at which price, and what is in stock.

Read-only, so no confirmation and no customer identity: the sales agent can answer
"do you have a helmet under 20,000?" straight from the `catalog_items` table. The run's
business number picks what it sells: the shared items and its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from langchain_core.tools import BaseTool
from langgraph.prebuilt import ToolRuntime
from pydantic import Field, model_validator

from graph.state import MediaReply
from tools.common import (
    SOLD_HERE,
    CustomerToolArgs,
    Pool,
    ToolAnswer,
    ToolFailure,
    business_number,
    business_tool,
    format_money,
    showing_tool,
)

_MAX_RESULTS = 10


class SearchCatalogArgs(CustomerToolArgs):
    query: str = Field(
        default="",
        max_length=100,
        description="E.g. 'helmet'; empty: all.",
    )
    kind: Literal["product", "service", "any"] = Field(default="any")
    category: str | None = Field(default=None, max_length=40)
    min_price: int | None = Field(default=None, ge=0, description="RWF")
    max_price: int | None = Field(default=None, ge=0, description="RWF")
    in_stock_only: bool = Field(default=False)
    limit: int = Field(default=5, ge=1, le=_MAX_RESULTS)

    @model_validator(mode="after")
    def _range_is_ordered(self) -> SearchCatalogArgs:
        if self.min_price is not None and self.max_price is not None:
            if self.min_price > self.max_price:
                raise ValueError("min_price must not exceed max_price")
        return self


class GetProductArgs(CustomerToolArgs):
    sku: str = Field(
        min_length=2,
        max_length=40,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9-]*$",
        description="From search_catalog.",
    )


def make_catalog_tools(pool: Pool) -> list[BaseTool]:
    """`search_catalog` and `get_product` over `catalog_items`."""

    async def search_catalog(
        runtime: ToolRuntime[Any, Any],
        query: str = "",
        kind: str = "any",
        category: str | None = None,
        min_price: int | None = None,
        max_price: int | None = None,
        in_stock_only: bool = False,
        limit: int = 5,
    ) -> str:
        filters = Filters(kind, category, min_price, max_price, in_stock_only)
        rows = await _search(pool, query, filters, business_number(runtime), limit)
        if not rows:
            return "No catalog items match. Try fewer words or another category."
        return "\n".join(_describe(row) for row in rows)

    async def get_product(runtime: ToolRuntime[Any, Any], sku: str) -> ToolAnswer:
        """The item for the model; its photo, if it has one, for the customer."""
        async with pool.connection() as conn:
            cur = await conn.execute(
                "SELECT * FROM catalog_items"
                f" WHERE sku = upper(%(sku)s) AND active AND {SOLD_HERE}",
                {"sku": sku, "number": business_number(runtime)},
            )
            row = await cur.fetchone()
        if row is None:
            raise ToolFailure(f"no active item with SKU {sku.upper()}; use search_catalog.")
        text = _describe(row)
        text = f"{text}\n{row['description']}" if row["description"] else text
        if not row["image_url"]:
            return text, []
        photo: MediaReply = {"kind": "image", "link": row["image_url"], "caption": row["name"]}
        return f"{text}\n(Its photo is sent to the customer with your answer.)", [photo]

    return [
        business_tool(
            search_catalog,
            name="search_catalog",
            description="Products (accessories, parts, bikes for sale) and services "
            "(rentals, repairs): SKU, name, price, stock.",
            args_schema=SearchCatalogArgs,
        ),
        showing_tool(
            get_product,
            name="get_product",
            description="One catalog item's price, stock and description.",
            args_schema=GetProductArgs,
        ),
    ]


@dataclass(frozen=True)
class Filters:
    kind: str = "any"
    category: str | None = None
    min_price: int | None = None
    max_price: int | None = None
    in_stock_only: bool = False


async def _search(
    pool: Pool, query: str, filters: Filters, number: str | None, limit: int
) -> list[dict[str, Any]]:
    """Full-text match on any of the words, or a substring of the name; best first;
    only what this business number sells."""
    words = " | ".join(w for w in _words(query))
    kind, category = filters.kind, filters.category
    min_price, max_price = filters.min_price, filters.max_price
    clauses = ["active", SOLD_HERE]
    params: dict[str, Any] = {
        "words": words,
        "like": f"%{query.strip()}%",
        "limit": limit,
        "number": number,
    }
    if words:
        clauses.append("(search @@ to_tsquery('simple', %(words)s) OR name ILIKE %(like)s)")
    if kind != "any":
        clauses.append("kind = %(kind)s")
        params["kind"] = kind
    if category:
        clauses.append("lower(category) = lower(%(category)s)")
        params["category"] = category.strip()
    if min_price is not None:
        clauses.append("price_minor >= %(min_price)s")
        params["min_price"] = min_price
    if max_price is not None:
        clauses.append("price_minor <= %(max_price)s")
        params["max_price"] = max_price
    if filters.in_stock_only:
        clauses.append("(stock IS NULL OR stock > 0)")
    rank = "ts_rank(search, to_tsquery('simple', %(words)s))" if words else "0"
    sql = (
        f"SELECT *, {rank} AS rank FROM catalog_items WHERE {' AND '.join(clauses)}"
        " ORDER BY rank DESC, price_minor, sku LIMIT %(limit)s"
    )
    async with pool.connection() as conn:
        cur = await conn.execute(sql.encode(), params)
        return list(await cur.fetchall())


def _words(query: str) -> list[str]:
    """Query words safe for to_tsquery: letters and digits only, prefix-matched."""
    cleaned = "".join(ch if ch.isalnum() else " " for ch in query.lower())
    return [f"{word}:*" for word in cleaned.split() if len(word) > 1][:8]


def _describe(row: dict[str, Any]) -> str:
    price = format_money(int(row["price_minor"]), row["currency"])
    per = "" if row["unit"] == "item" else f" per {row['unit']}"
    if row["stock"] is None:
        availability = "service"
    elif row["stock"] == 0:
        availability = "out of stock"
    else:
        availability = f"{row['stock']} in stock"
    return f"[{row['sku']}] {row['name']} ({row['category']}) — {price}{per}, {availability}"
