"""What an operator sees of tool calls: Prometheus figures and `agent_tool_executions`.

Rows are written off the hot path: a call puts its record on a bounded queue and goes
on; one background task writes whatever has gathered in one INSERT. A failed write is
logged and dropped, never raised: monitoring must not fail the call it watches. When
the queue is full (the database is far behind), new records are dropped and counted.

Arguments and error texts are stored masked, by the recorder's writer so that no caller
can forget it and no tool call waits for it: an error text repeats whatever the call was
given (LangGraph's own says "with kwargs {...}"). tools/ does not import graph/ (where
the masking lives), so the masking function is handed in by whoever builds the recorder.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import structlog
from prometheus_client import Counter, Histogram
from psycopg.types.json import Jsonb

from tools.common import Pool

log = structlog.get_logger(__name__)

TOOL_CALLS = Counter(
    "wa_agent_tool_calls_total",
    "Tool calls by tool and outcome (ok, error, timeout, rate_limited, refused, interrupted)",
    ["tool", "outcome"],
)
TOOL_SECONDS = Histogram(
    "wa_agent_tool_seconds",
    "Duration of tool calls, through the registry's wrapper",
    ["tool"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
TOOL_RECORDS_DROPPED = Counter(
    "wa_agent_tool_records_dropped_total",
    "Tool execution rows not written (queue full or database error)",
)

Masker = Callable[[Any], Any]

ERROR_CHARS = 500  # what an operator reads of an error; the rest is the model's business

_INSERT = (
    "INSERT INTO agent_tool_executions (conversation_id, run_id, agent, tool, arguments,"
    " result_size, success, duration_ms, error) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)"
)


@dataclass(frozen=True)
class ToolExecution:
    """One finished call, as the call saw it: the recorder masks the arguments and the
    error before the row is written."""

    tool: str
    arguments: Any
    success: bool
    duration_ms: float
    result_size: int | None = None
    error: str | None = None
    conversation_id: str | None = None
    run_id: str | None = None
    agent: str | None = None

    def row(self) -> tuple[Any, ...]:
        return (
            _uuid_or_none(self.conversation_id),
            _uuid_or_none(self.run_id),
            self.agent,
            self.tool,
            Jsonb(self.arguments),
            self.result_size,
            self.success,
            self.duration_ms,
            self.error[:ERROR_CHARS] if self.error else None,
        )


def _uuid_or_none(value: str | None) -> str | None:
    """The columns are uuid; a terminal chat's thread id ("alice") is kept out, not fatal."""
    if not value:
        return None
    try:
        return str(uuid.UUID(value))
    except ValueError:
        return None


class ExecutionRecorder:
    """Batches `ToolExecution`s into `agent_tool_executions` from a background task."""

    def __init__(
        self,
        pool: Pool,
        mask: Masker,
        *,
        max_pending: int = 10_000,
        batch_size: int = 200,
        flush_seconds: float = 0.5,
    ) -> None:
        self.pool = pool
        self.mask = mask
        self.batch_size = batch_size
        self.flush_seconds = flush_seconds
        self._queue: asyncio.Queue[ToolExecution] = asyncio.Queue(maxsize=max_pending)
        self._arrived = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="tool-executions-writer")

    def record(self, execution: ToolExecution) -> None:
        """Never blocks, never raises. The record is masked by the writer, off the tool
        call's path; it waits in this process's memory only."""
        try:
            self._queue.put_nowait(execution)
            self._arrived.set()
        except asyncio.QueueFull:
            TOOL_RECORDS_DROPPED.inc()

    def _masked_row(self, execution: ToolExecution) -> tuple[Any, ...] | None:
        """The row as stored, masked whole and then cut (a cut first could leave half a
        card number, which no rule recognises any more); None when masking fails: such
        a record is dropped and counted, never stored raw."""
        try:
            error = execution.error
            if error:
                error = str(self.mask(error))[:ERROR_CHARS]
            masked = replace(execution, arguments=self.mask(execution.arguments), error=error)
        except Exception as exc:
            TOOL_RECORDS_DROPPED.inc()
            log.warning(
                "tool.record_unmaskable", tool=execution.tool, error_type=type(exc).__name__
            )
            return None
        return masked.row()

    async def flush(self) -> int:
        """Write everything queued now; the number of rows written."""
        written = 0
        while batch := self._take(self.batch_size):
            written += await self._write(batch)
        return written

    def _take(self, count: int) -> list[ToolExecution]:
        batch: list[ToolExecution] = []
        while len(batch) < count and not self._queue.empty():
            batch.append(self._queue.get_nowait())
        return batch

    async def _write(self, batch: list[ToolExecution]) -> int:
        rows = [row for execution in batch if (row := self._masked_row(execution))]
        if not rows:
            return 0
        try:
            async with self.pool.connection() as conn, conn.cursor() as cur:
                await cur.executemany(_INSERT, rows)
        except Exception as exc:
            TOOL_RECORDS_DROPPED.inc(len(rows))
            log.warning("tool.record_failed", rows=len(rows), error_type=type(exc).__name__)
            return 0
        return len(rows)

    async def aclose(self) -> None:
        """Stop the writer and write what is left (best effort)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.flush()

    async def _run(self) -> None:
        """Wait for a first record, give others `flush_seconds` to join it, write."""
        while True:
            await self._arrived.wait()
            await asyncio.sleep(self.flush_seconds)
            self._arrived.clear()
            await self.flush()
