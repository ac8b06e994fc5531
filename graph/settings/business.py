"""The business tools: time zone, knowledge base, payments.

A section of `graph.settings.Settings`, which inherits it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr


class BusinessSettings(BaseModel):
    """Fields here use `Field(default=..., validation_alias="ENV_NAME")` like Settings."""

    # Bookings are offered and shown in this time zone; the database keeps UTC.
    business_timezone: str = Field(
        default="Africa/Kigali", validation_alias="WA_AGENT_BUSINESS_TIMEZONE"
    )
    # The FAQ / policy Markdown documents indexed into pgvector; unset: prompts/knowledge.
    knowledge_dir: Path | None = Field(default=None, validation_alias="WA_AGENT_KNOWLEDGE_DIR")
    # manual: bank-transfer / mobile-money instructions with a reference (no account
    # needed); http: a hosted payment-link service at WA_AGENT_PAYMENT_API_BASE_URL.
    payment_provider: Literal["manual", "http"] = Field(
        default="manual", validation_alias="WA_AGENT_PAYMENT_PROVIDER"
    )
    payment_api_base_url: str | None = Field(
        default=None, validation_alias="WA_AGENT_PAYMENT_API_BASE_URL"
    )
    payment_api_key: SecretStr | None = Field(
        default=None, validation_alias="WA_AGENT_PAYMENT_API_KEY"
    )
    payment_timeout_seconds: float = Field(
        default=10.0, gt=0, validation_alias="WA_AGENT_PAYMENT_TIMEOUT_S"
    )
    payment_max_attempts: int = Field(
        default=3, ge=1, le=10, validation_alias="WA_AGENT_PAYMENT_MAX_ATTEMPTS"
    )
    bank_name: str = Field(default="Bank of Kigali", validation_alias="WA_AGENT_BANK_NAME")
    bank_account_name: str = Field(
        default="Inzira Bikes Ltd", validation_alias="WA_AGENT_BANK_ACCOUNT_NAME"
    )
    bank_account_number: str = Field(
        default="00040-0123456-78", validation_alias="WA_AGENT_BANK_ACCOUNT_NUMBER"
    )
    mobile_money_code: str | None = Field(
        default=None, validation_alias="WA_AGENT_MOBILE_MONEY_CODE"
    )
