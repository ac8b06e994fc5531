"""LangSmith tracing with the same masking as the logs, for every entry of the graph.

When `LANGSMITH_TRACING` is on, the process-wide LangSmith client is replaced by one
whose anonymizer runs `graph.privacy.mask_value` over every run's inputs, outputs,
error text and metadata before anything leaves the process: a trace shows `[email]`,
`[card]` and `********3456`, never the customer's data. When it is off, tracing is
switched off explicitly, so a stray `LANGCHAIN_TRACING_V2` in the environment cannot
send unmasked traces past the settings.

It lives in graph/, not server/, because the service (server/services.py) is not the
only process that traces: LangGraph Studio (`langgraph dev`, graph/composition/studio.py) runs the
graph in its own server and must mask alike. The deployment's extra PII patterns are
installed here too: logs and traces mask alike.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

import langsmith
import structlog

from graph.privacy import mask_value, set_extra_patterns
from graph.settings import Settings

log = structlog.get_logger(__name__)


def mask_trace(data: dict[str, Any]) -> dict[str, Any]:
    """The anonymizer: a run's inputs, outputs, error or metadata, masked.

    Identifiers (conversation, run, checkpoint ids: UUIDs) are kept whole: they are no
    one's personal data, and a `thread_id` with a digit run masked like a phone number
    would split one conversation's traces into several threads.
    """
    masked = _mask_keeping_ids(data)
    return masked if isinstance(masked, dict) else {}


def _mask_keeping_ids(value: Any, key: str | None = None) -> Any:
    if isinstance(value, str) and _is_uuid(value):
        return value
    if isinstance(value, Mapping):
        return {k: _mask_keeping_ids(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_mask_keeping_ids(v) for v in value]
    return mask_value(value, key)


def _is_uuid(text: str) -> bool:
    if len(text) != 36:
        return False
    try:
        return str(uuid.UUID(text)) == text.lower()
    except ValueError:
        return False


def configure_tracing(settings: Settings) -> langsmith.Client | None:
    """Install masking, and the masked LangSmith client when tracing is wanted."""
    set_extra_patterns(settings.pii_patterns)
    if not settings.langsmith_tracing:
        langsmith.configure(enabled=False)
        return None
    if settings.langsmith_api_key is None:
        log.warning(
            "tracing.disabled", reason="LANGSMITH_TRACING is on but LANGSMITH_API_KEY is unset"
        )
        langsmith.configure(enabled=False)
        return None
    client = langsmith.Client(
        api_url=settings.langsmith_endpoint,
        api_key=settings.langsmith_api_key.get_secret_value(),
        anonymizer=mask_trace,
    )
    if settings.langsmith_project:
        langsmith.configure(client=client, enabled=True, project_name=settings.langsmith_project)
    else:
        langsmith.configure(client=client, enabled=True)
    log.info("tracing.langsmith", endpoint=client.api_url, masking="graph.privacy.mask_value")
    return client


def flush_tracing(client: langsmith.Client | None, timeout_seconds: float = 5.0) -> None:
    """Send what is queued before the process ends (blocking; call from a thread)."""
    if client is None:
        return
    try:
        client.flush(timeout=timeout_seconds)
    except Exception as exc:
        log.warning("tracing.flush_failed", error=str(exc)[:200])
