"""A local OpenAI chat-completions/embeddings server for tests and benchmarks.

Why an HTTP fake rather than langchain_core's fake chat models: those raise on
`bind_tools` and misbehave under `stream_mode="messages"` (see /work/shared/STACK.md, "Models in
tests"), and worker subprocesses cannot share an in-process fake. Pointing the real
`ChatOpenAI(base_url=server.base_url + "/v1", api_key="sk-test")` at this server exercises
the real SDK path (retries, SSE parsing, tool-call deltas, usage) with no network.

All behaviour is driven from the `FakeOpenAIServer` object in the test process, so it also
applies to requests coming from other processes. Typical use::

    with FakeOpenAIServer() as server:
        server.script(ToolCall("lookup", {"q": "x"}), "done")
        llm = ChatOpenAI(base_url=server.base_url + "/v1", api_key="sk-test")
        ...
        assert server.requests[-1]["messages"][-1]["role"] == "tool"

`usage_mode="openai"` reports usage as OpenAI does (o200k token counts, automatic prompt
caching in `cached_tokens`; tests/fakes/openai_usage.py); the default keeps the cheap
~4 characters/token estimate that existing tests compute against. `responder` answers
what is not scripted, from the request itself (benchmarks that script by request kind).
"""

from __future__ import annotations

import collections
import itertools
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Literal

from tests.fakes.openai_http import OpenAIHandler, OpenAIHTTPServer
from tests.fakes.openai_media import FakeTranscriptions
from tests.fakes.openai_stream import (
    JSON,
    Error,
    Exchange,
    Reply,
    Responder,
    Scripted,
    ToolCall,
    completion_body,
    default_reply,
)
from tests.fakes.openai_usage import PromptCache, default_tokenizer, openai_usage

__all__ = ["Error", "Exchange", "FakeOpenAIServer", "ToolCall"]

_POLL = 0.05  # how often a held/delayed request checks that its client is still there


