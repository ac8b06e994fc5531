"""The service's side of LangSmith tracing: flushing what is queued before it exits.

The masked client itself is installed by `graph.infra.tracing.configure_tracing`, shared with
LangGraph Studio (graph/composition/studio.py); it is re-exported here for the service's start-up
(server/services.py), which calls it once per process.
"""

from __future__ import annotations

import langsmith
import structlog

from graph.infra.tracing import configure_tracing, mask_trace

__all__ = ["configure_tracing", "flush_tracing", "mask_trace"]

log = structlog.get_logger(__name__)


def flush_tracing(client: langsmith.Client | None, timeout_seconds: float = 5.0) -> None:
    """Send what is queued before the process ends (blocking; call from a thread)."""
    if client is None:
        return
    try:
        client.flush(timeout=timeout_seconds)
    except Exception as exc:
        log.warning("tracing.flush_failed", error=str(exc)[:200])
