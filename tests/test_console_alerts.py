"""Alerts: a threshold crossed is announced once while it holds, and once resolved when
it clears — to the log and to a local webhook receiver, retried past its failures."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from graph.infra.database import Pool, open_pool
from server.outcomes.alerts import ALERTS_TASK, AlertMonitor, AlertOptions, register_alert_task
from server.runner.queue import create_queue_app
from tests.fakes.alert_receiver import AlertReceiver
from tests.support import service_settings


@pytest.fixture
def receiver() -> Iterator[AlertReceiver]:
    with AlertReceiver() as server:
        yield server


@pytest.fixture
async def pool(db_url: str) -> AsyncIterator[Pool]:
    async with open_pool(db_url, service_settings(db_url)) as opened:
        yield opened


def alert_settings(db_url: str, **overrides: Any) -> Any:
    values: dict[str, Any] = {
        "alert_window_seconds": 300,
        "alert_error_rate": 0.2,
        "alert_latency_p95_ms": 5000,
        "alert_min_calls": 5,
        "alert_max_attempts": 3,
        "alert_timeout_seconds": 2,
    }
    return service_settings(db_url, **{**values, **overrides})


def alert_options(db_url: str, **overrides: Any) -> AlertOptions:
    """The options the service builds from those settings (environment names and all)."""
    return AlertOptions.from_settings(alert_settings(db_url, **overrides))


async def add_calls(
    pool: Pool, n: int, *, agent: str = "sales", success: bool = True, latency_ms: float = 800
) -> None:
    async with pool.connection() as conn:
        await conn.execute(
            "INSERT INTO agent_metrics (agent, node, model, latency_ms, success)"
            " SELECT %s, 'agent_' || %s, 'gpt-4o-mini', %s, %s FROM generate_series(1, %s)",
            (agent, agent, latency_ms, success, n),
        )


async def test_error_rate_alert_fires_once_and_resolves_once(
    db_url: str, pool: Pool, receiver: AlertReceiver
) -> None:
    monitor = AlertMonitor(
        pool, alert_options(db_url, alert_webhook_url=receiver.url, alert_webhook_secret="s3")
    )
    await add_calls(pool, 6)
    await add_calls(pool, 4, success=False)  # 40 % of 10 calls failed
    receiver.fail_next(1)  # the receiver is briefly down: the POST is retried
    fired = await monitor.evaluate()
    assert [(a.state, a.key) for a in fired] == [("firing", "error_rate")]
    assert receiver.attempts == 2
    assert [(r["state"], r["key"]) for r in receiver.received] == [("firing", "error_rate")]
    assert receiver.received[0]["value"] == pytest.approx(0.4)
    assert receiver.headers[0]["Authorization"] == "Bearer s3"

    await add_calls(pool, 2, success=False)  # still failing: nothing new is sent
    assert await monitor.evaluate() == []
    assert len(receiver.received) == 1

    await add_calls(pool, 40)  # 6 failures in 52 calls: under 20 %
    resolved = await monitor.evaluate()
    assert [(a.state, a.key) for a in resolved] == [("resolved", "error_rate")]
    assert await monitor.evaluate() == []
    assert [(r["state"], r["key"]) for r in receiver.received] == [
        ("firing", "error_rate"),
        ("resolved", "error_rate"),
    ]
    rows = await monitor.active()
    assert [(r["key"], r["active"]) for r in rows] == [("error_rate", False)]


async def test_latency_alert_names_the_slow_agent_and_too_few_calls_decide_nothing(
    db_url: str, pool: Pool, receiver: AlertReceiver
) -> None:
    monitor = AlertMonitor(pool, alert_options(db_url, alert_webhook_url=receiver.url))
    await add_calls(pool, 4, agent="booking", latency_ms=9000)  # slow, but only 4 calls
    await add_calls(pool, 20, agent="sales", latency_ms=300)
    assert await monitor.evaluate() == []
    await add_calls(pool, 4, agent="booking", latency_ms=9000)
    fired = await monitor.evaluate()
    assert [(a.state, a.key) for a in fired] == [("firing", "latency_p95:booking")]
    assert "booking" in receiver.received[0]["summary"]


async def test_a_receiver_that_stays_down_costs_the_announcement_not_the_job(
    db_url: str, pool: Pool, receiver: AlertReceiver
) -> None:
    monitor = AlertMonitor(pool, alert_options(db_url, alert_webhook_url=receiver.url))
    await add_calls(pool, 10, success=False)
    receiver.fail_next(10)
    fired = await monitor.evaluate()  # does not raise
    assert [a.key for a in fired] == ["error_rate"]
    assert receiver.attempts == 3  # WA_AGENT_ALERT_MAX_ATTEMPTS, then given up
    assert receiver.received == []
    assert await monitor.evaluate() == []  # still firing: not announced again


async def test_the_evaluation_is_a_periodic_queue_task(db_url: str, pool: Pool) -> None:
    settings = alert_settings(db_url, alert_cron="*/2 * * * *")
    queue = create_queue_app(db_url, settings)
    register_alert_task(queue, AlertMonitor(pool, AlertOptions.from_settings(settings)))
    periodic = [
        task
        for task in queue.periodic_registry.periodic_tasks.values()
        if task.task.name == ALERTS_TASK
    ]
    assert [task.cron for task in periodic] == ["*/2 * * * *"]
