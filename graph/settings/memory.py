"""Conversation memory: the history budget, long-term memories, their housekeeping.

A section of `graph.settings.Settings`, which inherits it.
"""

from __future__ import annotations

from pydantic import BaseModel, Field


class MemorySettings(BaseModel):
    """Fields here use `Field(default=..., validation_alias="ENV_NAME")` like Settings."""

    # Tokens of history (running summary + messages) the model reads each turn; older
    # messages are folded into the summary. 0 = no budget: the whole thread is sent.
    memory_history_tokens: int = Field(
        default=1500, ge=0, validation_alias="WA_AGENT_MEMORY_HISTORY_TOKENS"
    )
    memory_summary_tokens: int = Field(  # the summary's share of that budget, at most
        default=300, ge=50, validation_alias="WA_AGENT_MEMORY_SUMMARY_TOKENS"
    )
    # Long-term memories per customer (needs pgvector): recalled into the agents'
    # prompts, extracted by a queued job after each answered turn. false = neither.
    memory_enabled: bool = Field(default=True, validation_alias="WA_AGENT_MEMORY")
    memory_model: str | None = Field(  # summaries and extraction; unset = WA_AGENT_MODEL
        default=None, validation_alias="WA_AGENT_MEMORY_MODEL"
    )
    # Memories are extracted this long after a reply went out; turns answered meanwhile
    # are read by the same job: one extraction call per burst of messages, not per turn.
    memory_remember_delay_seconds: float = Field(
        default=60.0, ge=0, validation_alias="WA_AGENT_MEMORY_REMEMBER_DELAY_S"
    )
    memory_recall_k: int = Field(
        default=5, ge=1, le=50, validation_alias="WA_AGENT_MEMORY_RECALL_K"
    )
    memory_min_similarity: float = Field(  # cosine; less similar memories are not recalled
        default=0.2, ge=0.0, le=1.0, validation_alias="WA_AGENT_MEMORY_MIN_SIMILARITY"
    )
    memory_duplicate_similarity: float = Field(  # a new memory this close updates the old
        default=0.85, ge=0.5, le=1.0, validation_alias="WA_AGENT_MEMORY_DUPLICATE_SIMILARITY"
    )
    memory_half_life_days: float = Field(  # recency weight halves this often
        default=90.0, gt=0, validation_alias="WA_AGENT_MEMORY_HALF_LIFE_DAYS"
    )
    # Cleanup: memories under the floor go once untouched for the TTL; at most
    # `MAX_PER_USER` per customer (the least important and stalest go first).
    memory_importance_floor: float = Field(
        default=0.4, ge=0.0, le=1.0, validation_alias="WA_AGENT_MEMORY_IMPORTANCE_FLOOR"
    )
    memory_ttl_days: float = Field(default=180.0, gt=0, validation_alias="WA_AGENT_MEMORY_TTL_DAYS")
    memory_max_per_user: int = Field(
        default=200, ge=1, validation_alias="WA_AGENT_MEMORY_MAX_PER_USER"
    )
    embedding_cache_days: float = Field(  # cached vectors unused this long are dropped
        default=30.0, gt=0, validation_alias="WA_AGENT_EMBEDDING_CACHE_DAYS"
    )
    # Threads idle this long keep only their latest checkpoint (replay history older
    # than that goes; the summary and memories keep what matters). 0 = keep everything.
    checkpoint_retention_days: float = Field(
        default=30.0, ge=0, validation_alias="WA_AGENT_CHECKPOINT_RETENTION_DAYS"
    )
    # When the memory cleanup and checkpoint retention jobs run (cron, UTC).
    maintenance_cron: str = Field(
        default="*/30 * * * *", validation_alias="WA_AGENT_MAINTENANCE_CRON"
    )
