"""Abuse protection: who may be answered, how fast, and what is written down about it.

Pieces, in the order a message meets them:

- `ingress.IngressGuard` — in the webhook, a per-sender token bucket (no I/O) that
  acknowledges but does not store a flood beyond a human rate.
- `validation` — strict checks of the webhook body and of numbers typed by operators.
- `gate.AbuseGate` — in the worker, after the claim and before any model call: the
  blacklist, temporary blocks, sliding-window rate limits and the daily token budget,
  in one call to the limiter (`redis_store.RedisLimiter`, or `memory.MemoryLimiter`
  without `REDIS_URL`).
- `blacklist.Blacklist` — Postgres as the source of truth for the blacklist and the
  penalty ladder, mirrored into the limiter.
- `usage` — tokens per turn. (Strict checkpoint deserialisation is graph/infra/checkpoint_types.py.)

`open_abuse_protection` builds all of it for a process (see server/services.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass

import structlog

from graph.infra.database import Pool
from graph.settings import Settings
from server.abuse.blacklist import Blacklist, Limiter
from server.abuse.gate import AbuseGate
from server.abuse.ingress import IngressGuard
from server.abuse.memory_limiter import MemoryLimiter
from server.abuse.rate_policy import Clock, LimiterUnavailable, Policy, system_clock
from server.abuse.redis_store import RedisLimiter, connect_redis
from server.audit import AuditThrottle, record_audit, record_folded

log = structlog.get_logger(__name__)

__all__ = ["AbuseProtection", "build_limiter", "open_abuse_protection"]


def build_limiter(settings: Settings, clock: Clock = system_clock) -> Limiter:
    """Redis when `REDIS_URL` is set, else the in-process limiter (and the log says so)."""
    policy = Policy.from_settings(settings)
    if not settings.redis_url:
        log.warning(
            "abuse.limiter_in_process",
            reason="REDIS_URL is not set",
            behaviour="rate limits are counted in this process only: run one process, "
            "or set REDIS_URL before adding workers",
        )
        return MemoryLimiter(policy, clock)
    outage = (
        "fail open: each process counts limits on its own, the blacklist is read from Postgres"
        if settings.redis_fail_open
        else "fail closed: turns wait for Redis (the queue retries them)"
    )
    client = connect_redis(settings.redis_url, settings.redis_timeout_ms / 1000)
    log.info(
        "abuse.limiter_redis", fail_open=settings.redis_fail_open, prefix=settings.redis_prefix
    )
    return RedisLimiter(
        client,
        policy,
        prefix=settings.redis_prefix,
        clock=clock,
        retry_seconds=settings.redis_retry_seconds,
        outage_behaviour=outage,
    )


@dataclass
class AbuseProtection:
    pool: Pool
    limiter: Limiter
    blacklist: Blacklist
    gate: AbuseGate
    ingress: IngressGuard
    audit_throttle: AuditThrottle

    async def signature_failed(self, reason: str, remote_addr: str | None) -> None:
        """A webhook POST with a missing or wrong signature: audited once per address
        per interval (an attacker controls how often this happens)."""
        log.warning("webhook.signature_refused", reason=reason, remote_addr=remote_addr)
        await record_folded(
            self.pool,
            self.audit_throttle,
            action="webhook.signature_invalid",
            key=remote_addr or "",
            target=None,
            details={"reason": reason},
            remote_addr=remote_addr,
        )

    async def dropped_at_ingress(self, sender: str, remote_addr: str | None) -> None:
        """A delivery over the sender's ingress rate: logged and audited once per sender
        per interval, with the number of drops folded into the row."""
        folded = self.audit_throttle.admit("abuse.ingress_dropped", sender)
        if folded is None:
            return
        log.warning("webhook.ingress_dropped", wa_id=sender, folded=folded)
        details = {
            "folded": folded,
            "rate_per_s": self.ingress.rate,
            "burst": int(self.ingress.burst),
        }
        await self._audit("abuse.ingress_dropped", "system", sender, details, remote_addr)

    async def _audit(
        self,
        action: str,
        actor: str,
        target: str | None,
        details: Mapping[str, object],
        remote_addr: str | None,
    ) -> None:
        try:
            async with self.pool.connection() as conn:
                await record_audit(
                    conn,
                    actor=actor,
                    action=action,
                    target=target,
                    details=details,
                    remote_addr=remote_addr,
                )
        except Exception as exc:  # the refusal itself matters more than its record
            log.error("audit.write_failed", action=action, error=str(exc)[:200])


async def _warm_up(blacklist: Blacklist, penalty_reset_seconds: int) -> None:
    """Give the limiter what Postgres remembers: ladders and the blacklist."""
    try:
        restored = await blacklist.restore_penalties(penalty_reset_seconds)
        listed = await blacklist.sync_cache()
        log.info(
            "abuse.limiter_filled",
            limiter=blacklist.limiter.description,
            blacklisted=listed,
            penalties_restored=restored,
        )
    except LimiterUnavailable:
        log.error("abuse.warm_up_failed", reason="limiter unavailable", repaired_by="next sync")


async def _keep_cache_in_sync(blacklist: Blacklist, every_seconds: float) -> None:
    while True:
        await asyncio.sleep(every_seconds)
        try:
            await blacklist.sync_cache()
        except LimiterUnavailable:
            pass  # the limiter already logged the outage
        except Exception as exc:
            log.error("abuse.blacklist_sync_failed", error=str(exc)[:200])


class _Refill:
    """After a Redis outage: give the store back what Postgres knows, once, even when
    many turns notice the recovery at the same moment."""

    def __init__(self, blacklist: Blacklist, penalty_reset_seconds: int) -> None:
        self.blacklist = blacklist
        self.penalty_reset_seconds = penalty_reset_seconds
        self.lock = asyncio.Lock()
        self.done_at = float("-inf")

    async def __call__(self) -> None:
        async with self.lock:
            if time.monotonic() - self.done_at < 1.0:
                return
            await _warm_up(self.blacklist, self.penalty_reset_seconds)
            self.done_at = time.monotonic()


@contextlib.asynccontextmanager
async def open_abuse_protection(
    settings: Settings,
    pool: Pool,
    *,
    clock: Clock = system_clock,
) -> AsyncIterator[AbuseProtection]:
    limiter = build_limiter(settings, clock)
    blacklist = Blacklist(pool, limiter)
    await _warm_up(blacklist, settings.penalty_reset_seconds)
    if isinstance(limiter, RedisLimiter):
        limiter.on_recovered = _Refill(blacklist, settings.penalty_reset_seconds)
    sync = asyncio.create_task(
        _keep_cache_in_sync(blacklist, settings.blacklist_sync_seconds), name="blacklist-sync"
    )
    try:
        yield AbuseProtection(
            pool=pool,
            limiter=limiter,
            blacklist=blacklist,
            gate=AbuseGate(
                pool,
                limiter,
                blacklist,
                Policy.from_settings(settings),
                fail_open=settings.redis_fail_open,
            ),
            ingress=IngressGuard(settings.ingress_rate, settings.ingress_burst),
            audit_throttle=AuditThrottle(settings.audit_throttle_seconds),
        )
    finally:
        sync.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sync
        await limiter.aclose()
