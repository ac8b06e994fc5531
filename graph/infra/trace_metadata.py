"""What every LangSmith run of a conversation turn carries, so traces group by
conversation and filter by agent, intent, release and kind of run.

A turn is one trace: a root run `whatsapp_turn` (or `replay_turn`, `stream_turn`) whose
metadata holds `thread_id` (the conversation, which LangSmith groups threads by),
`conversation_id`, `run_id`, `app_version`, `channel`, `replay`, and — once the graph
has decided them — `agent` and `intent`. The graph's own runs sit below it and inherit
the same metadata through the run config; the specialist's model call adds its agent
and intent (nodes/specialists.py). Masking happens in the client's anonymizer
(graph/infra/tracing.py), before anything is queued for upload.

Nothing here costs anything when tracing is off: no run tree is built and no state read.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.metadata
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

from langchain_core.runnables import RunnableConfig
from langsmith import run_helpers, utils
from langsmith.run_trees import RunTree

from graph.state import Reply


def app_version(configured: str | None = None) -> str:
    """The configured release name, else the installed package's version."""
    return configured or _installed_version()


@functools.cache
def _installed_version() -> str:
    """Read once per process: the metadata lookup walks sys.path (4 % of a turn's CPU)."""
    try:
        return importlib.metadata.version("wa-agent")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def with_trace_metadata(
    config: RunnableConfig,
    *,
    version: str,
    channel: str = "whatsapp",
    replay: bool = False,
    tags: Sequence[str] = (),
) -> RunnableConfig:
    """The run config with the metadata and tags every run below it inherits."""
    configurable = dict(config.get("configurable") or {})
    thread_id = str(configurable.get("thread_id", ""))
    metadata = {
        **(config.get("metadata") or {}),
        "thread_id": thread_id,
        "conversation_id": thread_id,
        "app_version": version,
        "channel": channel,
        "replay": replay,
    }
    all_tags = [*(config.get("tags") or []), channel, *tags]
    if replay:
        all_tags.append("replay")
    return {**config, "metadata": metadata, "tags": list(dict.fromkeys(all_tags))}


def turn_labels(values: Mapping[str, Any]) -> dict[str, str]:
    """The agent in charge and the routed intent, from the state after a turn."""
    route = values.get("route") or {}
    labels = {"agent": values.get("active_agent"), "intent": route.get("intent")}
    return {key: str(value) for key, value in labels.items() if value}


class TurnTrace:
    """The root run of one turn, or nothing when tracing is off."""

    def __init__(self, run: RunTree | None) -> None:
        self.run = run

    def record(self, state: Mapping[str, Any], replies: Sequence[Reply]) -> None:
        """Add the agent and intent the turn ended with (`state`: the thread's values
        after it), and its replies as output."""
        if self.run is None:
            return
        labels = turn_labels(state)
        self.run.metadata.update(labels)
        self.run.add_tags([f"{key}:{value}" for key, value in labels.items()])
        self.run.add_outputs({"replies": list(replies)})


@contextlib.asynccontextmanager
async def traced_turn(
    config: RunnableConfig, inputs: Mapping[str, Any], *, name: str = "whatsapp_turn"
) -> AsyncIterator[TurnTrace]:
    """A root run around a whole turn (all its graph invocations: a resumed
    confirmation and the answer after it are one trace)."""
    if not utils.tracing_is_enabled():
        yield TurnTrace(None)
        return
    metadata = dict(config.get("metadata") or {})
    tags = list(config.get("tags") or [])
    async with run_helpers.trace(
        name, "chain", inputs=dict(inputs), metadata=metadata, tags=tags
    ) as run:
        yield TurnTrace(run)
