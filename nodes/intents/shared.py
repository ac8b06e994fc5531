"""The process's one request reader, built on first use when the graph was composed
without one.

The composition should hand the menu the service's own intent router (one fitted
classifier per process, its example vectors cached under the data directory). Until it
does, the menu builds this reader itself: the same examples and classifier over the
process's shared local MiniLM model, fitted once, in a worker thread, on the first typed
message (seconds) and shared by every graph and conversation after that.
"""

from __future__ import annotations

import threading

import structlog

from graph.infra.embeddings import shared_local_minilm
from nodes.intents.days import DayReader
from nodes.intents.language import LanguageGuesser
from nodes.intents.reader import LocalRouter, RequestReader
from nodes.routing import IntentRouter

log = structlog.get_logger(__name__)

_lock = threading.Lock()
_reader: RequestReader | None = None


def reader_over(router: LocalRouter, by_language: dict[str, tuple[str, ...]]) -> RequestReader:
    """A reader for `router`, its language guess fitted on the examples by language."""
    days = DayReader()
    days.warm_up()
    return RequestReader(router, LanguageGuesser(by_language), days)


_started = threading.Event()


def ready_shared_reader() -> RequestReader | None:
    """The shared reader, or None while it is being fitted in a background thread (the
    first call starts that): nobody waits for it."""
    if _reader is None and not _started.is_set():
        _started.set()
        threading.Thread(target=_fit_quietly, name="menu-reader", daemon=True).start()
    return _reader


def _fit_quietly() -> None:
    try:
        shared_reader()
    except Exception as exc:  # typed words keep getting the topic menu; say why once
        log.error("menu.reader_failed", error_type=type(exc).__name__, error=str(exc)[:300])


def shared_reader() -> RequestReader:
    """Blocking (seconds the first time): call it from a worker thread."""
    global _reader
    with _lock:
        if _reader is None:
            router = IntentRouter.create(shared_local_minilm())
            _reader = reader_over(router, dict(router.examples.by_language))
            log.info("menu.reader_ready", languages=sorted(router.examples.by_language))
        return _reader
