"""Prometheus figures of conversation memory (served by the app's `/metrics`): how
long recall takes and how often it fails, how often history is folded, and what the
remember job writes. Recall failures are silent to the customer, so they are counted."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

RECALL_SECONDS = Histogram(
    "wa_agent_memory_recall_seconds",
    "Time to recall a customer's memories at the start of a turn",
    buckets=(0.002, 0.005, 0.01, 0.015, 0.02, 0.03, 0.05, 0.1, 0.25, 0.5, 1, 2),
)
RECALLS = Counter(
    "wa_agent_memory_recalls_total", "Recalls by outcome (recalled, none, failed)", ["outcome"]
)
SUMMARIES = Counter(
    "wa_agent_memory_summaries_total", "History folds into the summary by outcome", ["outcome"]
)
MEMORIES_WRITTEN = Counter(
    "wa_agent_memories_written_total", "Memories written by the remember job", ["outcome"]
)
