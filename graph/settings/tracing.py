"""Streaming, Studio, LangSmith metadata and replay.

A section of `graph.settings.Settings`, kept in its own module so that no settings
module grows past a screenful per concern; `Settings` inherits it, and code reads these
values from a `Settings` instance like every other knob.
"""

from __future__ import annotations

from pydantic import BaseModel, Field, SecretStr


class TracingSettings(BaseModel):
    """Fields here use `Field(default=..., validation_alias="ENV_NAME")` like Settings."""

    # What traces carry as `app_version`; unset = the installed package's version.
    # Deployments set it to their image tag or git revision.
    app_version: str | None = Field(default=None, validation_alias="WA_AGENT_APP_VERSION")
    # A token for `POST /v1/conversations/{id}/stream` only (a web chat's backend), so
    # it needs no admin token; admin tokens are accepted there too.
    stream_api_token: SecretStr | None = Field(
        default=None, validation_alias="WA_AGENT_STREAM_API_TOKEN"
    )
    # How long a streamed turn (SSE) waits for a running turn of the same conversation
    # to finish before it answers with an error event.
    stream_wait_seconds: float = Field(
        default=30.0, ge=0, validation_alias="WA_AGENT_STREAM_WAIT_S"
    )
    # Partial delivery (flag `partial_delivery`): at most this many WhatsApp messages per
    # answer, each at least this many characters except the last, cut at paragraphs.
    partial_max_parts: int = Field(
        default=3, ge=2, le=10, validation_alias="WA_AGENT_PARTIAL_MAX_PARTS"
    )
    partial_min_chars: int = Field(
        default=280, ge=1, le=4000, validation_alias="WA_AGENT_PARTIAL_MIN_CHARS"
    )
    # Later parts wait for this much text, so that three messages carry a long answer
    # (each WhatsApp text holds at most 4,096 characters).
    partial_later_chars: int = Field(
        default=2000, ge=1, le=4000, validation_alias="WA_AGENT_PARTIAL_LATER_CHARS"
    )
    # Seconds between two parts to the same customer (WhatsApp's per-user pacing, 131056).
    partial_min_interval_seconds: float = Field(
        default=1.0, ge=0, validation_alias="WA_AGENT_PARTIAL_INTERVAL_S"
    )
