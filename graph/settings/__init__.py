"""Every knob of the service, read once from the environment and `.env`.

Nothing else in the code base reads `os.environ`: components receive the values they
need from here, which keeps tests free to build as many differently configured
instances as they like in one process.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from graph.settings.console import ConsoleSettings
from graph.settings.http import HttpSecuritySettings
from graph.settings.media import MediaSettings
from graph.settings.outcomes import OutcomeSettings
from graph.settings.retention import RetentionSettings
from graph.settings.tools import ToolSettings
from graph.settings.tracing import TracingSettings


class Settings(
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

    Later capabilities keep their knobs in section classes (graph/settings_*.py) that
    this class inherits, so each concern's settings stay in one short module.
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
    # None disables server-side prepared statements, which PgBouncer in transaction mode needs.
    db_prepare_threshold: int | None = Field(
        default=5, validation_alias="WA_AGENT_DB_PREPARE_THRESHOLD"
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
    worker_concurrency: int = Field(
        default=16, ge=1, validation_alias="WA_AGENT_WORKER_CONCURRENCY"
    )
    # CPU priority (Unix nice) of `wa-agent worker` processes: on a machine they share
    # with `serve` and Postgres, the webhook — which Meta times — gets the CPU first;
    # a turn waits on its model far longer than on a busy core. 0 = same as the rest.
    worker_nice: int = Field(default=10, ge=0, le=19, validation_alias="WA_AGENT_WORKER_NICE")
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
    whatsapp_api_version: str = Field(default="v23.0", validation_alias="WHATSAPP_API_VERSION")
    whatsapp_timeout_seconds: float = Field(
        default=10.0, gt=0, validation_alias="WHATSAPP_TIMEOUT_S"
    )

    # --- memory ----------------------------------------------------------------------
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

    # --- business tools --------------------------------------------------------------
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

    # --- search / research (tools come in a later issue) -----------------------------
    tavily_api_key: SecretStr | None = Field(default=None, validation_alias="TAVILY_API_KEY")
    tavily_base_url: str | None = Field(default=None, validation_alias="TAVILY_BASE_URL")
    perplexity_api_key: SecretStr | None = Field(
        default=None, validation_alias="PERPLEXITY_API_KEY"
    )
    perplexity_base_url: str | None = Field(default=None, validation_alias="PERPLEXITY_BASE_URL")

    # --- abuse protection & security ---------------------------------------------------
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

    @staticmethod
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
            rule = (int(count), cls.duration_seconds(window))
            if min(rule) < 1:
                raise ValueError(f"a rate limit needs a count and a window: {part!r}")
            rules.append(rule)
        return tuple(rules)

    @field_validator("block_durations", mode="before")
    @classmethod
    def _parse_block_durations(cls, raw: object) -> object:
        if isinstance(raw, str):
            return tuple(cls.duration_seconds(p) for p in raw.split(",") if p.strip())
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
