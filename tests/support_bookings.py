"""The business tools (catalog, bookings, tickets, payments) driven through a LangGraph
tool node exactly as the agents call them, on a freshly seeded demo database: the
customers and fixtures that the booking, payment, catalog and ticket tests share."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from langchain_core.messages import AIMessage, ToolMessage
from langchain_core.runnables import RunnableConfig
from langchain_core.tools import BaseTool
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.prebuilt import ToolNode
from langgraph.types import Command, Interrupt

from graph.context import ConversationContext
from graph.infra.database import Pool, open_pool
from tests.support import service_settings
from tools.bookings import make_booking_tools
from tools.catalog import make_catalog_tools
from tools.demo import seed_demo
from tools.payment_providers import ManualBankTransferProvider
from tools.payments import make_payment_tools
from tools.tickets import make_ticket_tools

ALICE, BOB = "250788000111", "250788000222"
KIGALI = ZoneInfo("Africa/Kigali")


@dataclass
class Outcome:
    config: RunnableConfig
    text: str = ""
    interrupt: Interrupt | None = None
    shown: Any = None  # what the tool gave to show the customer (the ToolMessage's artifact)


class Customer:
    """Drives tools the way an agent's tool node does: one AI tool call per run, with the
    customer (and the business number they wrote to) in the runtime context, every call
    in the customer's one thread, so a call id sent again is the same call re-run."""

    def __init__(
        self, graph: CompiledStateGraph[Any, Any, Any, Any], wa_id: str, phone_number_id: str = ""
    ) -> None:
        self.graph = graph
        self.context = ConversationContext(
            conversation_id="c-" + wa_id, wa_id=wa_id, phone_number_id=phone_number_id
        )
        self.thread = f"thread-{wa_id}-{phone_number_id}"

    async def call(self, name: str, args: dict[str, Any], *, call_id: str = "") -> Outcome:
        config: RunnableConfig = {"configurable": {"thread_id": self.thread}}
        call = {"name": name, "args": args, "id": call_id or f"call_{uuid.uuid4().hex[:8]}"}
        return await self._run({"messages": [AIMessage(content="", tool_calls=[call])]}, config)

    async def resume(self, outcome: Outcome, answer: object) -> Outcome:
        return await self._run(Command(resume=answer), outcome.config)

    async def confirmed(self, name: str, args: dict[str, Any], *, call_id: str = "") -> Outcome:
        """The call, with the customer tapping Confirm when it asks."""
        asked = await self.call(name, args, call_id=call_id)
        return asked if asked.interrupt is None else await self.resume(asked, "confirm:yes")

    async def _run(self, payload: Any, config: RunnableConfig) -> Outcome:
        result = await self.graph.ainvoke(payload, config, context=self.context)
        if result.get("__interrupt__"):
            return Outcome(config, interrupt=result["__interrupt__"][0])
        last = result["messages"][-1]
        assert isinstance(last, ToolMessage)
        return Outcome(config, text=str(last.content), shown=last.artifact)


def tool_graph(
    tools: Sequence[BaseTool], checkpointer: BaseCheckpointSaver[Any] | None = None
) -> CompiledStateGraph[Any, Any, Any, Any]:
    builder = StateGraph(MessagesState, context_schema=ConversationContext)
    builder.add_node("tools", ToolNode(list(tools)))
    builder.add_edge(START, "tools")
    builder.add_edge("tools", END)
    return builder.compile(checkpointer=checkpointer or InMemorySaver())


@pytest.fixture
async def pool(db_url: str) -> AsyncIterator[Pool]:
    async with open_pool(db_url, service_settings(db_url)) as pool:
        await seed_demo(pool)
        yield pool


def business_tools(pool: Pool) -> list[BaseTool]:
    manual = ManualBankTransferProvider(bank_name="BK", account_name="Shop", account_number="1")
    return [
        *make_catalog_tools(pool),
        *make_booking_tools(pool, max_upcoming_per_customer=3),
        *make_ticket_tools(pool),
        *make_payment_tools(pool, manual),
    ]


@pytest.fixture
def alice(pool: Pool) -> Customer:
    return Customer(tool_graph(business_tools(pool)), ALICE)


@pytest.fixture
def bob(pool: Pool) -> Customer:
    return Customer(tool_graph(business_tools(pool)), BOB)


def open_day(after_days: int = 1) -> dt.date:
    day = dt.datetime.now(KIGALI).date() + dt.timedelta(days=after_days)
    return day + dt.timedelta(days=1) if day.weekday() == 6 else day


def booking_number(text: str) -> int:
    return int(text.split("#")[1].split()[0])
