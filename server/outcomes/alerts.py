"""Alerts: error rate and latency over a sliding window, announced once per episode.

A periodic job (procrastinate, `WA_AGENT_ALERT_CRON`, deferred once per tick whatever
the number of workers) measures the last `WA_AGENT_ALERT_WINDOW_S` of model calls:
the error rate over all agents, and each agent's p95 latency. A condition that starts
holding is announced once ("firing"); while it holds nothing more is sent; when it
clears, one "resolved". `console_alerts` remembers what is firing, so a restart or a
second worker does not announce it again.

An announcement is a structured log line and, with `ALERT_WEBHOOK_URL`, a JSON POST
there (timeout, bounded retries with exponential backoff). A receiver that stays down
costs that announcement (logged as `alert.notify_failed`), never the job.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import httpx
import procrastinate
import structlog
from pydantic import SecretStr
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_exponential

from graph.infra.database import Pool
from graph.settings import Settings

log = structlog.get_logger(__name__)

ALERTS_TASK = "console_alerts"

_WINDOW_FIGURES = """
SELECT agent, count(*) AS calls, count(*) FILTER (WHERE NOT success) AS errors,
       (percentile_cont(0.95) WITHIN GROUP (ORDER BY latency_ms))::float8 AS latency_p95_ms
FROM agent_metrics
WHERE created_at >= now() - make_interval(secs => %s)
GROUP BY agent
"""


@dataclass(frozen=True)
class AlertOptions:
    """What the alerts need of the settings: thresholds, window, schedule, receiver."""

    window_seconds: float
    error_rate: float
    min_calls: int
    latency_p95_ms: float
    cron: str
    webhook_url: str | None = None
    webhook_secret: SecretStr | None = None
    max_attempts: int = 3
    timeout_seconds: float = 5.0

    @classmethod
    def from_settings(cls, settings: Settings) -> AlertOptions:
        return cls(
            window_seconds=settings.alert_window_seconds,
            error_rate=settings.alert_error_rate,
            min_calls=settings.alert_min_calls,
            latency_p95_ms=settings.alert_latency_p95_ms,
            cron=settings.alert_cron,
            webhook_url=settings.alert_webhook_url,
            webhook_secret=settings.alert_webhook_secret,
            max_attempts=settings.alert_max_attempts,
            timeout_seconds=settings.alert_timeout_seconds,
        )


@dataclass(frozen=True)
class Condition:
    """A threshold crossed right now."""

    key: str
    summary: str
    value: float
    threshold: float


@dataclass(frozen=True)
class Announcement:
    state: Literal["firing", "resolved"]
    key: str
    summary: str
    value: float | None
    threshold: float | None
    at: datetime

    def as_json(self) -> dict[str, Any]:
        return {**asdict(self), "at": self.at.isoformat(), "service": "wa-agent"}


def conditions(rows: Sequence[dict[str, Any]], options: AlertOptions) -> list[Condition]:
    """Which thresholds the window's figures cross (too few calls decide nothing)."""
    found: list[Condition] = []
    calls = sum(int(r["calls"]) for r in rows)
    errors = sum(int(r["errors"]) for r in rows)
    limit = options.error_rate
    if calls >= options.min_calls and errors / calls >= limit:
        rate = errors / calls
        summary = f"model error rate {rate:.0%} over {calls} calls (threshold {limit:.0%})"
        found.append(Condition("error_rate", summary, rate, limit))
    for row in rows:
        p95 = row["latency_p95_ms"]
        if int(row["calls"]) < options.min_calls or p95 is None:
            continue
        if p95 >= options.latency_p95_ms:
            agent = row["agent"] or "none"
            summary = f"p95 latency of {agent} is {p95:.0f} ms"
            summary += f" (threshold {options.latency_p95_ms:.0f} ms)"
            found.append(Condition(f"latency_p95:{agent}", summary, p95, options.latency_p95_ms))
    return found


