"""The entry `langgraph.json` names: the service's graph, without a checkpointer of its
own (`langgraph dev` and LangGraph Platform bring theirs).

    .venv/bin/langgraph dev --no-browser        then open the Studio URL it prints

Same shape as production: the memory steps (`recall_memories → summarize`), the router,
the five specialists with their handoffs, and the business tools on the agents'
allow-lists. Importing this module touches no database: the tools get a pool that
opens on the first tool call (`DATABASE_URL`, else the embedded server under `.data/`,
as `make serve` does). Two things stay out, because they live in the service's
database: long-term memories (recall finds nothing) and the knowledge base.

Traces are masked as the service's are: importing this module installs the masked
LangSmith client (graph/infra/tracing.py) when `LANGSMITH_TRACING` is on, and switches
tracing off when it is not, before `langgraph dev` runs anything.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import psycopg
from langchain_core.language_models import BaseChatModel
from psycopg.rows import DictRow
from psycopg_pool import AsyncConnectionPool

from graph.composition.agent_configs import load_default_agents
from graph.composition.builder import build_graph
from graph.composition.memory import history_budget, memory_chat_model
from graph.composition.prompts import load_prompts
from graph.composition.routing import router_config
from graph.composition.toolbox import payment_provider_from_settings
from graph.infra.chat_models import ChatModels, build_chat_model
from graph.infra.database import connection_kwargs, resolve_database_url
from graph.infra.embeddings import build_embeddings
from graph.infra.tracing import configure_tracing
from graph.settings import Settings, get_settings
from nodes.memory import MemoryNodes
from nodes.memory.summarize import Summarizer
from nodes.routing import IntentRouter
from tools import make_business_tools


class OnFirstUsePool(AsyncConnectionPool[psycopg.AsyncConnection[DictRow]]):
    """A pool that finds its database and opens when a tool first needs it."""

    def __init__(self, settings: Settings) -> None:
        super().__init__("", open=False, min_size=1, max_size=4, kwargs=connection_kwargs(settings))
        self.settings = settings
        self._opening = asyncio.Lock()

    @contextlib.asynccontextmanager
    async def connection(
        self,
        timeout: float | None = None,  # noqa: ASYNC109 (psycopg's own signature)
    ) -> AsyncIterator[psycopg.AsyncConnection[DictRow]]:
        async with self._opening:
            if self.closed:
                self.conninfo = await asyncio.to_thread(resolve_database_url, self.settings)
                await self.open(wait=True)
        async with super().connection(timeout) as conn:
            yield conn


def _studio_memory(settings: Settings, model: BaseChatModel | None) -> MemoryNodes | None:
    """The short-term memory steps; long-term recall needs the service's vectors."""
    budget = history_budget(settings)
    if budget is None or model is None:
        return None
    writer = memory_chat_model(settings, model)
    return MemoryNodes(budget, Summarizer(writer, budget, business_name=settings.business_name))


_settings = get_settings()
tracing_client = configure_tracing(_settings)
_model = build_chat_model(_settings)
_router = (
    IntentRouter.create(
        build_embeddings(_settings),
        model=_model,
        config=router_config(_settings),
        vectors_cache=_settings.data_dir / "cache",
    )
    if _model is not None
    else None
)
_tools = make_business_tools(
    OnFirstUsePool(_settings),
    payment_provider=payment_provider_from_settings(_settings),
    knowledge=None,
    timezone=_settings.business_timezone,
)
graph = build_graph(
    _model,
    load_prompts(_settings.business_name),
    router=_router,
    agents=load_default_agents(_settings.business_name),
    tools=list(_tools.values()),
    chat_model_for=ChatModels(_settings, _model).for_agent if _model is not None else None,
    memory=_studio_memory(_settings, _model),
)
