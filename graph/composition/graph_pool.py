"""Compiled graphs for concurrent runs: one checkpointer per worker slot.

`AsyncPostgresSaver` serialises every read and write of one instance behind an
asyncio lock, so a single saver shared by all slots turns concurrent conversations
into a queue (see BENCHMARKS.md). Each slot therefore borrows its own compiled graph,
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
    def __init__(
        self,
        pool: Pool,
        compile_graph: Callable[[BaseCheckpointSaver[str]], ConversationGraph],
        size: int,
    ) -> None:
        if size < 1:
            raise ValueError("a graph pool needs at least one graph")
        self._idle: asyncio.Queue[ConversationGraph] = asyncio.Queue()
        for _ in range(size):
            self._idle.put_nowait(compile_graph(create_checkpointer(pool)))
        self.size = size

    @asynccontextmanager
    async def borrow(self) -> AsyncIterator[ConversationGraph]:
        graph = await self._idle.get()
        try:
            yield graph
        finally:
            self._idle.put_nowait(graph)
