"""Tools the agents call. Each family is built by a factory that receives what it needs
(the pool, a payment provider, a knowledge base); none reads settings or globals.

The customer a tool acts for comes from the run (`ConversationContext.wa_id`), never
from the model's arguments. Critical actions (`create_payment`, `cancel_payment`,
`cancel_booking`) pause the run with `interrupt()` for a Confirm / Cancel button; resume
with `Command(resume="confirm:yes")` to go ahead, anything else declines.
"""

from __future__ import annotations

from langchain_core.tools import BaseTool

from tools.bookings import make_booking_tools
from tools.catalog import make_catalog_tools
from tools.common import CONFIRM_NO, CONFIRM_YES, Pool, is_yes
from tools.demo import seed_demo
from tools.knowledge import KnowledgeBase, create_pg_engine, load_documents, make_knowledge_tools
from tools.payment_providers import (
    HttpPaymentLinkProvider,
    ManualBankTransferProvider,
    PaymentProvider,
    create_payment_provider,
)
from tools.payments import make_payment_tools, mark_payment_paid
from tools.tickets import make_ticket_tools

__all__ = [
    "CONFIRM_NO",
    "CONFIRM_YES",
    "HttpPaymentLinkProvider",
    "KnowledgeBase",
    "ManualBankTransferProvider",
    "PaymentProvider",
    "create_payment_provider",
    "create_pg_engine",
    "is_yes",
    "load_documents",
    "make_booking_tools",
    "make_business_tools",
    "make_catalog_tools",
    "make_knowledge_tools",
    "make_payment_tools",
    "make_ticket_tools",
    "mark_payment_paid",
    "seed_demo",
]


def make_business_tools(
    pool: Pool,
    *,
    payment_provider: PaymentProvider,
    knowledge: KnowledgeBase | None,
    timezone: str = "Africa/Kigali",
) -> dict[str, BaseTool]:
    """Every business tool by name, for the agents' allow-lists to pick from."""
    tools = [
        *make_catalog_tools(pool),
        *make_booking_tools(pool, timezone=timezone),
        *make_payment_tools(pool, payment_provider, timezone=timezone),
        *make_ticket_tools(pool),
        *(make_knowledge_tools(knowledge) if knowledge is not None else []),
    ]
    return {tool.name: tool for tool in tools}
