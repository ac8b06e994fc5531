"""Graphs for concurrent runs: one checkpointer per worker slot.

`AsyncPostgresSaver` serialises every read and write of one instance behind an
asyncio lock, so a single saver shared by all slots turns concurrent conversations
into a queue (see docs/performance.md). Each slot therefore borrows a graph of its own,
with its own saver, over the one shared connection pool.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from langgraph.checkpoint.base import BaseCheckpointSaver

from graph.composition.builder import ConversationGraph
from graph.infra.database import Pool, create_checkpointer


class GraphPool:
    """At most `size` graphs: one compiled, the others its copies with a saver of their
    own (LangGraph's `Pregel.copy`, as `with_config` does: the nodes are shared, they
    hold no run's state), made when first needed. Compiling one per slot cost a tenth
    of a worker's CPU under a slow model's many turns in flight."""

    def __init__(
        self,
        pool: Pool,
        compile_graph: Callable[[BaseCheckpointSaver[str]], ConversationGraph],
        size: int,
    ) -> None:
        if size < 1:
            raise ValueError("a graph pool needs at least one graph")
        self._pool = pool
        self._compiled = compile_graph(create_checkpointer(pool))
        self._idle: asyncio.Queue[ConversationGraph] = asyncio.Queue()
        self._idle.put_nowait(self._compiled)
        self._made = 1
        self.size = size

    @asynccontextmanager
    async def borrow(self) -> AsyncIterator[ConversationGraph]:
        if self._idle.empty() and self._made < self.size:
            self._made += 1
            graph = self._compiled.copy({"checkpointer": create_checkpointer(self._pool)})
        else:
            graph = await self._idle.get()
        try:
            yield graph
        finally:
            self._idle.put_nowait(graph)
