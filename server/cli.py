"""`wa-agent serve | worker | migrate | seed-demo | chat | forget | replay`."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

import structlog
import uvicorn
import uvloop
from threadpoolctl import threadpool_limits

from graph.composition.memory import migrate_memory_embeddings
from graph.composition.replay import ReplayError
from graph.infra.database import apply_migrations, resolve_database_url
from graph.settings import Settings, get_settings
from server.abuse import commands as blacklist_commands
from server.abuse.commands import cli_actor
from server.app import create_app
from server.http.admin.auth import WeakToken
from server.http.serving import trusted_proxies, uvicorn_config
from server.logging import configure_logging
from server.operations import conversation_replay as replay
from server.operations import number_commands
from server.operations import router_eval as eval_router
from server.operations.demo_shop import seed_demo_data
from server.operations.erasure import forget_from_terminal
from server.runner.supervisor import (
    WorkerProcesses,
    fit_pools_to_the_server,
    leave_when_parent_is_gone,
    pool_environment,
    worker_process_count,
)
from server.services import open_services
from server.terminal import chat_in_terminal

log = structlog.get_logger(__name__)


def _exit_on_sigterm(signum: int, frame: object) -> None:
    """SIGTERM during start-up exits through atexit, which stops the embedded Postgres;
    once running, uvicorn and the worker install their own graceful handlers."""
    raise SystemExit(128 + signum)


def main(argv: Sequence[str] | None = None) -> int:
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    parser = argparse.ArgumentParser(prog="wa-agent", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="webhook + admin API (+ an in-process worker)")
    serve.add_argument("--no-worker", action="store_true", help="leave jobs to `wa-agent worker`")
    commands.add_parser("worker", help="run conversation jobs from the queue")
    commands.add_parser("migrate", help="apply pending database migrations")
    commands.add_parser("seed-demo", help="load the demo shop (catalog, slots, knowledge base)")
    chat = commands.add_parser("chat", help="talk to the graph in this terminal")
    chat.add_argument("--as", dest="customer", default="developer", help="conversation name")
    forget = commands.add_parser("forget", help="erase everything about a customer (audited)")
    forget.add_argument("number", help="+250788123456, or a user id")
    blacklist_commands.add_commands(commands)
    eval_router.add_command(commands)
    replay.add_command(commands)
    number_commands.add_command(commands)
    args = parser.parse_args(argv)

    settings = get_settings()
    configure_logging(settings)
    single_threaded_numerics()
    if args.command == "serve":
        return serve_http(settings, with_worker=not args.no_worker)
    if args.command == "worker":
        # Before any thread starts: Linux priority is per thread, inherited by threads
        # started after.
        yield_cpu_to_the_webhook(settings.worker_nice)
        # uvloop: the worker is a busy event loop (the queue, the pools, the model and
        # Graph API clients); the standard loop's own overhead was a tenth of a turn.
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return runner.run(run_worker_process(settings))
    if args.command == "migrate":
        return asyncio.run(migrate(settings))
    if args.command in blacklist_commands.COMMANDS:
        return asyncio.run(blacklist_commands.run_command(args, settings))
    if args.command == number_commands.COMMAND:
        return asyncio.run(number_commands.run_command(args, settings))
    if args.command == "forget":
        return asyncio.run(forget_from_terminal(settings, args.number))
    if args.command == "replay":
        return asyncio.run(replay_from_terminal(settings, args))
    if args.command == "eval-router":
        return eval_router.run(settings, args)
    if args.command == "seed-demo":
        return asyncio.run(seed_demo_data(settings))
    return asyncio.run(chat_in_terminal(settings, args.customer))


def single_threaded_numerics() -> None:
    """One thread for BLAS and OpenMP (numpy, scikit-learn). Our matrices are tiny (one
    message against a thousand examples) and concurrency comes from the event loop and
    the worker processes: a second BLAS thread only spins waiting for a core that serve,
    Postgres or another worker holds. Under load that wait made a 35 µs product cost
    over a millisecond of CPU (py-spy, tests/bench/profile_load.py)."""
    threadpool_limits(limits=1)


async def replay_from_terminal(settings: Settings, args: argparse.Namespace) -> int:
    """`wa-agent replay`: list, replay or fork on this machine's database, as the user."""
    async with open_services(settings, run_worker_here=False, migrate=False) as services:
        replays = services.replays()
        try:
            if args.list:
                found = await replay.list_checkpoints(replays, args.conversation, args.limit)
                replay.print_checkpoints(found, as_json=args.json)
                return 0
            request = replay.ReplayRequest(
                args.conversation, args.checkpoint, args.fork, args.send, args.state
            )
            result, sent = await replay.run_replay(replays, request, actor=cli_actor())
        except ReplayError as exc:
            print(f"replay: {exc}", file=sys.stderr)
            return 2
    replay.print_result(result, sent, as_json=args.json, send=args.send)
    return 0


