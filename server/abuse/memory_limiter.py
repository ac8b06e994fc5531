"""The in-process limiter: the same decisions as the Redis one, for one process only.

Used when `REDIS_URL` is unset (a laptop, a single small deployment), and by the gate
while Redis is down and `WA_AGENT_REDIS_FAIL_OPEN` is on: a weaker limit beats none.
Its counters die with the process; the penalty ladder and the blacklist are reloaded
from Postgres at start, so a restart forgives nobody. Two processes would each count
half a flood, which is why the log says "one process only".
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Mapping
from dataclasses import dataclass, field

from server.abuse.rate_policy import (
    BLACKLIST_DUE,
    DAY_MS,
    Clock,
    Outcome,
    PenaltyState,
    Policy,
    Verdict,
    now_ms,
    system_clock,
)


@dataclass
class _Windows:
    """One customer's recent answered messages, per window: (ms, count) and a total."""

    events: list[deque[tuple[int, int]]]
    totals: list[int] = field(default_factory=list)

    def prune(self, windows: tuple[tuple[int, int], ...], at_ms: int) -> None:
        for index, (_, seconds) in enumerate(windows):
            events = self.events[index]
            while events and events[0][0] <= at_ms - seconds * 1000:
                self.totals[index] -= events.popleft()[1]

    def fits(self, windows: tuple[tuple[int, int], ...], weight: int) -> bool:
        return all(self.totals[i] + weight <= limit for i, (limit, _) in enumerate(windows))

    def add(self, at_ms: int, weight: int) -> None:
        for index, events in enumerate(self.events):
            events.append((at_ms, weight))
            self.totals[index] += weight


class MemoryLimiter:
    description = "in-process (one process only)"

    def __init__(
        self, policy: Policy, clock: Clock = system_clock, *, max_customers: int = 100_000
    ) -> None:
        self.policy = policy
        self.clock = clock
        self.max_customers = max_customers
        self._windows: OrderedDict[str, _Windows] = OrderedDict()
        self._penalties: dict[str, PenaltyState] = {}
        self._blacklist: dict[str, int] = {}
        self._tokens: dict[tuple[str, int], int] = {}
        self._budget_noticed: set[tuple[str, int]] = set()

    async def hit(self, user: str, weight: int) -> Verdict:
        at = now_ms(self.clock)
        listed = self._listed_until(user, at)
        if listed is not None:
            return Verdict(Outcome.BLACKLISTED, listed)
        state = self.policy.current(self._penalties.get(user), at)
        if state.level == BLACKLIST_DUE:  # decided, but Postgres has not confirmed it yet
            return Verdict(Outcome.BLACKLISTED_NOW, state.until_ms, True)
        if state.until_ms > at:
            return Verdict(Outcome.BLOCKED, state.until_ms, False, state.level, state.blocks)
        day = at // DAY_MS
        budget = self.policy.token_budget
        if budget and self._tokens.get((user, day), 0) >= budget:
            first = (user, day) not in self._budget_noticed
            self._budget_noticed.add((user, day))
            return Verdict(Outcome.OVER_BUDGET, 0, first, state.level, state.blocks)
        windows = self._windows_of(user, at)
        if windows.fits(self.policy.windows, weight):
            windows.add(at, weight)
            return Verdict(Outcome.ALLOWED, 0, False, state.level, state.blocks)
        outcome, escalated = self.policy.escalate(state, at)
        self._penalties[user] = escalated
        if outcome is Outcome.BLACKLISTED_NOW:  # listed by `set_blacklisted`, after Postgres
            return Verdict(outcome, escalated.until_ms, True)
        return Verdict(outcome, escalated.until_ms, True, escalated.level, escalated.blocks)

    def _listed_until(self, user: str, at: int) -> int | None:
        until = self._blacklist.get(user)
        if until is None or until == 0 or until > at:
            return until
        del self._blacklist[user]
        return None

    def _windows_of(self, user: str, at: int) -> _Windows:
        windows = self._windows.get(user)
        if windows is None:
            count = len(self.policy.windows)
            windows = _Windows([deque() for _ in range(count)], [0] * count)
            self._windows[user] = windows
            if len(self._windows) > self.max_customers:
                self._windows.popitem(last=False)  # the customer quiet the longest
        else:
            self._windows.move_to_end(user)
        windows.prune(self.policy.windows, at)
        return windows

    async def tokens_today(self, user: str) -> int:
        return self._tokens.get((user, now_ms(self.clock) // DAY_MS), 0)

    async def add_tokens(self, user: str, tokens: int) -> None:
        day = now_ms(self.clock) // DAY_MS
        key = (user, day)
        self._tokens[key] = self._tokens.get(key, 0) + tokens
        if len(self._tokens) > self.max_customers:
            self._tokens = {k: v for k, v in self._tokens.items() if k[1] >= day}
            self._budget_noticed = {k for k in self._budget_noticed if k[1] >= day}

    async def set_blacklisted(self, user: str, until_ms: int) -> None:
        self._blacklist[user] = until_ms
        self._penalties.pop(user, None)

    async def forget(self, user: str) -> None:
        self._blacklist.pop(user, None)
        self._penalties.pop(user, None)
        self._windows.pop(user, None)

    async def replace_blacklist(self, entries: Mapping[str, int]) -> None:
        self._blacklist = dict(entries)

    async def restore_penalty(self, user: str, state: PenaltyState) -> None:
        self._penalties.setdefault(user, state)

    async def penalty(self, user: str) -> PenaltyState | None:
        at = now_ms(self.clock)
        state = self.policy.current(self._penalties.get(user), at)
        return state if state.level or state.blocks else None

    async def aclose(self) -> None:
        return None
