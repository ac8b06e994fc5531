"""`wa-agent serve`'s worker processes: the webhook in one interpreter, turns in others.

One interpreter doing everything runs out of its one core long before the machine
does (turns are CPU-bound Python: the graph, the model client, the checkpointer), and
a busy worker slows the webhook Meta times. So `serve` starts `wa-agent worker`
children — one per core by default (`WA_AGENT_WORKER_PROCESSES`) — starts one again
when it dies, and stops them when it stops. Each child watches its parent and leaves
when `serve` is gone, however it went.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field

import psycopg
import structlog

from graph.infra.connection_share import allowed_connections, connections_per_process, fit_pool
from graph.settings import Settings

log = structlog.get_logger(__name__)

PARENT_PID_ENV = "WA_AGENT_PARENT_PID"
_STOP_GRACE_S = 20.0
_FIRST_RESTART_PAUSE_S = 1.0
_MAX_RESTART_PAUSE_S = 30.0
_HEALTHY_RUN_S = 60.0


@dataclass
class WorkerProcesses:
    """`count` children running `wa-agent worker` with `env` (the parent's database URL
    included, so an embedded Postgres started by `serve` is shared, not started again)."""

    count: int
    env: Mapping[str, str]
    _children: dict[int, asyncio.subprocess.Process] = field(default_factory=dict)
    _stopping: bool = False

    async def run(self) -> None:
        """Keep `count` children alive until cancelled."""
        await asyncio.gather(*(self._keep(slot) for slot in range(self.count)))

    async def _keep(self, slot: int) -> None:
        pause = _FIRST_RESTART_PAUSE_S
        while not self._stopping:
            started = asyncio.get_running_loop().time()
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "server.cli",
                "worker",
                env={**self.env, PARENT_PID_ENV: str(os.getpid())},
            )
            self._children[slot] = process
            log.info("worker_process.started", slot=slot, pid=process.pid)
            code = await process.wait()
            if self._stopping:
                return
            log.error("worker_process.exited", slot=slot, pid=process.pid, code=code)
            if asyncio.get_running_loop().time() - started > _HEALTHY_RUN_S:
                pause = _FIRST_RESTART_PAUSE_S
            await asyncio.sleep(pause)
            pause = min(pause * 2, _MAX_RESTART_PAUSE_S)

    async def stop(self) -> None:
        """SIGTERM (running turns finish), then SIGKILL after a grace period: a turn cut
        off is resumed by another worker, its replies still sent once."""
        self._stopping = True
        running = [p for p in self._children.values() if p.returncode is None]
        for process in running:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(_STOP_GRACE_S):
                await asyncio.gather(*(p.wait() for p in running))
        except TimeoutError:
            for process in running:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()


def worker_process_count(configured: str) -> int:
    """`auto`: one per core this process may use (on two cores, with `serve` and
    Postgres beside them, two worker processes answered 56 conversations/s and one 50;
    BENCHMARKS.md); else the number given (0: the worker runs inside `serve`, one
    interpreter)."""
    if configured.strip().lower() == "auto":
        return len(os.sched_getaffinity(0))
    count = int(configured)
    if count < 0:
        raise ValueError("WA_AGENT_WORKER_PROCESSES must be 'auto' or a number >= 0")
    return count


async def leave_when_parent_is_gone(stop: asyncio.Event, every_s: float = 1.0) -> None:
    """In a child of `serve`: set `stop` once the parent process is gone (re-parented)."""
    parent = os.environ.get(PARENT_PID_ENV)
    if not parent:
        return
    while not stop.is_set():
        if os.getppid() != int(parent):
            log.warning("worker.parent_gone", behaviour="stopping")
            stop.set()
            return
        await asyncio.sleep(every_s)


def fit_pools_to_the_server(settings: Settings, processes: int) -> Settings:
    """`settings` with each process's pool sized to its share of the connections the
    server allows (graph/infra/connection_share.py); unchanged, with a warning, when
    the server cannot be asked now."""
    try:
        allowed = allowed_connections(str(settings.database_url))
    except psycopg.Error as exc:
        log.warning("serve.pools_not_fitted", reason=str(exc)[:200])
        return settings
    fit = fit_pool(allowed, processes, settings.db_pool_max_size)
    if not fit.fits:
        log.warning(
            "serve.too_few_connections",
            allowed=allowed,
            processes=processes,
            needed=processes * connections_per_process(fit.pool_max),
            fix="fewer WA_AGENT_WORKER_PROCESSES, or a higher max_connections",
        )
    if fit.pool_max < settings.db_pool_max_size:
        log.info("serve.pools_fitted", allowed=allowed, processes=processes, pool=fit.pool_max)
    return settings.model_copy(
        update={
            "db_pool_max_size": fit.pool_max,
            "db_pool_min_size": min(settings.db_pool_min_size, fit.pool_max),
        }
    )


def pool_environment(settings: Settings) -> dict[str, str]:
    """The pool sizes as the variables a child process reads them from."""
    return {
        "WA_AGENT_DB_POOL_MAX": str(settings.db_pool_max_size),
        "WA_AGENT_DB_POOL_MIN": str(settings.db_pool_min_size),
    }