def serve_http(settings: Settings, *, with_worker: bool) -> int:
    """The HTTP server, and the worker processes it supervises (none with `--no-worker`;
    with `WA_AGENT_WORKER_PROCESSES=0` the worker runs inside this process). Exit code 2,
    with the reason, when a configured token is too short. Which proxies may name client
    addresses is always explicit (server/http/serving.py)."""
    children = worker_process_count(settings.worker_processes) if with_worker else 0
    # Started here, not in the app, so the children share it instead of starting their own.
    settings = settings.model_copy(update={"database_url": resolve_database_url(settings)})
    settings = fit_pools_to_the_server(settings, children + 1)
    try:
        app = create_app(settings, run_worker_here=with_worker and children == 0)
    except WeakToken as exc:
        print(f"wa-agent: refusing to start: {exc}", file=sys.stderr)
        return 2
    proxies = trusted_proxies(settings)
    log.info(
        "serve.start", host=settings.host, port=settings.port, workers=children, proxies=proxies
    )
    server = uvicorn.Server(uvicorn_config(app, settings))
    env = {**os.environ, "DATABASE_URL": str(settings.database_url), **pool_environment(settings)}
    with asyncio.Runner(loop_factory=server.config.get_loop_factory()) as runner:
        runner.run(_serve_with_workers(server, WorkerProcesses(children, env)))
    return 0


async def _serve_with_workers(server: uvicorn.Server, workers: WorkerProcesses) -> None:
    """The workers start beside the app (each applies migrations under the same lock,
    so whoever comes first does it) and stop after it."""
    supervising = asyncio.create_task(workers.run(), name="worker-processes")
    try:
        await server.serve()
    finally:
        supervising.cancel()
        await workers.stop()


def yield_cpu_to_the_webhook(nice: int) -> None:
    """Lower this worker's CPU priority by `nice` (WA_AGENT_WORKER_NICE).

    Where the kernel schedules each session as a group (autogroup, the default on most
    desktops and VMs), nice alone only ranks processes inside their session: a worker
    that leads its own session (systemd, a supervisor, `setsid`) lowers its group too.
    A worker sharing a session with `serve` (one shell script) does not, since that
    would lower the webhook with it.
    """
    if nice <= 0:
        return
    os.nice(nice)
    grouped = False
    if os.getsid(0) == os.getpid():
        with contextlib.suppress(OSError):
            Path("/proc/self/autogroup").write_text(str(nice))
            grouped = True
    log.info("worker.cpu_priority", nice=nice, session_group=grouped)


async def run_worker_process(settings: Settings) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    orphaned = asyncio.create_task(leave_when_parent_is_gone(stop))
    async with open_services(settings, run_worker_here=True) as services:
        log.info("worker.start", pid=os.getpid(), concurrency=settings.worker_concurrency)
        assert services.worker_task is not None
        done = asyncio.create_task(stop.wait())
        await asyncio.wait({done, services.worker_task}, return_when=asyncio.FIRST_COMPLETED)
        orphaned.cancel()
        if services.worker_task.done() and services.worker_task.exception():
            log.error("worker.crashed", error=str(services.worker_task.exception()))
            return 1
    log.info("worker.stopped")
    return 0


async def migrate(settings: Settings) -> int:
    database_url = await asyncio.to_thread(resolve_database_url, settings)
    applied = await apply_migrations(database_url)
    print(f"applied {len(applied)} migration(s)" + (f": {', '.join(applied)}" if applied else ""))
    if reembedded := await migrate_memory_embeddings(database_url, settings):
        print(f"re-embedded {reembedded} memories with {settings.embeddings}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