class AlertMonitor:
    def __init__(self, pool: Pool, options: AlertOptions) -> None:
        self.pool = pool
        self.options = options

    async def evaluate(self) -> list[Announcement]:
        """Measure, record what changed, announce it; the announcements made."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(_WINDOW_FIGURES, (self.options.window_seconds,))
            rows = [dict(r) for r in await cur.fetchall()]
        changes = await self._record(conditions(rows, self.options))
        for announcement in changes:
            await self._announce(announcement)
        return changes

    async def _record(self, holding: list[Condition]) -> list[Announcement]:
        """Under a row lock on every alert row: two evaluations never both announce."""
        now = datetime.now(UTC)
        changes: list[Announcement] = []
        async with self.pool.connection() as conn, conn.transaction():
            await conn.execute("LOCK TABLE console_alerts IN SHARE ROW EXCLUSIVE MODE")
            cur = await conn.execute("SELECT key FROM console_alerts WHERE active")
            active = {row["key"] for row in await cur.fetchall()}
            for condition in holding:
                await conn.execute(
                    "INSERT INTO console_alerts (key, active, value, threshold, fired_at)"
                    " VALUES (%s, true, %s, %s, %s) ON CONFLICT (key) DO UPDATE SET"
                    " active = true, value = EXCLUDED.value, threshold = EXCLUDED.threshold,"
                    " fired_at = CASE WHEN console_alerts.active THEN console_alerts.fired_at"
                    " ELSE EXCLUDED.fired_at END, updated_at = now()",
                    (condition.key, condition.value, condition.threshold, now),
                )
                if condition.key not in active:
                    changes.append(_announcement("firing", condition, now))
            cleared = active - {c.key for c in holding}
            for key in sorted(cleared):
                await conn.execute(
                    "UPDATE console_alerts SET active = false, resolved_at = %s, updated_at = now()"
                    " WHERE key = %s",
                    (now, key),
                )
                changes.append(
                    Announcement("resolved", key, f"{key} back to normal", None, None, now)
                )
        return changes

    async def _announce(self, announcement: Announcement) -> None:
        if announcement.state == "firing":
            log.error("alert.firing", **announcement.as_json())
        else:
            log.info("alert.resolved", **announcement.as_json())
        url = self.options.webhook_url
        if not url:
            return
        secret = self.options.webhook_secret
        try:
            await post_json(
                url,
                announcement.as_json(),
                bearer=secret.get_secret_value() if secret is not None else None,
                max_attempts=self.options.max_attempts,
                timeout_seconds=self.options.timeout_seconds,
            )
        except Exception as exc:
            log.error("alert.notify_failed", key=announcement.key, error=str(exc)[:200])

    async def active(self) -> list[dict[str, Any]]:
        return await alert_states(self.pool)


async def alert_states(pool: Pool) -> list[dict[str, Any]]:
    """Every alert condition, firing ones first, newest first: no options needed."""
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT key, active, value, threshold, fired_at, resolved_at FROM console_alerts"
            " ORDER BY active DESC, fired_at DESC"
        )
        return [dict(row) for row in await cur.fetchall()]


def _announcement(state: Literal["firing"], condition: Condition, at: datetime) -> Announcement:
    return Announcement(
        state, condition.key, condition.summary, condition.value, condition.threshold, at
    )


async def post_json(
    url: str,
    body: dict[str, Any],
    *,
    bearer: str | None = None,
    max_attempts: int = 3,
    timeout_seconds: float = 5.0,
) -> None:
    """POST to an operator's receiver (alerts, escalations): a timeout on each try and
    bounded retries with exponential backoff; raises when it never succeeded."""
    headers = {"Authorization": f"Bearer {bearer}"} if bearer else {}
    retrying = AsyncRetrying(
        stop=stop_after_attempt(max_attempts),
        wait=wait_exponential(multiplier=0.2, max=5),
        retry=retry_if_exception(_worth_retrying),
        reraise=True,
    )
    async with httpx.AsyncClient(timeout=timeout_seconds) as client:
        async for attempt in retrying:
            with attempt:
                answer = await client.post(url, json=body, headers=headers)
                answer.raise_for_status()


def _worth_retrying(exc: BaseException) -> bool:
    """Network trouble, 429 and 5xx; a 4xx is a configuration error, not worth repeating."""
    if isinstance(exc, httpx.HTTPStatusError):
        return exc.response.status_code == 429 or exc.response.status_code >= 500
    return isinstance(exc, httpx.TransportError)


def register_alert_task(queue: procrastinate.App, monitor: AlertMonitor) -> None:
    """Periodic; a missed tick is simply the next one's job (the window slides)."""

    @queue.periodic(cron=monitor.options.cron, periodic_id="alerts")
    @queue.task(name=ALERTS_TASK, queueing_lock=ALERTS_TASK)
    async def console_alerts(timestamp: int) -> None:
        await monitor.evaluate()
