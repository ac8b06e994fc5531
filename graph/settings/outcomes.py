"""Business outcomes: episodes, CSAT, answer cache.

A section of `graph.settings.Settings`, kept in its own module so that no settings
module grows past a screenful per concern; `Settings` inherits it, and code reads these
values from a `Settings` instance like every other knob.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, Field, field_validator
from pydantic_settings import NoDecode


class OutcomeSettings(BaseModel):
    """Fields here use `Field(default=..., validation_alias="ENV_NAME")` like Settings."""

    # --- episodes ----------------------------------------------------------------------
    # An episode with no message either way for this long is closed by the periodic job.
    episode_idle_minutes: float = Field(
        default=30.0, gt=0, le=7 * 24 * 60, validation_alias="WA_AGENT_EPISODE_IDLE_MIN"
    )
    episode_sweep_cron: str = Field(
        default="*/5 * * * *", validation_alias="WA_AGENT_EPISODE_SWEEP_CRON"
    )

    # --- CSAT (flag `csat`) -------------------------------------------------------------
    # At most one satisfaction question per customer in this many hours.
    csat_min_interval_hours: float = Field(
        default=24.0, ge=0, validation_alias="WA_AGENT_CSAT_MIN_INTERVAL_H"
    )
    # A text written this soon after a rating is kept as its comment (not a new request).
    csat_comment_minutes: float = Field(
        default=10.0, ge=0, validation_alias="WA_AGENT_CSAT_COMMENT_MIN"
    )

    # --- booking reminders (flag `booking_reminders`) ----------------------------------------
    # The approved template reminding a customer of a booking, as `name:language`
    # (`booking_reminder:en`); empty: no reminders. Its body's variables, in order, get
    # the customer's name, what is booked and when (at most three).
    booking_reminder_template: str | None = Field(
        default=None, pattern=r"^[^:]+:[^:]+$", validation_alias="WA_AGENT_BOOKING_REMINDER"
    )
    # How long before the booking starts the reminder goes out.
    booking_reminder_hours: float = Field(
        default=24.0, gt=0, le=24 * 14, validation_alias="WA_AGENT_BOOKING_REMINDER_H"
    )
    # --- payment nudges (flag `payment_nudges`) ----------------------------------------------
    # The template nudging a customer whose booking's payment link is still open, as
    # `name:language`; its variables get the name, the booking and the payment link.
    payment_nudge_template: str | None = Field(
        default=None, pattern=r"^[^:]+:[^:]+$", validation_alias="WA_AGENT_PAYMENT_NUDGE"
    )
    # How long after the payment link was made the nudge goes out (once).
    payment_nudge_hours: float = Field(
        default=2.0, gt=0, le=24 * 14, validation_alias="WA_AGENT_PAYMENT_NUDGE_H"
    )

    # --- answer cache (flag `answer_cache`) -----------------------------------------------
    # Cosine similarity a new question needs to a cached one (after the near-miss guard).
    answer_cache_threshold: float = Field(
        default=0.83, ge=0.5, le=1.0, validation_alias="WA_AGENT_ANSWER_CACHE_THRESHOLD"
    )
    # Words one question swaps for others must be this close in meaning ("bike"/"bicycle"
    # yes, "helmet"/"lock" no); catches "deliver to Remera" vs "deliver to Huye".
    answer_cache_synonym_similarity: float = Field(
        default=0.70, ge=0.0, le=1.0, validation_alias="WA_AGENT_ANSWER_CACHE_SYNONYM"
    )
    answer_cache_ttl_hours: float = Field(
        default=24.0, gt=0, validation_alias="WA_AGENT_ANSWER_CACHE_TTL_H"
    )
    # Tools whose results do not depend on the customer: only turns that called nothing
    # else may be cached.
    answer_cache_tools: Annotated[frozenset[str], NoDecode] = Field(
        default=frozenset({"search_knowledge_base", "search_catalog", "get_product"}),
        validation_alias="WA_AGENT_ANSWER_CACHE_TOOLS",
    )

    @field_validator("answer_cache_tools", mode="before")
    @classmethod
    def _split_tools(cls, raw: object) -> object:
        """`WA_AGENT_ANSWER_CACHE_TOOLS=a,b` like `WA_AGENT_FLAGS`."""
        if isinstance(raw, str):
            return frozenset(part.strip() for part in raw.split(",") if part.strip())
        return raw
