"""Prometheus figures of the backbone; `/metrics` (server/http/prometheus.py) serves them.

Model tokens, cost, agent latency and tool calls are counted by the accounting
callback (graph/infra/usage_meter.py), the queue's depth by server/runner/queue_figures.py.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import REGISTRY, Collector

from graph.infra.database import Pool, PoolStats

WEBHOOK_REQUESTS = Counter(
    "wa_agent_webhook_requests_total", "Webhook POSTs by HTTP status", ["status"]
)
WEBHOOK_LATENCY = Histogram(
    "wa_agent_webhook_seconds",
    "Time to acknowledge a webhook POST",
    buckets=(0.002, 0.005, 0.01, 0.02, 0.03, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
RUNS = Counter("wa_agent_runs_total", "Conversation runs by outcome", ["outcome"])
RUN_SECONDS = Histogram(
    "wa_agent_run_seconds",
    "From claiming a conversation's messages to its replies handed to WhatsApp",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
OUTBOUND = Counter("wa_agent_outbound_total", "Outbound message parts by result", ["result"])
RUNS_POSTPONED = Counter(
    "wa_agent_runs_postponed_total",
    "Runs that could not go on and wait for their next attempt, by what failed",
    ["waiting_on"],
)
WORKER_RESTARTS = Counter(
    "wa_agent_worker_restarts_total", "Queue workers started again after they stopped"
)
JOBS_RECOVERED = Counter(
    "wa_agent_jobs_recovered_total",
    "Jobs left 'doing' by a dead worker (stalled) or by a lost end (orphaned)",
    ["reason"],
)
CONVERSATIONS_HEALED = Counter(
    "wa_agent_conversations_healed_total",
    "Conversations with unanswered messages and no job, found by the sweep (should stay 0)",
)


class PoolCollector(Collector):
    """Reads the pool's figures at scrape time rather than on every checkout."""

    def __init__(self) -> None:
        self.pool: Pool | None = None

    def collect(self) -> Iterator[Metric]:
        if self.pool is None:
            return
        stats = PoolStats.of(self.pool)
        for name, value in (
            ("size", stats.size),
            ("available", stats.available),
            ("waiting", stats.waiting),
        ):
            gauge = GaugeMetricFamily(f"wa_agent_db_pool_{name}", f"Connection pool {name}")
            gauge.add_metric([], value)
            yield gauge


POOL_COLLECTOR = PoolCollector()
REGISTRY.register(POOL_COLLECTOR)
