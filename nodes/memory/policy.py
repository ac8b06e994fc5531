"""How long-term memories are ranked, merged, refreshed and let go.

One place for the numbers, so recall, remember and the cleanup job agree. The
defaults come from the settings (`graph/settings/`) through graph/composition/memory.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class MemoryPolicy:
    # recall: the k best by similarity × importance × recency, out of `candidates`
    # nearest neighbours; nothing less similar than `min_similarity` is offered.
    recall_k: int = 5
    candidates: int = 20
    min_similarity: float = 0.35
    # Recency halves every `half_life_days` since a memory was last made or recalled,
    # but never below `recency_floor`: an old fact that still matches (a diet, a
    # city) must still be recalled.
    half_life_days: float = 90.0
    recency_floor: float = 0.35
    # Each recall moves importance this share of the way to 1: what keeps being
    # useful stays.
    recall_boost: float = 0.1
    # remember: a new memory this similar to an existing one updates it instead.
    duplicate_similarity: float = 0.88
    # Extracted memories below this importance are not kept at all.
    min_importance: float = 0.15
    # cleanup: memories under `importance_floor` go once untouched for `ttl_days`;
    # a customer keeps at most `max_per_user` memories (the least valuable go first).
    importance_floor: float = 0.4
    ttl_days: float = 180.0
    max_per_user: int = 200

    def recency(self, last_touched: datetime, now: datetime) -> float:
        age_days = max(0.0, (now - last_touched).total_seconds() / 86_400)
        decay = 0.5 ** (age_days / self.half_life_days) if self.half_life_days > 0 else 1.0
        return self.recency_floor + (1.0 - self.recency_floor) * decay

    def score(self, similarity: float, importance: float, recency: float) -> float:
        return max(0.0, similarity) * importance * recency

    def boosted(self, importance: float) -> float:
        return min(1.0, importance + self.recall_boost * (1.0 - importance))
