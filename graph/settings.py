"""Every knob of the service, read once from the environment and `.env`.

Nothing else in the code base reads `os.environ`: components receive the values they
need from here, which keeps tests free to build as many differently configured
instances as they like in one process.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class Settings(BaseSettings):
    """Configuration names are a stable interface (see DESIGN.md): do not rename them."""

    # `NAME=` in .env means "not set", as .env.example lists every name empty.
    model_config = SettingsConfigDict(
        env_file=".env", extra="ignore", populate_by_name=True, env_ignore_empty=True
    )

    # --- storage -------------------------------------------------------------------
    database_url: str | None = Field(default=None, validation_alias="DATABASE_URL")
    data_dir: Path = Field(default=Path(".data"), validation_alias="WA_AGENT_DATA_DIR")
    db_pool_min_size: int = Field(default=2, ge=1, validation_alias="WA_AGENT_DB_POOL_MIN")
    db_pool_max_size: int = Field(default=20, ge=1, validation_alias="WA_AGENT_DB_POOL_MAX")
    # None disables server-side prepared statements, which PgBouncer in transaction mode needs.
    db_prepare_threshold: int | None = Field(
        default=5, validation_alias="WA_AGENT_DB_PREPARE_THRESHOLD"
    )
    redis_url: str | None = Field(default=None, validation_alias="REDIS_URL")

    # --- web server ----------------------------------------------------------------
    host: str = Field(default="127.0.0.1", validation_alias="HOST")
    port: int = Field(default=8000, validation_alias="PORT")
    max_body_bytes: int = Field(default=1_048_576, validation_alias="WA_AGENT_MAX_BODY_BYTES")
    admin_token: SecretStr | None = Field(default=None, validation_alias="ADMIN_TOKEN")

    # --- worker --------------------------------------------------------------------
    in_process_worker: bool = Field(default=True, validation_alias="WA_AGENT_IN_PROCESS_WORKER")
    worker_concurrency: int = Field(
        default=16, ge=1, validation_alias="WA_AGENT_WORKER_CONCURRENCY"
    )
    # Double texting: wait this long after the newest message before answering, so
    # "hi" / "I want to book" / "for Saturday" become one turn.
    coalesce_window_ms: int = Field(default=1000, ge=0, validation_alias="WA_AGENT_COALESCE_MS")
    job_max_attempts: int = Field(default=5, ge=1, validation_alias="WA_AGENT_JOB_MAX_ATTEMPTS")
    worker_heartbeat_seconds: float = Field(
        default=10.0, gt=0, validation_alias="WA_AGENT_WORKER_HEARTBEAT_S"
    )
    # Retried and rescheduled jobs raise no notification: workers poll for them.
    queue_poll_seconds: float = Field(default=1.0, gt=0, validation_alias="WA_AGENT_QUEUE_POLL_S")
    stalled_job_seconds: float = Field(
        default=30.0, gt=0, validation_alias="WA_AGENT_STALLED_JOB_S"
    )

    # --- model ---------------------------------------------------------------------
    openai_api_key: SecretStr | None = Field(default=None, validation_alias="OPENAI_API_KEY")
    openai_base_url: str | None = Field(default=None, validation_alias="OPENAI_BASE_URL")
    model: str = Field(default="openai:gpt-4o-mini", validation_alias="WA_AGENT_MODEL")
    embeddings: str = Field(default="local:minilm", validation_alias="WA_AGENT_EMBEDDINGS")
    model_timeout_seconds: float = Field(
        default=30.0, gt=0, validation_alias="WA_AGENT_MODEL_TIMEOUT_S"
    )
    model_max_retries: int = Field(default=2, ge=0, validation_alias="WA_AGENT_MODEL_MAX_RETRIES")
    business_name: str = Field(default="our business", validation_alias="WA_AGENT_BUSINESS_NAME")

    # --- WhatsApp ------------------------------------------------------------------
    whatsapp_access_token: SecretStr | None = Field(
        default=None, validation_alias="WHATSAPP_ACCESS_TOKEN"
    )
    whatsapp_phone_number_id: str | None = Field(
        default=None, validation_alias="WHATSAPP_PHONE_NUMBER_ID"
    )
    whatsapp_app_secret: SecretStr | None = Field(
        default=None, validation_alias="WHATSAPP_APP_SECRET"
    )
    whatsapp_verify_token: SecretStr | None = Field(
        default=None, validation_alias="WHATSAPP_VERIFY_TOKEN"
    )
    whatsapp_api_base_url: str = Field(
        default="https://graph.facebook.com", validation_alias="WHATSAPP_API_BASE_URL"
    )
    whatsapp_api_version: str = Field(default="v23.0", validation_alias="WHATSAPP_API_VERSION")
    whatsapp_timeout_seconds: float = Field(
        default=10.0, gt=0, validation_alias="WHATSAPP_TIMEOUT_S"
    )

    # --- search / research (tools come in a later issue) -----------------------------
    tavily_api_key: SecretStr | None = Field(default=None, validation_alias="TAVILY_API_KEY")
    tavily_base_url: str | None = Field(default=None, validation_alias="TAVILY_BASE_URL")
    perplexity_api_key: SecretStr | None = Field(
        default=None, validation_alias="PERPLEXITY_API_KEY"
    )
    perplexity_base_url: str | None = Field(default=None, validation_alias="PERPLEXITY_BASE_URL")

    # --- observability ---------------------------------------------------------------
    langsmith_tracing: bool = Field(
        default=False, validation_alias=AliasChoices("LANGSMITH_TRACING", "LANGCHAIN_TRACING_V2")
    )
    langsmith_api_key: SecretStr | None = Field(default=None, validation_alias="LANGSMITH_API_KEY")
    langsmith_endpoint: str | None = Field(default=None, validation_alias="LANGSMITH_ENDPOINT")
    langsmith_project: str | None = Field(default=None, validation_alias="LANGSMITH_PROJECT")
    flags: Annotated[frozenset[str], NoDecode] = Field(
        default=frozenset(), validation_alias="WA_AGENT_FLAGS"
    )
    log_level: str = Field(default="INFO", validation_alias="LOG_LEVEL")
    log_format: Literal["json", "console"] = Field(default="console", validation_alias="LOG_FORMAT")

    @field_validator("db_prepare_threshold", mode="before")
    @classmethod
    def _none_disables_prepare(cls, raw: object) -> object:
        if isinstance(raw, str) and raw.strip().lower() in {"none", "off", "disabled"}:
            return None
        return raw

    @field_validator("flags", mode="before")
    @classmethod
    def _split_flags(cls, raw: object) -> object:
        """`WA_AGENT_FLAGS=a,b` reads better in an env file than a JSON list."""
        if isinstance(raw, str):
            return frozenset(part.strip() for part in raw.split(",") if part.strip())
        return raw

    @property
    def model_configured(self) -> bool:
        """A model is usable when it has a key, or a base URL of a keyless local server."""
        return self.openai_api_key is not None or self.openai_base_url is not None

    @property
    def embedded_data_dir(self) -> Path:
        return self.data_dir / "postgres"

    def flag(self, name: str) -> bool:
        return name in self.flags


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings; tests build `Settings(...)` directly instead."""
    return Settings()
