"""The job queue in `/metrics`: depth, oldest waiting job, and the wait turns had —
read from the database, at most once every few seconds.

Model tokens, cost, agent latency and tool calls are counted where they happen
(graph/infra/usage_meter.py); the queue is shared by every worker, so its figures come from
the database instead, bounded by a statement timeout so a slow database makes the
scrape lose these figures, never hang. `/metrics` is open to anyone who can reach it:
reading three queries per request let a flood of anonymous scrapes take the whole
connection pool from the webhook. So the figures are kept for `max_age` seconds
(`WA_AGENT_METRICS_CACHE_S`), one refresh runs at a time, and scrapes arriving during a
refresh are answered with the figures already held instead of queueing behind it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import structlog
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import REGISTRY, Collector

from graph.infra.database import Pool

log = structlog.get_logger(__name__)

_DEPTH = """
SELECT task_name, status::text AS status, count(*) AS n
FROM procrastinate_jobs WHERE status IN ('todo', 'doing')
GROUP BY 1, 2
"""

# A job waits from its deferral (or its schedule, when later) until a worker takes it.
_OLDEST = """
SELECT coalesce(EXTRACT(EPOCH FROM now() - min(greatest(e.at, coalesce(j.scheduled_at, e.at)))),
                0)::float8 AS seconds
FROM procrastinate_jobs j JOIN procrastinate_events e ON e.job_id = j.id AND e.type = 'deferred'
WHERE j.status = 'todo' AND (j.scheduled_at IS NULL OR j.scheduled_at <= now())
"""


# Job latency as the customer feels it: from the first message a turn answers arriving
# to the turn starting (queue wait, plus the deliberate WA_AGENT_COALESCE_MS pause).
WAIT_WINDOW_S = 300
_WAIT = f"""
SELECT count(*) AS turns,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY wait)::float8 AS p50,
       percentile_cont(0.95) WITHIN GROUP (ORDER BY wait)::float8 AS p95
FROM (
    SELECT EXTRACT(EPOCH FROM r.started_at - min(m.received_at)) AS wait
    FROM conversation_runs r JOIN inbound_messages m ON m.run_id = r.id
    WHERE r.started_at > now() - interval '{WAIT_WINDOW_S} seconds'
    GROUP BY r.id
) AS waits
"""


class QueueCollector(Collector):
    def __init__(self) -> None:
        self.depth: dict[tuple[str, str], int] = {}
        self.oldest_seconds: float | None = None
        self.wait: dict[str, float] = {}
        self.refreshed_at: float | None = None
        self.refreshes = 0
        self._source: int | None = None  # the pool read last (tests run several apps)
        self._refreshing = asyncio.Lock()

    async def refresh_if_stale(self, pool: Pool, max_age: float) -> None:
        """Refresh when the figures are older than `max_age`; a scrape that finds a
        refresh under way keeps the figures held (the first scrape ever waits for it)."""
        held = self.refreshed_at is not None and self._source == id(pool)
        if self._fresh(pool, max_age) or (self._refreshing.locked() and held):
            return
        async with self._refreshing:
            if not self._fresh(pool, max_age):
                await self.refresh(pool)

    def _fresh(self, pool: Pool, max_age: float) -> bool:
        if self.refreshed_at is None or self._source != id(pool):
            return False
        return time.monotonic() - self.refreshed_at < max_age

    async def refresh(self, pool: Pool) -> None:
        self.refreshes += 1
        try:
            await self._read(pool)
        finally:  # a failed read is not retried at once either
            self.refreshed_at, self._source = time.monotonic(), id(pool)

    async def _read(self, pool: Pool) -> None:
        try:
            async with pool.connection() as conn, conn.transaction():
                await conn.execute("SET LOCAL statement_timeout = '2s'")
                cur = await conn.execute(_DEPTH)
                depth = {(r["task_name"], r["status"]): int(r["n"]) for r in await cur.fetchall()}
                cur = await conn.execute(_OLDEST)
                row = await cur.fetchone()
                cur = await conn.execute(_WAIT)
                waits = await cur.fetchone()
        except Exception as exc:
            log.warning("metrics.queue_unavailable", error=str(exc)[:200])
            self.depth, self.oldest_seconds, self.wait = {}, None, {}
            return
        self.depth = depth
        self.oldest_seconds = float(row["seconds"]) if row else 0.0
        if waits is not None and waits["turns"]:
            self.wait = {"0.5": waits["p50"], "0.95": waits["p95"]}
        else:
            self.wait = {}

    def collect(self) -> Iterator[Metric]:
        jobs = GaugeMetricFamily(
            "wa_agent_queue_jobs",
            "Jobs waiting (todo) or running (doing)",
            labels=["task", "status"],
        )
        for (task, status), count in sorted(self.depth.items()):
            jobs.add_metric([task, status], count)
        yield jobs
        if self.oldest_seconds is not None:
            oldest = GaugeMetricFamily(
                "wa_agent_queue_oldest_waiting_seconds", "Age of the oldest job ready to run"
            )
            oldest.add_metric([], self.oldest_seconds)
            yield oldest
        wait = GaugeMetricFamily(
            "wa_agent_turn_wait_seconds",
            f"From a turn's first message arriving to the turn starting, last {WAIT_WINDOW_S} s",
            labels=["quantile"],
        )
        for quantile, seconds in self.wait.items():
            wait.add_metric([quantile], seconds)
        yield wait


QUEUE_COLLECTOR = QueueCollector()
REGISTRY.register(QUEUE_COLLECTOR)
