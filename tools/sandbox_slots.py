"""How many code_interpreter runs one service process lets the machine carry at once.

Each run is bounded on its own (tools/sandbox_cgroup.py); this bounds their number, so
that a burst of tool calls — many customers, or one model calling the tool in a loop —
cannot multiply those bounds by the number of conversations in flight. A run that finds
every slot taken waits for one, for at most the given time.

A counter under a thread lock, polled while waiting, rather than an asyncio.Semaphore:
the limit is the process's, and a semaphore belongs to one event loop while the
service, its tests and `langgraph dev` may build the tool under several.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

POLL_SECONDS = 0.05


class SandboxBusy(RuntimeError):
    """Every slot stayed taken for the whole wait."""


class RunSlots:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running = 0

    @property
    def running(self) -> int:
        return self._running

    def _take(self, size: int) -> bool:
        with self._lock:
            if self._running >= size:
                return False
            self._running += 1
            return True

    @asynccontextmanager
    async def hold(self, size: int, *, wait_seconds: float) -> AsyncIterator[None]:
        """A slot of at most `size` for the duration of the block."""
        deadline = time.monotonic() + wait_seconds
        while not self._take(size):
            if time.monotonic() >= deadline:
                raise SandboxBusy(f"{size} programs are already running")
            await asyncio.sleep(POLL_SECONDS)
        try:
            yield
        finally:
            with self._lock:
                self._running -= 1


run_slots = RunSlots()
