"""A local HTTP server that speaks the parts of Meta's Graph API the service uses.

Why a real HTTP server rather than a mocked transport: the worker runs in other processes
in the end-to-end tests and benchmarks, and the point is to exercise the real client
(httpx, retries, timeouts, error parsing) end to end. All state lives in the
``FakeGraphAPI`` object and is guarded by one lock, so tests in this process can script
failures and inspect what was sent no matter which process made the requests::

    with FakeGraphAPI() as graph:
        client = WhatsAppClient(base_url=graph.base_url, access_token=graph.access_token,
                                phone_number_id="PNID")
        graph.fail_next(1, status=429, retry_after=0)
        await client.send_text("15550001", "hi")
        assert graph.texts_to("15550001") == ["hi"]
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections import deque
from collections.abc import Callable
from types import TracebackType

from tests.fakes.graph_http import (
    DEFAULT_CODES,
    JSON,
    Failure,
    GraphHandler,
    GraphServer,
)
from tests.fakes.graph_media import Media, MediaStore, Stream

__all__ = ["FakeGraphAPI"]


class FakeGraphAPI:
    """Graph API on 127.0.0.1:<ephemeral port>: messages, read receipts, media."""

    def __init__(self, *, access_token: str = "test-token", delay: float = 0.0) -> None:
        self.access_token = access_token
        # Numbers whose token is their own (another business of the deployment): a call
        # for one of them with any other token is refused, as Meta refuses it.
        self.number_tokens: dict[str, str] = {}
        self.delay = delay  # seconds added before every response
        self._condition = threading.Condition(threading.RLock())
        self._wamids = itertools.count(1)
        self._sent: list[JSON] = []
        self._read_receipts: list[JSON] = []
        self._requests: list[JSON] = []
        self._failures: deque[Failure] = deque()
        # An outage: every POST to /messages fails (or has its connection dropped) until then.
        self._outage_until = 0.0
        self._outage: Failure | None = None
        self._outage_receipts = True
        self._sends_open = threading.Event()
        self._sends_open.set()
        self._held = 0
        self.media = MediaStore()
        # The business account's message templates (tests/fakes/graph_templates.py);
        # while it has none, any template send is accepted unchecked.
        self.templates: list[JSON] = []
        self.templates_per_page = 100
        self._server: GraphServer | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle

    @property
    def base_url(self) -> str:
        if self._server is None:
            raise RuntimeError("FakeGraphAPI is not started")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> FakeGraphAPI:
        if self._server is not None:
            return self
        server = GraphServer(("127.0.0.1", 0), GraphHandler)
        server.fake = self
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, thread = self._server, self._thread
        self._server, self._thread = None, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join(timeout=5)

    def __enter__(self) -> FakeGraphAPI:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    # ------------------------------------------------------------------ scripting

    def fail_next(
        self,
        n: int = 1,
        *,
        status: int = 500,
        code: int | None = None,
        retry_after: float | None = None,
        title: str = "Scripted failure",
        details: str | None = None,
    ) -> None:
        """Make the next ``n`` POSTs to ``/messages`` fail with a Graph-style error."""
        failure = Failure(status, code, retry_after, title, details)
        with self._condition:
            self._failures.extend([failure] * n)

    def outage(
        self,
        seconds: float,
        *,
        status: int = 500,
        retry_after: float | None = None,
        drop: bool = False,
        receipts: bool = True,
    ) -> None:
        """For the next ``seconds``, every POST to ``/messages`` fails with ``status`` (and
        ``Retry-After``), or, with ``drop``, has its connection closed before any answer:
        the request may or may not have been delivered, as far as the client can tell.
        ``receipts=False`` lets read receipts through (only sends fail)."""
        status = 0 if drop else status
        failure = Failure(status, DEFAULT_CODES.get(status), retry_after, "Outage", None)
        with self._condition:
            self._outage = failure
            self._outage_until = time.monotonic() + seconds
            self._outage_receipts = receipts

    def end_outage(self) -> None:
        with self._condition:
            self._outage_until = 0.0

    def hold_sends(self) -> None:
        """Message sends (not read receipts) wait until ``release_sends``, then go on as
        if nothing happened: a client that gave up meanwhile never learns the result."""
        self._sends_open.clear()

    def release_sends(self) -> None:
        self._sends_open.set()

    @property
    def held_sends(self) -> int:
        """Requests waiting behind ``hold_sends`` right now."""
        with self._condition:
            return self._held

    def add_media(
        self,
        media_id: str,
        content: bytes,
        mime_type: str,
        *,
        filename: str | None = None,
        url: str | None = None,
        redirect_to: str | None = None,
        delay: float = 0.0,
    ) -> None:
        """A file the media lookup and download serve. `url`: the lookup names this URL
        instead of the fake's own download; `redirect_to`: the download answers 302 there;
        `delay`: seconds the download waits first."""
        self.media.add(media_id, Media(content, mime_type, filename, url, redirect_to, delay))

    def add_streamed_media(
        self,
        media_id: str,
        mime_type: str,
        *,
        total_bytes: int,
        content_length: int | None = None,
        file_size: int | None = None,
    ) -> None:
        """A download of `total_bytes` generated bytes, with the Content-Length header and
        declared `file_size` given (None: left out), true or not; see `media.bytes_sent`."""
        stream = Stream(total_bytes, content_length, file_size)
        self.media.add(media_id, Media(b"", mime_type, stream=stream))

    def reset(self) -> None:
        """Forget everything recorded and scripted (the token and port stay)."""
        with self._condition:
            self._sent.clear()
            self._read_receipts.clear()
            self._requests.clear()
            self._failures.clear()
            self.media.clear()
            self.templates.clear()
            self.delay = 0.0
            self._outage_until = 0.0
            self._held = 0
        self._sends_open.set()

    # ------------------------------------------------------------------ inspection

    @property
    def sent(self) -> list[JSON]:
        """Accepted outbound messages: the payload plus ``wamid``, ``phone_number_id``,
        ``received_at`` (``time.perf_counter()``) and ``received_at_wall`` (``time.time()``)."""
        with self._condition:
            return list(self._sent)

    @property
    def read_receipts(self) -> list[JSON]:
        with self._condition:
            return list(self._read_receipts)

    @property
    def requests(self) -> list[JSON]:
        """Every request seen, accepted or not: ``method``, ``path``, ``status``."""
        with self._condition:
            return list(self._requests)

    @property
    def message_attempts(self) -> int:
        """POSTs to ``/messages`` including failed ones: how many tries a send took."""
        with self._condition:
            return sum(
                1
                for request in self._requests
                if request["method"] == "POST" and request["path"].endswith("/messages")
            )

    def sent_to(self, wa_id: str) -> list[JSON]:
        with self._condition:
            return [message for message in self._sent if message.get("to") == wa_id]

    def texts_to(self, wa_id: str) -> list[str]:
        """What the customer would read, in arrival order: text bodies and the body text of
        interactive messages (other kinds are left out)."""
        texts: list[str] = []
        for message in self.sent_to(wa_id):
            if message.get("type") == "text":
                texts.append(str(message["text"]["body"]))
            elif message.get("type") == "interactive":
                texts.append(str(message["interactive"]["body"]["text"]))
        return texts

    def wait_for(
        self, predicate: Callable[[], bool], timeout: float = 5.0, *, what: str = ""
    ) -> bool:
        """Block until ``predicate()`` holds (re-checked on every request); for sync tests
        and threads. From a coroutine use :meth:`wait_for_async` so the loop keeps going."""
        with self._condition:
            if self._condition.wait_for(predicate, timeout=timeout):
                return True
        raise AssertionError(self._timeout_message(timeout, what or _describe(predicate)))

    async def wait_for_async(
        self, predicate: Callable[[], bool], within: float = 5.0, *, what: str = ""
    ) -> bool:
        """:meth:`wait_for` for coroutines: polls without blocking the event loop, which
        may be the one running the client under test."""
        deadline = time.monotonic() + within
        while True:
            with self._condition:
                if predicate():
                    return True
            if time.monotonic() >= deadline:
                raise AssertionError(self._timeout_message(within, what or _describe(predicate)))
            await asyncio.sleep(0.01)

    def _timeout_message(self, timeout: float, what: str) -> str:
        with self._condition:
            recipients = sorted({str(message.get("to")) for message in self._sent})
            return (
                f"FakeGraphAPI: {what} not met within {timeout}s; "
                f"{len(self._sent)} message(s) sent (to {recipients}), "
                f"{len(self._read_receipts)} read receipt(s), "
                f"{len(self._failures)} scripted failure(s) left"
            )

    # ------------------------------------------------------------ for the handler (GraphState)

    def log_request(self, method: str, path: str, status: int) -> None:
        with self._condition:
            self._requests.append({"method": method, "path": path, "status": status})
            self._condition.notify_all()

    def next_failure(self, receipt: bool = False) -> Failure | None:
        with self._condition:
            if self._failures:
                return self._failures.popleft()
            if receipt and not self._outage_receipts:
                return None
            if self._outage is not None and time.monotonic() < self._outage_until:
                return self._outage
            return None

    def wait_while_held(self, receipt: bool) -> None:
        if receipt or self._sends_open.is_set():
            return
        with self._condition:
            self._held += 1
            self._condition.notify_all()
        try:
            self._sends_open.wait()
        finally:
            with self._condition:
                self._held -= 1

    def record(self, phone_number_id: str, payload: JSON) -> str | None:
        """Keep an accepted POST: a read receipt, or a message (given a fresh wamid)."""
        stamped = {
            **payload,
            "phone_number_id": phone_number_id,
            "received_at": time.perf_counter(),
            "received_at_wall": time.time(),
        }
        with self._condition:
            wamid = None
            if payload.get("status") == "read":
                self._read_receipts.append(stamped)
            else:
                wamid = f"wamid.fake-{next(self._wamids)}"
                self._sent.append({**stamped, "wamid": wamid})
            self._condition.notify_all()
            return wamid

    def next_media_id(self, size: int) -> str:
        """An uploaded file's id: digits, as Meta's are."""
        with self._condition:
            return f"{next(self._wamids)}0{size}"


def _describe(predicate: Callable[[], bool]) -> str:
    return getattr(predicate, "__name__", "condition")