class FakeOpenAIServer:
    """Scriptable OpenAI-compatible server on 127.0.0.1:<ephemeral port>.

    Scripted responses are consumed one per chat request, *after* any `hold()` gate and
    `delay`, and a request whose client disconnected while waiting consumes nothing: a
    test that kills a worker mid-"thinking" still gets its scripted reply on the retry.
    Embeddings are never held, delayed, failed or scripted.
    """

    def __init__(
        self,
        api_key: str | None = "sk-test",
        retry_after_ms: float | None = 5.0,
        *,
        usage_mode: Literal["estimate", "openai"] = "estimate",
        prompt_cache: PromptCache | None = None,
    ):
        self.api_key = api_key  # None disables the Authorization check
        # "openai": o200k counts and cached prefixes (`prompt_cache`, shared by every
        # request, whichever process sent it); "estimate": ~4 chars/token, nothing cached.
        self.usage_mode = usage_mode
        self.prompt_cache = prompt_cache or PromptCache()
        # Called for a chat request no scripted reply is waiting for; None = the default.
        self.responder: Responder | None = None
        # Every answered chat request with its usage, in the order they were answered.
        self.exchanges: list[Exchange] = []
        # Sent as `retry-after-ms` on scripted errors so SDK retries take ms, not ~1 s.
        self.retry_after_ms = retry_after_ms
        self.delay: float = 0.0
        self.requests: list[JSON] = []
        self.embedding_requests: list[JSON] = []
        # The `usage` object of every non-streamed completion answered, in order.
        self.usages: list[JSON] = []
        # Seconds between streamed chunks (one word each): 0.02 is a model writing
        # 50 tokens/s. `streams_done`: perf_counter() as each stream's last chunk left.
        self.stream_interval: float = 0.0
        self.streams_done: list[float] = []
        # Set: streams break off (connection closed) after this many chunks.
        self.stream_cut_after: int | None = None
        # POST /v1/audio/transcriptions (tests/fakes/openai_media.py).
        self.transcriptions = FakeTranscriptions()
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        self._gate = threading.Event()
        self._gate.set()
        self._queue: collections.deque[Scripted] = collections.deque()
        self._fail_remaining = 0
        self._fail_status = 500
        self._outage_until = 0.0
        self._outage_status = 500
        self._waiting = 0
        self._seq = itertools.count(1)
        self._httpd: OpenAIHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> FakeOpenAIServer:
        """Bind an ephemeral port and serve from a daemon thread; idempotent."""
        if self._httpd is None:
            self._httpd = OpenAIHTTPServer(("127.0.0.1", 0), OpenAIHandler)
            self._httpd.fake = self
            self._thread = threading.Thread(
                target=self._httpd.serve_forever,
                kwargs={"poll_interval": 0.05},
                name="fake-openai",
                daemon=True,
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        """Release held requests, stop accepting, and close the listening socket."""
        self._gate.set()
        httpd, self._httpd = self._httpd, None
        if httpd is not None:
            httpd.shutdown()
            httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> FakeOpenAIServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        """`http://127.0.0.1:PORT`, without `/v1` (clients append it)."""
        if self._httpd is None:
            raise RuntimeError("FakeOpenAIServer is not started")
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    # -- scripting -------------------------------------------------------------------

    def script(self, *responses: str | ToolCall | list[ToolCall] | Error) -> None:
        """Queue replies, one per chat request: text, tool call(s), or an HTTP error."""
        normalised: list[Scripted] = []
        for response in responses:
            if isinstance(response, ToolCall):
                normalised.append([response])
            elif isinstance(response, list | tuple):
                if not all(isinstance(item, ToolCall) for item in response):
                    raise TypeError(f"a scripted list must hold only ToolCall: {response!r}")
                normalised.append(list(response))
            elif isinstance(response, str | Error):
                normalised.append(response)
            else:
                raise TypeError(f"cannot script {type(response).__name__}: {response!r}")
        with self._lock:
            self._queue.extend(normalised)

    def fail_next(self, n: int = 1, status: int = 500) -> None:
        """Answer the next `n` chat requests with `status`, before any scripted reply."""
        with self._lock:
            self._fail_remaining = n
            self._fail_status = status

    def outage(self, seconds: float, status: int = 500) -> None:
        """Answer every chat request with `status` for the next `seconds` (a provider
        incident); `status=0` hangs each request up without an answer instead."""
        with self._lock:
            self._outage_until = time.monotonic() + seconds
            self._outage_status = status

    def hold(self) -> None:
        """Make chat requests wait (after being recorded) until `release()`."""
        self._gate.clear()

    def release(self) -> None:
        """Let held and future chat requests through."""
        self._gate.set()

    @property
    def waiting(self) -> int:
        """How many chat requests are currently blocked by `hold()`."""
        with self._lock:
            return self._waiting

    @property
    def pending(self) -> int:
        """Scripted replies not consumed yet (assert 0 to prove a script was used up)."""
        with self._lock:
            return len(self._queue)

    def wait_for_requests(self, n: int, timeout: float = 5.0) -> None:
        """Block until at least `n` chat requests arrived (held ones count)."""
        with self._arrived:
            if not self._arrived.wait_for(lambda: len(self.requests) >= n, timeout):
                raise AssertionError(
                    f"expected {n} chat requests within {timeout}s, got {len(self.requests)}"
                )

    def reset(self) -> None:
        """Forget script, failures, delay, hold and recorded requests (for shared servers)."""
        self._gate.set()
        with self._lock:
            self._queue.clear()
            self._fail_remaining = 0
            self._outage_until = 0.0
            self.delay = 0.0
            self.requests.clear()
            self.embedding_requests.clear()
            self.usages.clear()
            self.stream_interval = 0.0
            self.streams_done.clear()
            self.stream_cut_after = None
            self.exchanges.clear()
            self.responder = None
        self.prompt_cache.clear()
        self.transcriptions.reset()

    # -- used by the request handler threads (tests/fakes/openai_http.py) ------------

    def authorized(self, header: str | None) -> bool:
        return self.api_key is None or header == f"Bearer {self.api_key}"

    def record_chat(self, body: JSON) -> int:
        with self._arrived:
            self.requests.append(body)
            self._arrived.notify_all()
            return next(self._seq)

    def record_embedding(self, body: JSON) -> None:
        with self._lock:
            self.embedding_requests.append(body)

    def wait_turn(self, client_gone: Callable[[], bool]) -> bool:
        """Apply hold() and delay; False when the client hung up meanwhile."""
        waited = False
        if not self._gate.is_set():
            waited = True
            with self._lock:
                self._waiting += 1
            try:
                while not self._gate.wait(_POLL):
                    if client_gone():
                        return False
            finally:
                with self._lock:
                    self._waiting -= 1
        if self.delay > 0:
            waited = True
            time.sleep(self.delay)
        return not (waited and client_gone())

    def next_reply(self, body: JSON) -> Reply | Error:
        with self._lock:
            if self._fail_remaining > 0:
                self._fail_remaining -= 1
                return Error(status=self._fail_status)
            if time.monotonic() < self._outage_until:
                return Error(status=self._outage_status)
            scripted = self._queue.popleft() if self._queue else None
        if scripted is None and self.responder is not None:
            scripted = self.responder(body)
        return default_reply(body) if scripted is None else scripted

    def record_exchange(self, body: JSON, reply: Reply, streamed: bool) -> JSON | None:
        """OpenAI-like usage in "openai" mode (None: the wire builders' estimate), and
        the exchange recorded either way."""
        usage = None
        if self.usage_mode == "openai":
            usage = openai_usage(body, reply, default_tokenizer(), self.prompt_cache)
        recorded = usage or completion_body(body, reply, 0)["usage"]
        with self._lock:
            self.exchanges.append(Exchange(body, reply, recorded, streamed))
        return usage

    def record_completion_usage(self, usage: JSON) -> None:
        """Kept in `usages` for tests that check what a non-streamed answer reported."""
        with self._lock:
            self.usages.append(usage)

    def record_stream_done(self) -> None:
        """Stamped as the last chunk left, so benchmarks can time whole streams."""
        with self._lock:
            self.streams_done.append(time.perf_counter())
