"""The benchmarks' processes: the service under test as subprocesses, and the CPU they
(and everything else on the machine) use while a figure is measured."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tests.bench.common import fetch_value
from tests.support import ACCESS_TOKEN, APP_SECRET, PHONE_NUMBER_ID, REPO, VERIFY_TOKEN

# --- CPU accounting ----------------------------------------------------------------

_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int, *, reaped_children: bool = False) -> float:
    """User + system CPU of one process (plus, if asked, of the children it has reaped:
    the postmaster's exited backends and autovacuum workers), or 0 when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    ticks = int(fields[11]) + int(fields[12])
    if reaped_children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / _TICKS


def machine_busy_seconds() -> float:
    """CPU seconds all cores spent not idle since boot (/proc/stat)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / _TICKS


async def wait_for_quiet(max_wait: float = 8.0, threshold: float = 0.3) -> float:
    """Wait (at most `max_wait` s) until the machine's CPU use over half a second is
    below `threshold` cores, so another job's burst does not land in a measurement;
    returns the last reading (in cores)."""
    deadline = time.monotonic() + max_wait
    while True:
        before = machine_busy_seconds()
        await asyncio.sleep(0.5)
        busy = (machine_busy_seconds() - before) / 0.5
        if busy < threshold or time.monotonic() >= deadline:
            if busy >= threshold:
                print(f"  note: machine still busy ({busy:.2f} cores) after {max_wait:g} s")
            return busy


def _children(parent: int) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError):
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == parent:
                    pids.append(int(entry.name))
    return pids


def _with_descendants(pids: Sequence[int]) -> list[int]:
    """The processes and every process they started (serve's worker processes)."""
    found: list[int] = []
    pending = list(pids)
    while pending:
        pid = pending.pop()
        found.append(pid)
        pending.extend(_children(pid))
    return found


@dataclass
class CpuMeter:
    """CPU seconds used by the service processes (and their children), Postgres and this
    process between `start()` and `stop()` (Postgres: the postmaster, its live children
    and the children it reaped meanwhile), and by everything else on the machine
    ("other": another job's load, kernel work not charged to a process)."""

    service_pids: Sequence[int]
    postgres_dir: Path
    _before: dict[str, dict[int, float]] = field(default_factory=dict)
    _machine: float = 0.0
    _started: float = 0.0
    used: dict[str, float] = field(default_factory=dict)
    wall: float = 0.0

    @property
    def other_cores(self) -> float:
        """Average cores used by the rest of the machine while measuring."""
        return self.used.get("other", 0.0) / self.wall if self.wall > 0 else 0.0

    def _postgres_pids(self) -> list[int]:
        try:
            postmaster = int((self.postgres_dir / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return []
        return [postmaster, *_children(postmaster)]

    def _snapshot(self) -> dict[str, dict[int, float]]:
        groups = {
            "service": _with_descendants(self.service_pids),
            "postgres": self._postgres_pids(),
            "bench": [os.getpid()],
        }
        postmaster = groups["postgres"][:1]
        return {
            name: {pid: cpu_seconds(pid, reaped_children=pid in postmaster) for pid in pids}
            for name, pids in groups.items()
        }

    def start(self) -> None:
        self._before = self._snapshot()
        self._machine = machine_busy_seconds()
        self._started = time.monotonic()

    def stop(self) -> dict[str, float]:
        after = self._snapshot()
        for name, now in after.items():
            before = self._before.get(name, {})
            self.used[name] = sum(cpu - before.get(pid, 0.0) for pid, cpu in now.items())
        total = machine_busy_seconds() - self._machine
        self.wall = time.monotonic() - self._started
        self.used["other"] = max(0.0, total - sum(self.used.values()))
        return dict(self.used)


# --- the service as separate processes ----------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def service_environment(
    db_url: str, openai_base_url: str, graph_api_url: str, **extra: str
) -> dict[str, str]:
    """The env of a `wa-agent` process: production defaults (the environment's own
    WA_AGENT_* settings dropped), fakes wired in, quiet logs, no tracing."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("WA_AGENT", "WHATSAPP", "OPENAI", "LANGSMITH", "LANGCHAIN"))
    }
    env.update(
        DATABASE_URL=db_url,
        OPENAI_API_KEY="sk-test",
        OPENAI_BASE_URL=openai_base_url + "/v1",
        WHATSAPP_API_BASE_URL=graph_api_url,
        WHATSAPP_ACCESS_TOKEN=ACCESS_TOKEN,
        WHATSAPP_PHONE_NUMBER_ID=PHONE_NUMBER_ID,
        WHATSAPP_APP_SECRET=APP_SECRET,
        WHATSAPP_VERIFY_TOKEN=VERIFY_TOKEN,
        LOG_LEVEL="WARNING",
        LANGSMITH_TRACING="false",
        HOST="127.0.0.1",
    )
    env.update(extra)
    return env


@dataclass
class Process:
    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


@dataclass
class ProcessGroup:
    """Processes started for one measurement, all stopped (SIGTERM, then SIGKILL) on exit."""

    log_dir: Path
    processes: list[Process] = field(default_factory=list)

    @property
    def pids(self) -> list[int]:
        return [process.popen.pid for process in self.processes]

    def start(
        self, name: str, args: Sequence[str], env: Mapping[str, str], *, tree: Path = REPO
    ) -> Process:
        """`tree`: the source tree the process runs (`python -m` imports from its working
        directory first): this one, or a worktree of an earlier commit to compare with."""
        log_path = self.log_dir / f"{name}-{len(self.processes)}.log"
        with log_path.open("wb") as log:
            popen = subprocess.Popen(
                [sys.executable, *args],
                cwd=tree,
                env=dict(env),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        process = Process(name, popen, log_path)
        self.processes.append(process)
        return process

    def check_alive(self) -> None:
        for process in self.processes:
            if process.popen.poll() is not None:
                raise RuntimeError(
                    f"{process.name} exited with {process.popen.returncode}:\n" + process.log_tail()
                )

    def stop_all(self) -> None:
        for process in self.processes:
            _signal_group(process.popen, signal.SIGTERM)
        deadline = time.monotonic() + 15
        for process in self.processes:
            try:
                process.popen.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal_group(process.popen, signal.SIGKILL)
                process.popen.wait(timeout=5)


def _signal_group(popen: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    if popen.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(popen.pid, sig)


@contextlib.contextmanager
def process_group() -> Iterator[ProcessGroup]:
    with tempfile.TemporaryDirectory(prefix="wa-agent-bench-logs-") as tmp:
        group = ProcessGroup(Path(tmp))
        try:
            yield group
        except BaseException:
            for process in group.processes:
                print(f"--- {process.name} (pid {process.popen.pid}) log tail ---", file=sys.stderr)
                print(process.log_tail(), file=sys.stderr)
            raise
        finally:
            group.stop_all()


async def wait_until_ready(base_url: str, group: ProcessGroup, path: str = "/readyz") -> None:
    """Poll the HTTP endpoint until it answers 200 (60 s at most)."""
    import httpx

    deadline = time.monotonic() + 60
    async with httpx.AsyncClient(base_url=base_url, timeout=2) as client:
        while time.monotonic() < deadline:
            group.check_alive()
            with contextlib.suppress(httpx.HTTPError):
                if (await client.get(path)).status_code == 200:
                    return
            await asyncio.sleep(0.1)
    raise TimeoutError(f"{base_url}{path} not ready within 60 s")


async def wait_for_workers(db_url: str, count: int, group: ProcessGroup) -> None:
    """Until `count` procrastinate workers have registered (60 s at most)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        group.check_alive()
        if (await fetch_value(db_url, "SELECT count(*) FROM procrastinate_workers")) >= count:
            return
        await asyncio.sleep(0.1)
    raise TimeoutError(f"{count} worker(s) not registered within 60 s")
