"""A turn reads its thread's latest checkpoint once, not twice.

A turn first reads the conversation's state (`aget_state`: is a question waiting for a
tap, is a person in charge, is this a retried run?), then runs the graph, whose first
step reads the very same checkpoint again: one more query and one more decoding of the
whole history, per turn, growing with the conversation. Inside `sharing_checkpoint_reads()`
the first read of a thread's latest checkpoint is kept and handed to the next read of it,
once; any write to the saver forgets what was kept, so a read after a write always goes
to the database. Reads of a given checkpoint id (replays, forks) are never shared.

One turn of a conversation runs at a time (the conversation's lock), so nothing else
writes its thread between the two reads.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, ParamSpec, TypeVar

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
)
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver

_Key = tuple[str, str]  # (thread_id, checkpoint_ns)

# The turn's kept reads; a dict shared with the tasks the graph starts (they copy the
# context, not the dict), so a write in any of them forgets for the whole turn.
_KEPT: ContextVar[dict[_Key, CheckpointTuple | None] | None] = ContextVar(
    "wa_agent_kept_checkpoint_reads", default=None
)


P = ParamSpec("P")
R = TypeVar("R")


@contextmanager
def sharing_checkpoint_reads() -> Iterator[None]:
    token = _KEPT.set({})
    try:
        yield
    finally:
        _KEPT.reset(token)


def one_read_per_checkpoint(turn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
    """`turn`, its repeated reads of a thread's latest checkpoint shared."""

    @functools.wraps(turn)
    async def sharing(*args: P.args, **kwargs: P.kwargs) -> R:
        with sharing_checkpoint_reads():
            return await turn(*args, **kwargs)

    return sharing


def _latest_of(config: RunnableConfig) -> _Key | None:
    """The thread a read of its latest checkpoint is for; None for a given checkpoint."""
    configurable = config.get("configurable") or {}
    if configurable.get("checkpoint_id") or "thread_id" not in configurable:
        return None
    return str(configurable["thread_id"]), str(configurable.get("checkpoint_ns", ""))


class ReadSharingSaver(AsyncPostgresSaver):
    """The Postgres saver, sharing one turn's repeated read (see the module's doc)."""

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        kept, key = _KEPT.get(), _latest_of(config)
        if kept is None or key is None:
            return await super().aget_tuple(config)
        if key in kept:
            return kept.pop(key)
        found = await super().aget_tuple(config)
        kept[key] = found  # None too: a new conversation's thread is read twice as well
        return found

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        _forget()
        return await super().aput(config, checkpoint, metadata, new_versions)

    async def aput_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        _forget()
        await super().aput_writes(config, writes, task_id, task_path)

    async def adelete_thread(self, thread_id: str) -> None:
        _forget()
        await super().adelete_thread(thread_id)

    async def aprune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        _forget()
        await super().aprune(thread_ids, strategy=strategy)


def _forget() -> None:
    kept = _KEPT.get()
    if kept:
        kept.clear()
