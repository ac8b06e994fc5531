"""What the limiter decides, independent of where its counters live.

Both limiters (Redis and in-process) take the same `Policy` and answer with the same
`Verdict`, and tests run the same ladder against both. Times are epoch milliseconds
from an injected clock, so a test can walk a day of penalties in a second.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from graph.settings import Settings

Clock = Callable[[], float]
"""Seconds since the epoch, like `time.time`."""

DAY_MS = 86_400_000


def now_ms(clock: Clock) -> int:
    return int(clock() * 1000)


class Outcome(StrEnum):
    ALLOWED = "allowed"
    BLACKLISTED = "blacklisted"  # on the blacklist already
    BLOCKED = "blocked"  # a temporary block is running
    OVER_BUDGET = "over_budget"  # today's model tokens are spent
    WARNED = "warned"  # first violation: a warning
    BLOCKED_NOW = "blocked_now"  # a violation after the warning: the next block
    BLACKLISTED_NOW = "blacklisted_now"  # a violation after the last block


ESCALATIONS = frozenset({Outcome.WARNED, Outcome.BLOCKED_NOW, Outcome.BLACKLISTED_NOW})

# The word stored on refused messages and runs (inbound_messages.gate).
GATE_REASONS: dict[Outcome, str] = {
    Outcome.BLACKLISTED: "blacklisted",
    Outcome.BLACKLISTED_NOW: "blacklisted",
    Outcome.BLOCKED: "blocked",
    Outcome.BLOCKED_NOW: "blocked",
    Outcome.WARNED: "rate_limited",
    Outcome.OVER_BUDGET: "over_budget",
}


@dataclass(frozen=True)
class Verdict:
    outcome: Outcome
    until_ms: int = 0  # end of the block or blacklist in force; 0 = none or permanent
    notify: bool = False  # True exactly once per escalation (and once a day over budget)
    level: int = 0
    blocks: int = 0

    @property
    def admitted(self) -> bool:
        return self.outcome is Outcome.ALLOWED

    @property
    def escalated(self) -> bool:
        return self.outcome in ESCALATIONS


# The ladder's last step is decided by the limiter but belongs to Postgres: until the
# blacklist row is committed (and `set_blacklisted` confirms it to the limiter), the
# penalty stays at this level and every hit answers BLACKLISTED_NOW again, so a failed
# write is retried by the next turn instead of being forgotten by the next cache sync.
BLACKLIST_DUE = 2


@dataclass(frozen=True)
class PenaltyState:
    """Where a customer stands on the ladder; what Postgres keeps across restarts."""

    level: int  # 0: clean, 1: warned, BLACKLIST_DUE: blacklisted, not yet in Postgres
    blocks: int
    until_ms: int
    last_ms: int  # the latest violation


@dataclass(frozen=True)
class Policy:
    windows: tuple[tuple[int, int], ...]  # (messages, seconds)
    block_seconds: tuple[int, ...]
    reset_seconds: int
    blacklist_seconds: int  # 0 = permanent
    token_budget: int  # 0 = none

    @classmethod
    def from_settings(cls, settings: Settings) -> Policy:
        return cls(
            windows=tuple(settings.rate_limits),
            block_seconds=tuple(settings.block_durations),
            reset_seconds=settings.penalty_reset_seconds,
            blacklist_seconds=settings.auto_blacklist_seconds,
            token_budget=settings.daily_token_budget,
        )

    def blacklist_until(self, at_ms: int) -> int:
        return at_ms + self.blacklist_seconds * 1000 if self.blacklist_seconds else 0

    def escalate(self, state: PenaltyState, at_ms: int) -> tuple[Outcome, PenaltyState]:
        """One more violation: warning → each block in turn → blacklist (due until
        Postgres has it, see BLACKLIST_DUE)."""
        if state.level == 0:
            return Outcome.WARNED, PenaltyState(1, state.blocks, 0, at_ms)
        if state.blocks < len(self.block_seconds):
            until = at_ms + self.block_seconds[state.blocks] * 1000
            return Outcome.BLOCKED_NOW, PenaltyState(1, state.blocks + 1, until, at_ms)
        due = PenaltyState(BLACKLIST_DUE, state.blocks, self.blacklist_until(at_ms), at_ms)
        return Outcome.BLACKLISTED_NOW, due

    def current(self, state: PenaltyState | None, at_ms: int) -> PenaltyState:
        """The ladder is forgotten after `reset_seconds` without a violation; a due
        blacklist only when its own term is over."""
        clean = PenaltyState(0, 0, 0, 0)
        if state is None:
            return clean
        if state.level == BLACKLIST_DUE:
            return state if state.until_ms == 0 or state.until_ms > at_ms else clean
        forgotten = at_ms - state.last_ms > self.reset_seconds * 1000
        return clean if forgotten and state.until_ms <= at_ms else state


def system_clock() -> float:
    return time.time()


class LimiterUnavailable(RuntimeError):
    """The limiter's store cannot answer; the gate applies WA_AGENT_REDIS_FAIL_OPEN."""
