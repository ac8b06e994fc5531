"""Abuse protection and data security: rate limits, the penalty ladder, Redis, admin
tokens, strict input, masking.

A section of `graph.settings.Settings`, which inherits it.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import BaseModel, Field, SecretStr, field_validator
from pydantic_settings import NoDecode


def duration_seconds(text: str) -> int:
    """ "90", "15m", "2h", "1d", "minute" → seconds."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    words = {"second": "s", "minute": "m", "hour": "h", "day": "d"}
    match = re.fullmatch(r"\s*(\d+)?\s*([a-z]*)\s*", text.lower())
    unit = match.group(2).rstrip("s") if match else ""
    unit = words.get(unit, unit) or "s"
    if match is None or unit not in units or (match.group(1) is None and unit == "s"):
        raise ValueError(f"not a duration: {text!r} (use e.g. 90, 15m, 2h, 1d)")
    return int(match.group(1) or 1) * units[unit]


class AbuseSettings(BaseModel):
    """Fields here use `Field(default=..., validation_alias="ENV_NAME")` like Settings."""

    # Sliding windows per customer, "count/duration" (s, m, h, d), comma-separated; every
    # message a turn answers counts. Going over any window climbs the penalty ladder.
    rate_limits: Annotated[tuple[tuple[int, int], ...], NoDecode] = Field(
        default=((20, 60), (200, 3600), (1000, 86400)), validation_alias="WA_AGENT_RATE_LIMITS"
    )
    # The ladder: a warning first, then these blocks in turn, then the blacklist.
    block_durations: Annotated[tuple[int, ...], NoDecode] = Field(
        default=(300, 1800, 7200), validation_alias="WA_AGENT_BLOCK_DURATIONS"
    )
    auto_blacklist_seconds: int = Field(  # 0 = until an operator unblocks
        default=7 * 86400, ge=0, validation_alias="WA_AGENT_AUTO_BLACKLIST_S"
    )
    penalty_reset_seconds: int = Field(  # this long without a violation forgets the ladder
        default=86400, gt=0, validation_alias="WA_AGENT_PENALTY_RESET_S"
    )
    daily_token_budget: int = Field(  # model tokens per customer per UTC day; 0 = none
        default=200_000, ge=0, validation_alias="WA_AGENT_DAILY_TOKEN_BUDGET"
    )
    # Webhook guard, per sender and process: beyond this rate (burst allowed) deliveries
    # are refused with 429 (Meta redelivers later), so a flood costs no database write.
    # 0 = off.
    ingress_rate: float = Field(default=5.0, ge=0, validation_alias="WA_AGENT_INGRESS_RATE")
    ingress_burst: int = Field(default=40, ge=1, validation_alias="WA_AGENT_INGRESS_BURST")
    # Redis down: true = limits are counted in each process meanwhile (the in-process
    # limiter stands in; the blacklist still holds, from Postgres); false = turns wait
    # in the queue until Redis is back.
    redis_fail_open: bool = Field(default=True, validation_alias="WA_AGENT_REDIS_FAIL_OPEN")
    redis_timeout_ms: int = Field(default=250, ge=1, validation_alias="WA_AGENT_REDIS_TIMEOUT_MS")
    redis_retry_seconds: float = Field(  # how long a failed Redis is left alone
        default=5.0, gt=0, validation_alias="WA_AGENT_REDIS_RETRY_S"
    )
    redis_prefix: str = Field(default="wa-agent:", validation_alias="WA_AGENT_REDIS_PREFIX")
    blacklist_sync_seconds: float = Field(
        default=30.0, gt=0, validation_alias="WA_AGENT_BLACKLIST_SYNC_S"
    )
    # Named admin tokens, "name:token,name:token"; the name goes into the audit log.
    admin_tokens: Annotated[dict[str, SecretStr], NoDecode] = Field(
        default_factory=dict, validation_alias="ADMIN_TOKENS"
    )
    # WhatsApp's own limit for a text message: a longer one was not typed in WhatsApp.
    max_text_chars: int = Field(default=4096, ge=1, validation_alias="WA_AGENT_MAX_TEXT_CHARS")
    # Webhook messages older than this are ignored (logged, not stored, not answered):
    # Meta redelivers for up to 7 days while the webhook fails, so anything older is a
    # replay, not a retry. Past 24 h only templates reach the customer anyway. 0 = off.
    webhook_max_age_days: float = Field(
        default=7.0, ge=0, validation_alias="WA_AGENT_WEBHOOK_MAX_AGE_DAYS"
    )
    # Extra PII formats as a JSON object {"label": "regex"}; matches become "[label]".
    pii_patterns: dict[str, str] = Field(
        default_factory=dict, validation_alias="WA_AGENT_PII_PATTERNS"
    )
    # Region for numbers an operator types without a country code (e.g. RW); None = must
    # be international.
    phone_region: str | None = Field(default=None, validation_alias="WA_AGENT_PHONE_REGION")
    audit_throttle_seconds: float = Field(  # per address, for signature and login failures
        default=60.0, ge=0, validation_alias="WA_AGENT_AUDIT_THROTTLE_S"
    )

    @field_validator("rate_limits", mode="before")
    @classmethod
    def _parse_rate_limits(cls, raw: object) -> object:
        if not isinstance(raw, str):
            return raw
        rules = []
        for part in filter(None, (p.strip() for p in raw.split(","))):
            count, _, window = part.partition("/")
            if not count.strip().isdigit() or not window:
                raise ValueError(f"not a rate limit: {part!r} (use e.g. 20/1m)")
            rule = (int(count), duration_seconds(window))
            if min(rule) < 1:
                raise ValueError(f"a rate limit needs a count and a window: {part!r}")
            rules.append(rule)
        return tuple(rules)

    @field_validator("block_durations", mode="before")
    @classmethod
    def _parse_block_durations(cls, raw: object) -> object:
        if isinstance(raw, str):
            return tuple(duration_seconds(p) for p in raw.split(",") if p.strip())
        return raw

    @field_validator("admin_tokens", mode="before")
    @classmethod
    def _parse_admin_tokens(cls, raw: object) -> object:
        if not isinstance(raw, str):
            return raw
        tokens: dict[str, str] = {}
        for part in filter(None, (p.strip() for p in raw.split(","))):
            name, _, token = part.partition(":")
            if not name.strip() or not token.strip():
                raise ValueError("ADMIN_TOKENS must look like name:token,name:token")
            tokens[name.strip()] = token.strip()
        return tokens

    @field_validator("pii_patterns")
    @classmethod
    def _compile_pii_patterns(cls, patterns: dict[str, str]) -> dict[str, str]:
        for label, pattern in patterns.items():
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"WA_AGENT_PII_PATTERNS[{label!r}]: {exc}") from exc
        return patterns
