"""Support tickets: what the bot cannot settle in the chat is written down for staff.

A ticket belongs to the run's customer; another customer's ticket id is answered as
"not found", never shown. Creating one is idempotent per tool call, so a re-run node
does not open the same ticket twice.

Neither opening a ticket nor adding a comment asks the customer to confirm, unlike
bookings and payments: both only write down the customer's own words for staff, commit
the customer to nothing, cost nothing, and are bounded (open tickets per customer); an
"are you sure?" would only slow down someone who is already having trouble.
"""

from __future__ import annotations

from typing import Any, Literal

from langchain_core.tools import BaseTool
from langgraph.prebuilt import ToolRuntime
from pydantic import Field

from tools.common import (
    CustomerToolArgs,
    Pool,
    ToolFailure,
    business_tool,
    customer_wa_id,
    ensure_contact,
    idempotency_key,
)

Category = Literal["repair", "rental", "order", "payment", "other"]
Priority = Literal["low", "normal", "high", "urgent"]
_OPEN_STATUSES = ("open", "in_progress", "waiting_customer")


class CreateTicketArgs(CustomerToolArgs):
    subject: str = Field(min_length=3, max_length=120)
    description: str = Field(min_length=10, max_length=2000)
    category: Category = Field(default="other")
    priority: Priority = Field(default="normal", description="urgent: safety, stranded rider.")


class TicketStatusArgs(CustomerToolArgs):
    ticket_id: int | None = Field(default=None, gt=0, description="Empty: all open.")


class AddCommentArgs(CustomerToolArgs):
    ticket_id: int = Field(gt=0)
    comment: str = Field(min_length=1, max_length=2000)


class TicketDesk:
    """The customer's support tickets, as the agents' tools act on them: always the
    run's customer's, never one the model names for someone else."""

    def __init__(self, pool: Pool, *, max_open_per_customer: int) -> None:
        self.pool = pool
        self.max_open_per_customer = max_open_per_customer

    async def create_support_ticket(
        self,
        runtime: ToolRuntime[Any, Any],
        subject: str,
        description: str,
        category: str = "other",
        priority: str = "normal",
    ) -> str:
        wa_id = customer_wa_id(runtime)
        key = idempotency_key(runtime, "ticket", wa_id)
        async with self.pool.connection() as conn, conn.transaction():
            await ensure_contact(conn, wa_id)
            cur = await conn.execute(
                "SELECT count(*) AS n FROM support_tickets WHERE wa_id = %s"
                " AND status = ANY(%s) AND idempotency_key <> %s",
                (wa_id, list(_OPEN_STATUSES), key),
            )
            counted = await cur.fetchone()
            if counted is not None and counted["n"] >= self.max_open_per_customer:
                raise ToolFailure(
                    f"the customer already has {counted['n']} open tickets; add a comment "
                    "to one of them instead (get_ticket_status lists them)."
                )
            cur = await conn.execute(
                "INSERT INTO support_tickets (wa_id, subject, description, category, priority,"
                " idempotency_key) VALUES (%s, %s, %s, %s, %s, %s)"
                " ON CONFLICT (idempotency_key)"
                " DO UPDATE SET updated_at = support_tickets.updated_at RETURNING id",
                (wa_id, subject.strip(), description.strip(), category, priority, key),
            )
            row = await cur.fetchone()
        assert row is not None
        return (
            f"Ticket #{row['id']} is open ({category}, {priority} priority). Staff answer "
            "within one working day; the customer can quote this number."
        )

    async def get_ticket_status(
        self, runtime: ToolRuntime[Any, Any], ticket_id: int | None = None
    ) -> str:
        wa_id = customer_wa_id(runtime)
        if ticket_id is None:
            return await _open_tickets(self.pool, wa_id)
        ticket = await _customer_ticket(self.pool, wa_id, ticket_id)
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT author, body, created_at FROM support_ticket_comments"
                " WHERE ticket_id = %s ORDER BY id DESC LIMIT 3",
                (ticket_id,),
            )
            comments = list(reversed(await cur.fetchall()))
        lines = [_ticket_line(ticket)]
        lines += [f"  {c['created_at']:%d %b %H:%M} {c['author']}: {c['body']}" for c in comments]
        return "\n".join(lines)

    async def add_ticket_comment(
        self, runtime: ToolRuntime[Any, Any], ticket_id: int, comment: str
    ) -> str:
        wa_id = customer_wa_id(runtime)
        ticket = await _customer_ticket(self.pool, wa_id, ticket_id)
        if ticket["status"] == "closed":
            raise ToolFailure(f"ticket #{ticket_id} is closed; open a new ticket instead.")
        async with self.pool.connection() as conn, conn.transaction():
            await conn.execute(
                "INSERT INTO support_ticket_comments (ticket_id, author, body)"
                " VALUES (%s, 'customer', %s)",
                (ticket_id, comment.strip()),
            )
            # The customer answered: a ticket waiting for them goes back to staff.
            await conn.execute(
                "UPDATE support_tickets SET updated_at = now(), status = CASE"
                " WHEN status IN ('waiting_customer', 'resolved') THEN 'open' ELSE status END"
                " WHERE id = %s",
                (ticket_id,),
            )
        return f"Comment added to ticket #{ticket_id}."


def make_ticket_tools(pool: Pool, *, max_open_per_customer: int = 5) -> list[BaseTool]:
    """`create_support_ticket`, `get_ticket_status` and `add_ticket_comment`."""
    desk = TicketDesk(pool, max_open_per_customer=max_open_per_customer)
    return [
        business_tool(
            desk.create_support_ticket,
            name="create_support_ticket",
            description="Open a ticket for staff (repairs, complaints, lost items, what "
            "the chat cannot settle).",
            args_schema=CreateTicketArgs,
        ),
        business_tool(
            desk.get_ticket_status,
            name="get_ticket_status",
            description="A ticket's status and latest comments.",
            args_schema=TicketStatusArgs,
        ),
        business_tool(
            desk.add_ticket_comment,
            name="add_ticket_comment",
            description="Add the customer's news to a ticket.",
            args_schema=AddCommentArgs,
        ),
    ]


async def _customer_ticket(pool: Pool, wa_id: str, ticket_id: int) -> dict[str, Any]:
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT * FROM support_tickets WHERE id = %s AND wa_id = %s", (ticket_id, wa_id)
        )
        row = await cur.fetchone()
    if row is None:
        raise ToolFailure(f"the customer has no ticket #{ticket_id}.")
    return row


async def _open_tickets(pool: Pool, wa_id: str) -> str:
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT * FROM support_tickets WHERE wa_id = %s AND status = ANY(%s)"
            " ORDER BY id DESC LIMIT 10",
            (wa_id, list(_OPEN_STATUSES)),
        )
        rows = await cur.fetchall()
    if not rows:
        return "The customer has no open tickets."
    return "\n".join(_ticket_line(row) for row in rows)


def _ticket_line(row: dict[str, Any]) -> str:
    status = str(row["status"]).replace("_", " ")
    return (
        f"ticket #{row['id']} [{status}] {row['subject']} ({row['category']}, "
        f"{row['priority']}), opened {row['created_at']:%d %b %Y}"
    )
