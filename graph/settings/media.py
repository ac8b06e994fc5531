"""Media understanding and the code sandbox: documents, images, voice, code_interpreter.

A section of `graph.settings.Settings`, kept in its own module so that no settings
module grows past a screenful per concern; `Settings` inherits it, and code reads these
values from a `Settings` instance like every other knob.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

MEGABYTE = 1024 * 1024


class MediaSettings(BaseModel):
    """Fields here use `Field(default=..., validation_alias="ENV_NAME")` like Settings."""

    # --- media understanding (flags media_documents, media_images, media_voice) -------
    # Larger files are refused with a polite answer before they are downloaded.
    media_max_document_bytes: int = Field(
        default=10 * MEGABYTE, ge=1, validation_alias="WA_AGENT_MEDIA_MAX_DOCUMENT_BYTES"
    )
    media_max_image_bytes: int = Field(
        default=5 * MEGABYTE, ge=1, validation_alias="WA_AGENT_MEDIA_MAX_IMAGE_BYTES"
    )
    media_max_audio_bytes: int = Field(
        default=16 * MEGABYTE, ge=1, validation_alias="WA_AGENT_MEDIA_MAX_AUDIO_BYTES"
    )
    # A document's text beyond this many characters is cut (the agent is told so).
    media_document_chars: int = Field(
        default=12_000, ge=200, validation_alias="WA_AGENT_MEDIA_DOCUMENT_CHARS"
    )
    media_document_pages: int = Field(  # PDF pages read at most
        default=50, ge=1, validation_alias="WA_AGENT_MEDIA_DOCUMENT_PAGES"
    )
    # Describes photos; unset = WA_AGENT_MODEL (it must accept images, as gpt-4o-mini does).
    media_vision_model: str | None = Field(default=None, validation_alias="WA_AGENT_VISION_MODEL")
    # OpenAI transcription API; the base URL defaults to OPENAI_BASE_URL.
    media_transcription_model: str = Field(
        default="gpt-4o-mini-transcribe", validation_alias="WA_AGENT_TRANSCRIPTION_MODEL"
    )
    media_transcription_base_url: str | None = Field(
        default=None, validation_alias="WA_AGENT_TRANSCRIPTION_BASE_URL"
    )
    media_timeout_seconds: float = Field(  # per attempt of a vision or transcription call
        default=30.0, gt=0, validation_alias="WA_AGENT_MEDIA_TIMEOUT_S"
    )
    media_max_retries: int = Field(default=2, ge=0, validation_alias="WA_AGENT_MEDIA_MAX_RETRIES")
    # Media read per run (the messages a turn answers together), in arrival order; the
    # agent is told the others were not read. Five covers a customer showing a problem
    # (the item, its label, the receipt, the error screen) while one burst of photos
    # cannot turn into dozens of paid model calls and a reply minutes late.
    media_max_per_run: int = Field(
        default=5, ge=1, le=50, validation_alias="WA_AGENT_MEDIA_MAX_PER_RUN"
    )
    # Media read at once per service process, over all conversations: each holds its file
    # in memory (up to the limits above, a photo twice as base64) and a model call.
    media_concurrency: int = Field(
        default=3, ge=1, le=32, validation_alias="WA_AGENT_MEDIA_CONCURRENCY"
    )

    # --- code_interpreter sandbox (flag code_interpreter) --------------------------------
    sandbox_wall_seconds: float = Field(
        default=10.0, gt=0, le=120, validation_alias="WA_AGENT_SANDBOX_WALL_S"
    )
    sandbox_cpu_seconds: int = Field(
        default=5, ge=1, le=60, validation_alias="WA_AGENT_SANDBOX_CPU_S"
    )
    sandbox_memory_mb: int = Field(
        default=256, ge=64, le=4096, validation_alias="WA_AGENT_SANDBOX_MEMORY_MB"
    )
    sandbox_max_processes: int = Field(  # per run, all its processes together
        default=16, ge=4, le=1024, validation_alias="WA_AGENT_SANDBOX_MAX_PROCESSES"
    )
    # A run's CPU bandwidth, in cores, whatever it forks (needs a control group).
    sandbox_cpu_cores: float = Field(
        default=0.5, ge=0.01, le=64, validation_alias="WA_AGENT_SANDBOX_CPU_CORES"
    )
    # Runs at once per service process; more wait for a free slot.
    sandbox_concurrency: int = Field(
        default=2, ge=1, le=64, validation_alias="WA_AGENT_SANDBOX_CONCURRENCY"
    )
    # Where each run's control group is made: "auto" (under the service's own group),
    # "off" (none: per-process limits and fewer processes only), or the path of a
    # delegated cgroup v2 directory (e.g. one systemd made with Delegate=yes).
    sandbox_cgroup: str = Field(default="auto", validation_alias="WA_AGENT_SANDBOX_CGROUP")
    sandbox_output_chars: int = Field(
        default=4000, ge=100, validation_alias="WA_AGENT_SANDBOX_OUTPUT_CHARS"
    )
    # The interpreter inside the sandbox: a system Python whose prefix (here /usr) any
    # user may read, as the sandbox runs unprivileged.
    sandbox_python: str = Field(
        default="/usr/bin/python3", validation_alias="WA_AGENT_SANDBOX_PYTHON"
    )
