"""The business tools, built from settings: the one place tools meet configuration.

tools/ never reads settings; this module decides which payment provider and which
knowledge base the agents get, and hands the finished tools to the graph.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import structlog
from langchain_core.tools import BaseTool

from graph.infra.database import Pool
from graph.infra.embeddings import EmbeddingsConfigError, build_embeddings, embedding_dimensions
from graph.settings import Settings
from tools import make_business_tools
from tools.knowledge import KnowledgeBase, create_pg_engine
from tools.payment_providers import PaymentProvider, create_payment_provider

log = structlog.get_logger(__name__)

# knowledge_chunks.embedding is vector(384) (migration 0006).
KNOWLEDGE_DIMENSIONS = 384


def payment_provider_from_settings(settings: Settings) -> PaymentProvider:
    key = settings.payment_api_key.get_secret_value() if settings.payment_api_key else None
    return create_payment_provider(
        settings.payment_provider,
        api_base_url=settings.payment_api_base_url,
        api_key=key,
        timeout_seconds=settings.payment_timeout_seconds,
        max_attempts=settings.payment_max_attempts,
        bank_name=settings.bank_name,
        account_name=settings.bank_account_name,
        account_number=settings.bank_account_number,
        mobile_money_code=settings.mobile_money_code,
    )


@asynccontextmanager
async def knowledge_base_from_settings(
    pool: Pool, database_url: str, settings: Settings
) -> AsyncIterator[KnowledgeBase | None]:
    """The knowledge base, or None (logged) when pgvector or the embeddings are unfit."""
    try:
        dimensions = embedding_dimensions(settings)
        embeddings = build_embeddings(settings)
    except EmbeddingsConfigError as exc:
        log.warning("knowledge.disabled", reason=str(exc))
        yield None
        return
    if dimensions != KNOWLEDGE_DIMENSIONS:
        log.warning(
            "knowledge.disabled",
            reason=f"embeddings give {dimensions} dimensions; the knowledge table holds "
            f"{KNOWLEDGE_DIMENSIONS} (set WA_AGENT_EMBEDDINGS_DIMENSIONS=384)",
        )
        yield None
        return
    engine = create_pg_engine(database_url)
    try:
        knowledge = KnowledgeBase(pool, engine, embeddings, embedding_model=settings.embeddings)
        if not await knowledge.available():
            log.warning("knowledge.disabled", reason="pgvector is not installed on this server")
            yield None
        else:
            yield knowledge
    finally:
        await engine.close()


@asynccontextmanager
async def open_business_tools(
    pool: Pool, database_url: str, settings: Settings
) -> AsyncIterator[dict[str, BaseTool]]:
    """Every business tool by name, for the agents' allow-lists; the knowledge-base
    engine is closed on exit."""
    async with knowledge_base_from_settings(pool, database_url, settings) as knowledge:
        yield make_business_tools(
            pool,
            payment_provider=payment_provider_from_settings(settings),
            knowledge=knowledge,
            timezone=settings.business_timezone,
        )
