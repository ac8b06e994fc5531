"""The conversation graph as production builds it, for every process that runs turns:
the service's workers, `wa-agent chat`, replays, and LangGraph Studio (studio.py).

One factory, so what a developer steps through in Studio is what customers talk to:
the router, the specialists with their allow-listed tools behind the registry's
wrapper (limits, timeout, records), the answer cache and long-term memory.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

from langchain_core.embeddings import Embeddings
from langgraph.checkpoint.base import BaseCheckpointSaver

from graph.composition.agent_configs import (
    AgentDirectory,
    load_default_agents,
    seed_agent_configurations,
)
from graph.composition.answer_cache import open_answer_cache
from graph.composition.builder import ConversationGraph, build_graph
from graph.composition.graph_pool import GraphPool
from graph.composition.memory import ConversationMemory, open_memory
from graph.composition.prompts import load_prompts
from graph.composition.routing import build_router, menu_reader_over
from graph.composition.tool_platform import open_tool_registry
from graph.infra.chat_models import ChatModels, build_chat_model
from graph.infra.database import Pool
from graph.infra.embeddings import LocalMiniLMEmbeddings, build_embeddings
from graph.settings import Settings
from nodes.notices import Notices, RecognisesLanguage
from tools.limits import RateLimiter
from tools.listings import Listings

CompileGraph = Callable[[BaseCheckpointSaver[str] | None], ConversationGraph]


@dataclass(frozen=True)
class ConversationGraphs:
    """What the graph is built from, open for as long as the graph runs.

    `compile(saver)` gives one compiled graph; `None` leaves the checkpointer to the
    host (LangGraph Studio brings its own)."""

    compile: CompileGraph
    agents: AgentDirectory
    tool_names: frozenset[str]
    memory: ConversationMemory
    # The language a text is written in (None: it does not tell), by the menu's reader.
    language_of: RecognisesLanguage
    # What the service itself tells customers, per language (prompts/notices/).
    notices: Notices
    # The router's and memory's embeddings.
    embeddings: Embeddings

    async def warm_up(self) -> None:
        """Load the local embedding model now, in a process about to run turns: the
        router's example vectors come from a cache, so building the graph did not load
        it, and a worker's first customer would wait about half a second for it."""
        if isinstance(self.embeddings, LocalMiniLMEmbeddings):
            await asyncio.to_thread(self.embeddings.warm_up)

    def pooled(self, pool: Pool, size: int) -> GraphPool:
        """One compiled copy per worker slot, each with its own checkpointer."""
        return GraphPool(pool, self.compile, size=size)


@asynccontextmanager
async def open_conversation_graphs(
    settings: Settings, database_url: str, pool: Pool, *, tool_limiter: RateLimiter | None
) -> AsyncIterator[ConversationGraphs]:
    """The graph's agents, router, tools, answer cache and memory, opened over `pool`.
    `tool_limiter`: the tools' rate limits shared by every process (Redis); None counts
    them in this process.

    Without a model the graph has no agents (the rule-based menu answers), so neither
    the LLM router, the answer cache nor the agents' tools are used.
    """
    model = build_chat_model(settings)
    prompts = load_prompts(settings.business_name)
    defaults = load_default_agents(settings.business_name)
    await seed_agent_configurations(pool, defaults)
    async with (
        open_tool_registry(pool, database_url, settings, model, limiter=tool_limiter) as registry,
        open_memory(pool, database_url, settings, model) as memory,
    ):
        # Built without a model too: the rule-based menu reads typed requests with it.
        embeddings = build_embeddings(settings)
        router = await build_router(settings, embeddings, model)
        menu_reader = menu_reader_over(router)
        chat_models = ChatModels(settings, model) if model is not None else None
        answer_cache = await open_answer_cache(pool, settings) if model is not None else None

        def compile_graph(saver: BaseCheckpointSaver[str] | None) -> ConversationGraph:
            return build_graph(
                model,
                prompts,
                router=router if model is not None else None,
                menu_reader=menu_reader,
                agents=defaults,
                tools=list(registry.tools.values()),
                chat_model_for=chat_models.for_agent if chat_models else None,
                checkpointer=saver,
                memory=memory.nodes,
                listings=Listings(pool, settings.business_timezone),
                tool_wrapper=registry.wrap_tool_call,
                answer_cache=answer_cache,
            )

        agents = AgentDirectory(pool, defaults)
        yield ConversationGraphs(
            compile_graph,
            agents,
            frozenset(registry.tools),
            memory,
            menu_reader.language_of,
            prompts.notices,
            embeddings,
        )
