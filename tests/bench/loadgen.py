"""A small HTTP/1.1 load generator on raw asyncio streams.

httpx costs roughly a millisecond of CPU per request in this process, which competes
for the GIL with the fakes; pre-built request bytes over kept-alive sockets cost far
less. Two shapes:

- `open_loop`: requests leave on a fixed schedule whether or not earlier ones were
  answered (the way Meta delivers webhooks); each gets a connection from a pool that
  grows as needed, so a slow answer never delays the next send.
- `closed_loop`: `concurrency` senders, each posting its next request as soon as the
  previous one is answered ("as fast as the service takes them").
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from tests.bench.common import SignedMessage

REQUEST_TIMEOUT_S = 10.0


@dataclass
class Sample:
    """One request: when it was due, sent and answered (perf_counter), and how."""

    index: int
    due: float
    sent: float = 0.0
    done: float = 0.0
    status: int = 0  # 0: no HTTP answer (see `error`)
    error: str = ""

    @property
    def latency(self) -> float:
        return self.done - self.sent


@dataclass
class _Connection:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter

    def usable(self) -> bool:
        return not self.writer.is_closing() and not self.reader.at_eof()

    def close(self) -> None:
        self.writer.close()


@dataclass
class WebhookClient:
    """POSTs signed webhook bodies to one URL; `keep_alive=False` opens a connection
    per request (what a server holding the connection during background work needs)."""

    url: str
    keep_alive: bool = True
    max_connections: int = 512
    _idle: list[_Connection] = field(default_factory=list)
    _open: int = 0
    opened_total: int = 0

    def __post_init__(self) -> None:
        parts = urlsplit(self.url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        self.path = parts.path or "/"

    def request_bytes(self, message: SignedMessage) -> bytes:
        head = (
            f"POST {self.path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            "Content-Type: application/json\r\n"
            f"Content-Length: {len(message.body)}\r\n"
            f"X-Hub-Signature-256: {message.signature}\r\n"
            f"Connection: {'keep-alive' if self.keep_alive else 'close'}\r\n\r\n"
        )
        return head.encode() + message.body

    async def _connection(self) -> _Connection:
        while self._idle:
            conn = self._idle.pop()  # LIFO: the hottest sockets stay in use
            if conn.usable():
                return conn
            conn.close()
            self._open -= 1
        reader, writer = await asyncio.open_connection(self.host, self.port)
        self._open += 1
        self.opened_total += 1
        return _Connection(reader, writer)

    async def send(self, raw: bytes, sample: Sample) -> None:
        """Send one request and fill in `sample` (never raises)."""
        conn: _Connection | None = None
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT_S):
                conn = await self._connection()
                sample.sent = time.perf_counter()
                conn.writer.write(raw)
                sample.status = await _read_response(conn.reader)
                sample.done = time.perf_counter()
        except (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError) as exc:
            sample.done = time.perf_counter()
            sample.error = type(exc).__name__
            if conn is not None:
                conn.close()
                self._open -= 1
            return
        if self.keep_alive and self._open <= self.max_connections:
            self._idle.append(conn)
        else:
            conn.close()
            self._open -= 1

    def close(self) -> None:
        for conn in self._idle:
            conn.close()
        self._idle.clear()
        self._open = 0


async def _read_response(reader: asyncio.StreamReader) -> int:
    status_line = await reader.readline()
    if not status_line:
        raise asyncio.IncompleteReadError(b"", None)
    status = int(status_line.split(b" ", 2)[1])
    length = 0
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b"\n", b""):
            break
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    if length:
        await reader.readexactly(length)
    return status


async def open_loop(
    client: WebhookClient, messages: Sequence[SignedMessage], rate: float
) -> list[Sample]:
    """Send `messages` at `rate` per second on schedule; wait for every answer."""
    requests = [client.request_bytes(m) for m in messages]
    samples: list[Sample] = []
    tasks: list[asyncio.Task[None]] = []
    start = time.perf_counter() + 0.05
    for index, raw in enumerate(requests):
        due = start + index / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        sample = Sample(index, due)
        samples.append(sample)
        tasks.append(asyncio.create_task(client.send(raw, sample)))
    await asyncio.gather(*tasks)
    return samples


async def closed_loop(
    client: WebhookClient, messages: Sequence[SignedMessage], concurrency: int
) -> list[Sample]:
    """`concurrency` senders post `messages`, each as soon as its previous one was answered."""
    requests = [client.request_bytes(m) for m in messages]
    samples = [Sample(index, 0.0) for index in range(len(requests))]
    cursor = iter(range(len(requests)))

    async def sender() -> None:
        for index in cursor:
            samples[index].due = time.perf_counter()
            await client.send(requests[index], samples[index])

    await asyncio.gather(*(sender() for _ in range(concurrency)))
    return samples
