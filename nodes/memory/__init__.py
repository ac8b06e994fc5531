"""Conversation memory: the nodes that give an agent its past.

- short-term (`history`, `summarize`): the messages the model reads stay under a token
  budget; older ones are folded into a running summary kept in the state.
- long-term (`store`, `recall`, `remember`): durable facts about a customer, kept in
  pgvector across all their conversations, recalled into the system prompt at the
  start of each turn and extracted by a queued job after each answered turn.

`MemoryNodes` is what `graph.composition.builder.build_graph` needs;
graph/composition/memory.py builds it from the settings. `add_memory_nodes` adds recall
and summarize, which the graph runs beside the router: neither changes who answers, and
the agent, one step later, reads what all three wrote.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from nodes.memory.history import HistoryBudget
from nodes.memory.recall import make_recall_node
from nodes.memory.store import LongTermMemory
from nodes.memory.summarize import Summarizer, make_summarize_node

RECALL_NODE = "recall_memories"
SUMMARIZE_NODE = "summarize"


@dataclass(frozen=True)
class MemoryNodes:
    budget: HistoryBudget | None  # None: the model reads the whole thread
    summarizer: Summarizer | None = None  # None: messages are trimmed, never folded
    long_term: LongTermMemory | None = None  # None: no recall (no pgvector, or off)
    recall_timeout_seconds: float = 2.0


def add_memory_nodes(builder: Any, memory: MemoryNodes) -> list[str]:
    """Add recall (and summarize, with a summarizer) to a StateGraph, without edges: the
    caller starts them in the same step as the node they run beside. Returns their names."""
    builder.add_node(
        RECALL_NODE,
        make_recall_node(memory.long_term, timeout_seconds=memory.recall_timeout_seconds),
    )
    if memory.summarizer is None:
        return [RECALL_NODE]
    builder.add_node(SUMMARIZE_NODE, make_summarize_node(memory.summarizer))
    return [RECALL_NODE, SUMMARIZE_NODE]


__all__ = ["HistoryBudget", "MemoryNodes", "add_memory_nodes"]
