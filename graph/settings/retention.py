"""Data retention and deployment knobs: how long each growing table keeps its rows.

A section of `graph.settings.Settings`, kept in its own module like the others. Every
period is in days; 0 keeps those rows for good. The defaults are what a small business
would sign off without a lawyer in the room: a year of conversations (disputes, quality
reviews, a customer coming back after the holidays), a quarter of operational detail
(runs, tool calls, per-call metrics: the dashboard's daily figures live on in their
rollups), two years of daily figures, and the audit log longest of all, three years.
The service refuses a configuration where the audit log would go before anything else.
"""

from __future__ import annotations

from typing import Self

from pydantic import BaseModel, Field, model_validator

# Fields whose rows the audit log must outlive (all but the audit log itself).
_OUTLIVED = (
    "retention_message_days",
    "retention_run_days",
    "retention_tool_days",
    "retention_metric_days",
    "retention_rollup_days",
    "retention_episode_days",
    "retention_job_days",
)


class RetentionSettings(BaseModel):
    """Fields here use `Field(default=..., validation_alias="ENV_NAME")` like Settings."""

    # Off: nothing is ever deleted by age (erasure and the memory/checkpoint policies
    # still apply).
    retention_enabled: bool = Field(default=True, validation_alias="WA_AGENT_RETENTION")
    # When the retention job runs (cron, UTC); each run stops after `retention_max_s`
    # and the next one carries on, so a first run on a large backlog never hogs the
    # database.
    retention_cron: str = Field(default="41 * * * *", validation_alias="WA_AGENT_RETENTION_CRON")
    retention_max_seconds: float = Field(
        default=120.0, gt=0, validation_alias="WA_AGENT_RETENTION_MAX_S"
    )
    # Rows deleted per statement (each its own short transaction).
    retention_batch: int = Field(
        default=2000, ge=1, le=100_000, validation_alias="WA_AGENT_RETENTION_BATCH"
    )

    # Conversations: inbound and outbound messages, the transcript, what the bot read
    # of media, and the checkpoints of threads idle that long. Never fewer days than
    # the webhook's freshness window: the inbound row is what recognises a redelivery.
    retention_message_days: float = Field(
        default=365.0, ge=0, validation_alias="WA_AGENT_RETENTION_MESSAGES_DAYS"
    )
    # Finished runs (turns): attempts, errors, gate decisions.
    retention_run_days: float = Field(
        default=90.0, ge=0, validation_alias="WA_AGENT_RETENTION_RUNS_DAYS"
    )
    # Tool-call records (masked arguments, durations, errors).
    retention_tool_days: float = Field(
        default=90.0, ge=0, validation_alias="WA_AGENT_RETENTION_TOOL_CALLS_DAYS"
    )
    # Per-call metrics: model calls, turn events, answer-cache lookups. The daily
    # rollups the dashboard reads are kept apart (below), so its figures survive.
    retention_metric_days: float = Field(
        default=90.0, ge=0, validation_alias="WA_AGENT_RETENTION_METRICS_DAYS"
    )
    retention_rollup_days: float = Field(
        default=730.0, ge=0, validation_alias="WA_AGENT_RETENTION_ROLLUPS_DAYS"
    )
    # Closed episodes and their CSAT answers.
    retention_episode_days: float = Field(
        default=365.0, ge=0, validation_alias="WA_AGENT_RETENTION_EPISODES_DAYS"
    )
    # The queue's finished jobs (failed, cancelled, aborted; successful ones are deleted
    # as they end) with their events.
    retention_job_days: float = Field(
        default=7.0, ge=0, validation_alias="WA_AGENT_RETENTION_JOBS_DAYS"
    )
    # The audit log: kept longest. The database refuses to expire rows younger than
    # 30 days whatever is configured.
    retention_audit_days: float = Field(
        default=1095.0, ge=0, validation_alias="WA_AGENT_RETENTION_AUDIT_DAYS"
    )

    # --- deployment -----------------------------------------------------------------
    # false: `serve` and `worker` do not apply migrations at start (a migration Job
    # does, on a direct connection): needed behind PgBouncer in transaction mode, where
    # the migrations' session advisory lock cannot work.
    migrate_on_start: bool = Field(default=True, validation_alias="WA_AGENT_MIGRATE_ON_START")

    @model_validator(mode="after")
    def _audit_kept_longest(self) -> Self:
        audit = self.retention_audit_days
        if audit == 0:
            return self
        if 0 < audit < 30:
            raise ValueError("WA_AGENT_RETENTION_AUDIT_DAYS: at least 30 days (or 0: forever)")
        for name in _OUTLIVED:
            days = float(getattr(self, name))
            if days == 0 or days > audit:
                env = type(self).model_fields[name].validation_alias
                raise ValueError(
                    f"the audit log must be kept longest: WA_AGENT_RETENTION_AUDIT_DAYS"
                    f"={audit:g} is shorter than {env}={days:g} (0 = forever)"
                )
        return self
