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

from graph.settings.abuse import AbuseSettings
from graph.settings.business import BusinessSettings
from graph.settings.console import ConsoleSettings
from graph.settings.http import HttpSecuritySettings
from graph.settings.media import MediaSettings
from graph.settings.memory import MemorySettings
from graph.settings.outcomes import OutcomeSettings
from graph.settings.retention import RetentionSettings
from graph.settings.tools import ToolSettings
from graph.settings.tracing import TracingSettings


class Settings(
    MemorySettings,
    BusinessSettings,
    AbuseSettings,
    ToolSettings,
    MediaSettings,
    ConsoleSettings,
    TracingSettings,
    OutcomeSettings,
    RetentionSettings,
    HttpSecuritySettings,
    BaseSettings,
):
    """Configuration names are a stable interface (see DESIGN.md): do not rename them.

    Each concern keeps its knobs in a section class of its own module in this package,
    which this class inherits; the storage, server, worker, model, routing, WhatsApp
    and observability knobs every process reads stay here.
    """

    # `NAME=` in .env means "not set", as .env.example lists every name empty.
    model_config = SettingsConfigDict(
        env_file=".env", extra="ignore", populate_by_name=True, env_ignore_empty=True
    )

    # --- storage -------------------------------------------------------------------
    database_url: str | None = Field(default=None, validation_alias="DATABASE_URL")
    data_dir: Path = Field(default=Path(".data"), validation_alias="WA_AGENT_DATA_DIR")
    db_pool_min_size: int = Field(default=2, ge=1, validation_alias="WA_AGENT_DB_POOL_MIN")
    db_pool_max_size: int = Field(default=20, ge=1, validation_alias="WA_AGENT_DB_POOL_MAX")
    # Executions of a statement on a connection before it is prepared server-side. 0:
    # at its first, since ours are few and fixed; at psycopg's 5, a pool of connections
    # parsed most statements anew for hours at a small shop's traffic (and a third of
    # them under a ten-second load test). None disables server-side prepared
    # statements, which PgBouncer in transaction mode needs.
    db_prepare_threshold: int | None = Field(
        default=0, ge=0, validation_alias="WA_AGENT_DB_PREPARE_THRESHOLD"
    )
    # Connections idle longer than this are checked with a round trip before use.
    db_check_idle_seconds: float = Field(
        default=5.0, ge=0, validation_alias="WA_AGENT_DB_CHECK_IDLE_S"
    )
    redis_url: str | None = Field(default=None, validation_alias="REDIS_URL")

    # --- web server ----------------------------------------------------------------
    host: str = Field(default="127.0.0.1", validation_alias="HOST")
    port: int = Field(default=8000, validation_alias="PORT")
    max_body_bytes: int = Field(default=1_048_576, validation_alias="WA_AGENT_MAX_BODY_BYTES")
    admin_token: SecretStr | None = Field(default=None, validation_alias="ADMIN_TOKEN")

    # --- worker --------------------------------------------------------------------
    # `wa-agent serve` starts this many `wa-agent worker` processes and keeps them
    # running: "auto" is one per core; 0 runs the worker inside `serve` (one process).
    worker_processes: str = Field(default="auto", validation_alias="WA_AGENT_WORKER_PROCESSES")
    # Turns one worker process keeps in flight. A turn mostly waits on its model, so a
    # process needs about turns/s × model seconds per turn of them: 32 carry 16 turns/s
    # at two seconds a turn. More is worse when the CPU is the limit: interleaved turns
    # each take longer (at 64, a 300/s flood from 500 customers got a third of the
    # answers). Waiting turns hold no database connection.
    worker_concurrency: int = Field(
        default=32, ge=1, validation_alias="WA_AGENT_WORKER_CONCURRENCY"
    )
    # CPU priority (Unix nice) of `wa-agent worker` processes, `serve`'s own included:
    # on a machine they share with `serve` and Postgres, the webhook — which Meta times —
    # gets the CPU first; a turn waits on its model far longer than on a busy core. With
    # two workers on two cores, webhook p99 at 300/s: 78 ms at 0, 30–41 ms at 10, 18–27
    # ms at 19 (docs/performance.md); the workers still take every idle cycle. 0 = as the rest.
    worker_nice: int = Field(default=19, ge=0, le=19, validation_alias="WA_AGENT_WORKER_NICE")
    # Double texting: 0 (the default) answers at once, and messages that come while the
    # model thinks, before any of the reply went out, are answered together with the
    # first (the run goes again from where it started). A window > 0 waits that long
    # after the newest message before answering, for businesses that prefer it.
    coalesce_window_ms: int = Field(default=0, ge=0, validation_alias="WA_AGENT_COALESCE_MS")
    job_max_attempts: int = Field(default=5, ge=1, validation_alias="WA_AGENT_JOB_MAX_ATTEMPTS")
    worker_heartbeat_seconds: float = Field(
        default=10.0, gt=0, validation_alias="WA_AGENT_WORKER_HEARTBEAT_S"
    )
    # Retried and rescheduled jobs raise no notification: workers poll for them.
    queue_poll_seconds: float = Field(default=1.0, gt=0, validation_alias="WA_AGENT_QUEUE_POLL_S")
    stalled_job_seconds: float = Field(
        default=30.0, gt=0, validation_alias="WA_AGENT_STALLED_JOB_S"
    )
    # A run that failed waits 1, 2, 4… seconds before its next attempt, never longer than this.
    retry_max_seconds: float = Field(default=30.0, gt=0, validation_alias="WA_AGENT_RETRY_MAX_S")
    # A reply Meta keeps refusing (429/5xx) is retried until it is this old, then failed:
    # past the 24-hour customer-service window only templates may be sent anyway.
    send_give_up_hours: float = Field(
        default=24.0, gt=0, validation_alias="WA_AGENT_SEND_GIVE_UP_H"
    )
    # How often each worker looks for stalled or orphaned jobs and unanswered messages.
    heal_interval_seconds: float = Field(
        default=10.0, gt=0, validation_alias="WA_AGENT_HEAL_INTERVAL_S"
    )
    # The webhook answers 503 (Meta delivers again later) when storing takes longer.
    webhook_db_timeout_seconds: float = Field(
        default=1.5, gt=0, validation_alias="WA_AGENT_WEBHOOK_DB_TIMEOUT_S"
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
    # The language of the service's notices to a customer whose language is not known
    # yet (a code of prompts/notices/).
    default_language: str = Field(
        default="en", pattern=r"^[a-z]{2,3}$", validation_alias="WA_AGENT_DEFAULT_LANGUAGE"
    )

    # --- routing -------------------------------------------------------------------
    # Vector size of WA_AGENT_EMBEDDINGS when its name does not imply one (a model on an
    # OpenAI-compatible server); for OpenAI's text-embedding-3 models it shortens them.
    embeddings_dimensions: int | None = Field(
        default=None, ge=1, validation_alias="WA_AGENT_EMBEDDINGS_DIMENSIONS"
    )
    # The local intent classifier decides without an LLM call from this confidence on.
    router_threshold: float = Field(
        default=0.49, ge=0.0, le=1.0, validation_alias="WA_AGENT_ROUTER_THRESHOLD"
    )
    # Confidence another intent needs to take the conversation from the active agent.
    router_switch_threshold: float = Field(
        default=0.69, ge=0.0, le=1.0, validation_alias="WA_AGENT_ROUTER_SWITCH_THRESHOLD"
    )
    # When the classifier is unsure, the agent in charge (else customer service) answers
    # and hands over if it must: one model call per plain turn, where asking the model
    # to route first cost a second on every unsure message. On: ask the model first.
    router_llm: bool = Field(default=False, validation_alias="WA_AGENT_ROUTER_LLM")
    router_llm_timeout_seconds: float = Field(
        default=8.0, gt=0, validation_alias="WA_AGENT_ROUTER_LLM_TIMEOUT_S"
    )

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
    # The WhatsApp Business Account whose message templates are listed
    # (server/outcomes/template_catalog.py); without it they are declared in a file.
    whatsapp_business_account_id: str | None = Field(
        default=None, validation_alias="WHATSAPP_BUSINESS_ACCOUNT_ID"
    )
    templates_file: Path | None = Field(default=None, validation_alias="WA_AGENT_TEMPLATES_FILE")
    whatsapp_api_version: str = Field(default="v23.0", validation_alias="WHATSAPP_API_VERSION")
    whatsapp_timeout_seconds: float = Field(
        default=10.0, gt=0, validation_alias="WHATSAPP_TIMEOUT_S"
    )

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
