"""structlog set-up: JSON or console, and nothing leaves unmasked.

Two kinds of log lines reach stderr: our own (structlog) and the libraries' (the
standard `logging` module: procrastinate, uvicorn, httpx...). Both go through
`mask_event`; a library's message is masked too, because libraries write what they
were given into it (procrastinate's "Job ... ended" line repeats the job's arguments,
an operator's reply text among them).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog
from structlog.typing import Processor

from graph.privacy import mask_text, mask_value
from graph.settings import Settings

# Our event names, the renderer's own fields, and ProcessorFormatter's bookkeeping
# (`_record` must stay a LogRecord for the formatter to finish its work).
_NOT_MASKED = frozenset({"event", "timestamp", "level", "logger", "_record", "_from_structlog"})


def mask_event(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Every field is masked, whatever its name: a caller may put anything in it."""
    for key, value in list(event.items()):
        if key not in _NOT_MASKED:
            event[key] = mask_value(value, key)
    return event


def mask_foreign_event(
    logger: Any, method: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """`mask_event` for a standard-library record, whose `event` is a free-text message
    rather than one of our event names."""
    message = event.get("event")
    if isinstance(message, str):
        event["event"] = mask_text(message)
    return mask_event(logger, method, event)


def configure_logging(settings: Settings) -> None:
    """Configure both structlog and the standard library onto stderr.

    Libraries log at WARNING and above only, whatever LOG_LEVEL says below that: their
    INFO lines (a line per job, per request) would drown ours.
    """
    level = logging.getLevelNamesMapping().get(settings.log_level.upper(), logging.INFO)
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if settings.log_format == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    shared: list[Processor] = [
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
    ]
    structlog.configure(
        processors=[structlog.contextvars.merge_contextvars, *shared, mask_event, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared, mask_foreign_event],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    logging.basicConfig(level=max(level, logging.WARNING), handlers=[handler], force=True)
