"""One customer's flood, sent from a process of its own, cheaply enough to stand in for
traffic that comes from elsewhere.

    python -m tests.bench.flood_sender URL --secret S [--rate 1000] [--duration 15]
        [--wa-id N] [--run K]

prints `ready` once its connections are open, starts when a line arrives on stdin, and
prints its figures as one JSON line (`FloodFigures`). Used by `bench_rate_limit`.

A flood of 1,000 deliveries a second is made by Meta's servers, not by the machine that
answers it; on a 2-core machine every microsecond the generator spends is taken from the
service under test. So this process imports nothing of the service (the earlier flooder,
`loadgen` inside the benchmark's own module, carried the whole application's imports and
their threads, and cost 0.2-0.3 ms of CPU per request), writes pre-built requests from
asyncio protocols on uvloop, reads answers with two `find`s, and runs at the lowest CPU
priority: it gets what the machine has left over, as traffic from outside would.

Requests leave on schedule whatever the answers do, over a fixed set of kept-alive
connections (a sender like Meta's does not open a connection per message); when all
are busy a due request waits for the next free one.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import sys
import time
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import uvloop

from tests.fakes.meta_payloads import envelope, sign, text_message

CONNECTIONS = 32
TICK_S = 0.001


@dataclass
class Sent:
    """What went out and what came back."""

    sent: int = 0
    rate: float = 0.0
    statuses: dict[int, int] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)
    lost: int = 0


@dataclass(frozen=True)
class FloodFigures:
    """The flooding process's report (one JSON line)."""

    sent: int = 0
    rate: float = 0.0
    p99_ms: float = 0.0  # every answer, 429s included
    failures: int = 0  # not answered 200 (refused 429, or no answer)


class _Connection(asyncio.Protocol):
    def __init__(self, sender: FloodSender) -> None:
        self.sender = sender
        self.transport: asyncio.WriteTransport | None = None
        self.buffer = b""
        self.sent_at = 0.0
        self.busy = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's TCPTransport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        head_end = self.buffer.find(b"\r\n\r\n")
        if head_end < 0:
            return
        head = self.buffer[:head_end].lower()
        length = 0
        if (start := head.find(b"content-length:")) >= 0:
            stop = head.find(b"\r\n", start)
            length = int(head[start + 15 : stop if stop >= 0 else None])
        if len(self.buffer) < head_end + 4 + length:
            return
        status = int(head[9:12])
        self.buffer = self.buffer[head_end + 4 + length :]
        self.busy = False
        self.sender.answered(self, status, time.perf_counter() - self.sent_at)

    def connection_lost(self, exc: Exception | None) -> None:
        self.sender.lost(self)

    def send(self, raw: bytes) -> None:
        assert self.transport is not None
        self.busy = True
        self.sent_at = time.perf_counter()
        self.transport.write(raw)


class FloodSender:
    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.idle: list[_Connection] = []
        self.figures = Sent()
        self._statuses: Counter[int] = Counter()
        self._backlog: deque[bytes] = deque()

    async def connect(self, count: int = CONNECTIONS) -> None:
        loop = asyncio.get_running_loop()
        for _ in range(count):
            _, conn = await loop.create_connection(lambda: _Connection(self), self.host, self.port)
            self.idle.append(conn)

    def answered(self, conn: _Connection, status: int, latency: float) -> None:
        self._statuses[status] += 1
        self.figures.latencies.append(latency)
        if self._backlog:
            conn.send(self._backlog.popleft())
        else:
            self.idle.append(conn)

    def lost(self, conn: _Connection) -> None:
        if conn.busy:
            self.figures.lost += 1
        if conn in self.idle:
            self.idle.remove(conn)

    def _send(self, raw: bytes) -> None:
        if self.idle:
            self.idle.pop().send(raw)
        else:
            self._backlog.append(raw)  # sent by the next connection that answers

    async def run(self, requests: Sequence[bytes], rate: float, drain_s: float = 10.0) -> None:
        """Send every request on its due time (in small batches, as the loop wakes),
        then wait up to `drain_s` for the answers still outstanding."""
        start = time.perf_counter()
        sent = 0
        while sent < len(requests):
            due = min(len(requests), int((time.perf_counter() - start) * rate) + 1)
            while sent < due:
                self._send(requests[sent])
                sent += 1
            # libuv's timers count whole milliseconds: a shorter sleep returns at once
            # and the loop would spin; a due request waits at most this tick.
            await asyncio.sleep(max(TICK_S, start + sent / rate - time.perf_counter()))
        span = time.perf_counter() - start
        deadline = time.monotonic() + drain_s
        while sum(self._statuses.values()) + self.figures.lost < sent:
            if time.monotonic() > deadline:
                break
            await asyncio.sleep(0.01)
        self.figures.sent = sent
        self.figures.rate = (sent - 1) / span if span > 0 else float("nan")
        self.figures.statuses = dict(self._statuses)


def flood_requests(url: str, secret: str, wa_id: str, run: int, count: int) -> list[bytes]:
    """Signed text deliveries from one customer, as raw HTTP/1.1 requests."""
    parts = urlsplit(url)
    requests = []
    for index in range(count):
        value = text_message(wa_id, f"flood {index:05d}", wamid=f"wamid.rl-flood-{run}-{index}")
        body = json.dumps(envelope(value)).encode()
        head = (
            f"POST {parts.path or '/'} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            f"X-Hub-Signature-256: {sign(body, secret)}\r\n\r\n"
        )
        requests.append(head.encode() + body)
    return requests


def yield_cpu_to_the_service() -> None:
    """Lowest CPU priority for this process: nice 19, and — where the kernel groups
    each session for the scheduler (autogroup), so that nice alone would change nothing
    against the service's own sessions — the same for this process's group."""
    os.nice(19)
    with contextlib.suppress(OSError):
        Path("/proc/self/autogroup").write_text("19")


def percentile_99(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[max(0, -(-99 * len(ordered) // 100) - 1)] if ordered else float("nan")


async def flood(args: argparse.Namespace) -> FloodFigures:
    requests = flood_requests(
        args.url, args.secret, args.wa_id, args.run, int(args.rate * args.duration)
    )
    parts = urlsplit(args.url)
    sender = FloodSender(parts.hostname or "127.0.0.1", parts.port or 80)
    await sender.connect()
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    await sender.run(requests, args.rate)
    sent = sender.figures
    return FloodFigures(
        sent=sent.sent,
        rate=sent.rate,
        p99_ms=1000 * percentile_99(sent.latencies),
        failures=sent.sent - sent.statuses.get(200, 0),
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("url")
    parser.add_argument("--secret", required=True, help="the app secret to sign with")
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--duration", type=float, default=15.0)
    parser.add_argument("--wa-id", default="255799999999")
    parser.add_argument("--run", type=int, default=0)
    args = parser.parse_args(argv)
    yield_cpu_to_the_service()
    print(json.dumps(asdict(uvloop.run(flood(args)))), flush=True)


if __name__ == "__main__":
    main()
