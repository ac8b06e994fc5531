"""The entry `langgraph.json` names: the production graph, for LangGraph Studio.

    .venv/bin/langgraph dev --no-browser        then open the Studio URL it prints

`graph` is a graph factory (LangGraph's server calls it for every run and every read):
the first call opens what `make serve` opens for its graph — the database
(`DATABASE_URL`, else the embedded server under `.data/`), its migrations, the pool —
and builds the graph through the service's own factory (conversation_graphs.py):
router, specialists, tools behind the registry's wrapper, answer cache, long-term
memory. Later calls return the same compiled graph; Studio brings the checkpointer. Tool
rate limits are counted in this process (one `langgraph dev`), not in Redis.
Pass the run's context in Studio's context form (`wa_id`, `conversation_id`, `flags`)
to act as a customer: business tools, memory recall and per-customer flags read it.

Traces are masked as the service's are: importing this module installs the masked
LangSmith client (graph/infra/tracing.py) when `LANGSMITH_TRACING` is on, and switches
tracing off when it is not, before `langgraph dev` runs anything.
"""

from __future__ import annotations

import asyncio
import contextlib

from graph.composition.builder import ConversationGraph
from graph.composition.conversation_graphs import open_conversation_graphs
from graph.composition.memory import migrate_memory_embeddings
from graph.infra.database import apply_migrations, open_pool, resolve_database_url
from graph.infra.tracing import configure_tracing
from graph.settings import Settings, get_settings


class StudioGraph:
    """The compiled graph and what it runs on, opened on first use and kept for the
    life of the `langgraph dev` process."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._compiled: ConversationGraph | None = None
        self._opening = asyncio.Lock()
        self._resources = contextlib.AsyncExitStack()

    async def get(self) -> ConversationGraph:
        async with self._opening:
            if self._compiled is None:
                self._compiled = await self._open()
        return self._compiled

    async def _open(self) -> ConversationGraph:
        settings = self.settings
        database_url = await asyncio.to_thread(resolve_database_url, settings)
        if settings.migrate_on_start:
            await apply_migrations(database_url)
            await migrate_memory_embeddings(database_url, settings)
        pool = await self._resources.enter_async_context(open_pool(database_url, settings))
        graphs = await self._resources.enter_async_context(
            open_conversation_graphs(settings, database_url, pool, tool_limiter=None)
        )
        return graphs.compile(None)

    async def aclose(self) -> None:
        """Close what the first call opened (the pool, the tool registry's clients)."""
        await self._resources.aclose()
        self._compiled = None


_settings = get_settings()
tracing_client = configure_tracing(_settings)
studio_graph = StudioGraph(_settings)


async def graph() -> ConversationGraph:
    """The graph factory `langgraph.json` points at."""
    return await studio_graph.get()
