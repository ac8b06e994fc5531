"""Operator console: accounting, prices, caps, alerts, dashboard.

A section of `graph.settings.Settings`, kept in its own module so that no settings
module grows past a screenful per concern; `Settings` inherits it, and code reads these
values from a `Settings` instance like every other knob.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr


class ModelPrice(BaseModel):
    """US dollars per million tokens, as providers publish them."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    input: float = Field(ge=0)
    cached_input: float | None = Field(default=None, ge=0)  # None: same as input
    output: float = Field(default=0.0, ge=0)


DEFAULT_MODEL_PRICES: dict[str, ModelPrice] = {
    "gpt-4o-mini": ModelPrice(input=0.15, cached_input=0.075, output=0.60),
    "text-embedding-3-small": ModelPrice(input=0.02),
}


class ConsoleSettings(BaseModel):
    """Fields here use `Field(default=..., validation_alias="ENV_NAME")` like Settings."""

    # --- accounting ------------------------------------------------------------------
    # Every model call is metered (tokens, cost, latency, agent) into agent_metrics.
    accounting_enabled: bool = Field(default=True, validation_alias="WA_AGENT_ACCOUNTING")
    # JSON {"model": {"input": .., "cached_input": .., "output": ..}} in USD per 1M
    # tokens; a model name matches its longest listed prefix (gpt-4o-mini-2024-07-18).
    model_prices: dict[str, ModelPrice] = Field(
        default_factory=lambda: dict(DEFAULT_MODEL_PRICES),
        validation_alias="WA_AGENT_MODEL_PRICES",
    )
    accounting_flush_seconds: float = Field(
        default=1.0, gt=0, le=60, validation_alias="WA_AGENT_ACCOUNTING_FLUSH_S"
    )
    # Records waiting for the writer beyond this are dropped (counted in /metrics):
    # a stuck database must not grow the worker's memory without bound.
    accounting_queue_max: int = Field(
        default=50_000, ge=100, validation_alias="WA_AGENT_ACCOUNTING_QUEUE_MAX"
    )

    # --- spending caps -----------------------------------------------------------------
    conversation_token_cap: int = Field(  # model tokens per conversation; 0 = no cap
        default=0, ge=0, validation_alias="WA_AGENT_CONVERSATION_TOKEN_CAP"
    )
    user_daily_cost_cap_usd: float = Field(  # per customer per UTC day; 0 = no cap
        default=0.0, ge=0, validation_alias="WA_AGENT_USER_DAILY_COST_CAP_USD"
    )
    # Over a cap: answer with a cheaper model, or with the polite message instead.
    cap_action: Literal["cheaper_model", "message"] = Field(
        default="cheaper_model", validation_alias="WA_AGENT_CAP_ACTION"
    )
    cheaper_model: str | None = Field(  # unset: the message, whatever cap_action says
        default=None, validation_alias="WA_AGENT_CHEAPER_MODEL"
    )
    # Unset: prompts/notices/'s `spending_cap`, in the customer's language.
    cap_message: str | None = Field(
        default=None, min_length=1, max_length=1024, validation_alias="WA_AGENT_CAP_MESSAGE"
    )

    # --- alerts ------------------------------------------------------------------------
    alert_webhook_url: str | None = Field(default=None, validation_alias="ALERT_WEBHOOK_URL")
    alert_webhook_secret: SecretStr | None = Field(  # sent as a bearer token when set
        default=None, validation_alias="WA_AGENT_ALERT_WEBHOOK_TOKEN"
    )
    # One JSON POST per conversation that starts waiting for a person
    # (server/outcomes/escalation_notices.py); unset: the dashboard's inbox only.
    escalation_webhook_url: str | None = Field(
        default=None, validation_alias="WA_AGENT_ESCALATION_WEBHOOK_URL"
    )
    alert_cron: str = Field(default="* * * * *", validation_alias="WA_AGENT_ALERT_CRON")
    alert_window_seconds: int = Field(
        default=300, ge=30, validation_alias="WA_AGENT_ALERT_WINDOW_S"
    )
    alert_error_rate: float = Field(  # share of failed model calls in the window
        default=0.2, gt=0, le=1, validation_alias="WA_AGENT_ALERT_ERROR_RATE"
    )
    alert_latency_p95_ms: float = Field(  # p95 model-call latency of any agent
        default=15_000.0, gt=0, validation_alias="WA_AGENT_ALERT_LATENCY_P95_MS"
    )
    alert_min_calls: int = Field(  # fewer calls in the window decide nothing
        default=5, ge=1, validation_alias="WA_AGENT_ALERT_MIN_CALLS"
    )
    alert_timeout_seconds: float = Field(
        default=5.0, gt=0, validation_alias="WA_AGENT_ALERT_TIMEOUT_S"
    )
    alert_max_attempts: int = Field(
        default=4, ge=1, le=10, validation_alias="WA_AGENT_ALERT_MAX_ATTEMPTS"
    )

    # --- dashboard ---------------------------------------------------------------------
    dashboard_session_hours: float = Field(  # the login cookie's lifetime
        default=12.0, gt=0, le=24 * 30, validation_alias="WA_AGENT_DASHBOARD_SESSION_H"
    )
    dashboard_days: int = Field(  # the overview's default span
        default=14, ge=1, le=365, validation_alias="WA_AGENT_DASHBOARD_DAYS"
    )
