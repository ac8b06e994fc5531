"""Feature flags: environment overrides, a `feature_flags` table, per-customer rollout.

Resolution, first match wins: `WA_AGENT_FLAGS` (`name` forces on, `-name` forces off,
for the whole process), then the business number's own setting (a line that differs:
`business_numbers.flags`), then the table row (`enabled` and `rollout_percent`), then
the default in `FLAG_DEFAULTS`. A rollout percentage is applied by a stable hash of the flag
and the customer, so a customer does not flip between behaviours from one message to
the next, and raising the percentage only ever adds customers.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from graph.context import FLAG_DEFAULTS
from graph.infra.database import Pool


@dataclass(frozen=True)
class FlagRule:
    enabled: bool
    rollout_percent: int = 100


def rollout_bucket(flag: str, user_key: str) -> int:
    """0–99, stable for a (flag, customer) pair."""
    digest = hashlib.sha256(f"{flag}:{user_key}".encode()).digest()
    return int.from_bytes(digest[:4], "big") % 100


def parse_overrides(entries: Iterable[str]) -> dict[str, bool]:
    return {e.removeprefix("-"): not e.startswith("-") for e in entries if e.strip("-")}


def resolve(
    name: str, user_key: str, overrides: Mapping[str, bool], rules: Mapping[str, FlagRule]
) -> bool:
    if name in overrides:
        return overrides[name]
    rule = rules.get(name)
    if rule is None:
        return FLAG_DEFAULTS.get(name, False)
    return rule.enabled and rollout_bucket(name, user_key) < rule.rollout_percent


class FeatureFlags:
    def __init__(
        self,
        pool: Pool,
        overrides: Iterable[str],
        ttl: float = 5.0,
        number_flags: Callable[[str], Mapping[str, bool]] = lambda phone_number_id: {},
    ) -> None:
        self.pool = pool
        self.overrides = parse_overrides(overrides)
        self.ttl = ttl
        self.number_flags = number_flags
        self._rules: dict[str, FlagRule] = {}
        self._loaded_at = float("-inf")

    def invalidate(self) -> None:
        self._loaded_at = float("-inf")

    async def for_customer(
        self, user_key: str, phone_number_id: str | None = None
    ) -> dict[str, bool]:
        """The customer's flags; `phone_number_id`: the business number they wrote to,
        whose own settings apply to its customers."""
        rules = await self._current_rules()
        number = self.number_flags(phone_number_id) if phone_number_id else {}
        names = set(FLAG_DEFAULTS) | set(rules) | set(self.overrides)
        flags = {name: resolve(name, user_key, self.overrides, rules) for name in sorted(names)}
        # The number's own setting wins over the table, never over the environment.
        flags.update((n, on) for n, on in number.items() if n in flags and n not in self.overrides)
        return flags

    async def _current_rules(self) -> dict[str, FlagRule]:
        if time.monotonic() - self._loaded_at < self.ttl:
            return self._rules
        async with self.pool.connection() as conn:
            cur = await conn.execute("SELECT name, enabled, rollout_percent FROM feature_flags")
            rows = await cur.fetchall()
        self._rules = {r["name"]: FlagRule(r["enabled"], r["rollout_percent"]) for r in rows}
        self._loaded_at = time.monotonic()
        return self._rules
