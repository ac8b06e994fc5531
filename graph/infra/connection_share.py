"""How many database connections each process of one deployment may hold.

A process holds its pool (`WA_AGENT_DB_POOL_MAX`, 20 by default), the job queue's pool
(half of that, at most 8), the queue listener's own connection and two small pools of
the vector stores (memory and knowledge, two each). `serve` runs one such process per
core beside its own, so on four cores five processes could ask for 165 connections of
a server that allows 100 (Postgres's default, and the embedded server's): under load
the server refused connections 111 times in ten seconds (docs/deployment.md).

`serve` therefore sizes every process's pool to an even share of what the server lets
the deployment's role open in its database, keeping `HEADROOM` free for a migration, a
psql session or a backup. Workers deployed apart (`wa-agent worker` replicas) cannot
know how many of them there are: their pool is what `WA_AGENT_DB_POOL_MAX` says.
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg

# Connections left to everything that is not a service process.
HEADROOM = 10
# The job queue's pool: procrastinate fetches, defers and finishes through it.
QUEUE_POOL_MAX = 8
# What a process holds beside its two pools: the queue's listener, and the memory and
# knowledge vector stores' pools (tools/knowledge.py `create_pg_engine`, two each).
FIXED_PER_PROCESS = 1 + 2 + 2
# Below this a pool stalls turns more than it saves the server.
SMALLEST_POOL = 2


def queue_pool_max(pool_max: int) -> int:
    """The job queue's pool beside a main pool of `pool_max`: a turn makes about a third
    as many queue statements as its own."""
    return max(SMALLEST_POOL, min(QUEUE_POOL_MAX, pool_max // 2))


def connections_per_process(pool_max: int) -> int:
    """Every connection one process may hold with a main pool of `pool_max`."""
    return pool_max + queue_pool_max(pool_max) + FIXED_PER_PROCESS


@dataclass(frozen=True)
class PoolFit:
    """The main pool each of `processes` processes gets out of `allowed` connections."""

    pool_max: int
    allowed: int
    processes: int

    @property
    def fits(self) -> bool:
        """False when even the smallest pools ask for more than the server allows."""
        return self.processes * connections_per_process(self.pool_max) <= self.allowed


def fit_pool(allowed: int, processes: int, configured_max: int) -> PoolFit:
    """The largest main pool, no larger than `configured_max`, with which `processes`
    processes stay within `allowed` connections less `HEADROOM`."""
    if processes < 1:
        raise ValueError("a deployment has at least one process")
    share = (allowed - HEADROOM) // processes
    pool_max = max(SMALLEST_POOL, configured_max)
    while pool_max > SMALLEST_POOL and connections_per_process(pool_max) > share:
        pool_max -= 1
    return PoolFit(min(pool_max, configured_max), allowed, processes)


_ALLOWED = """
SELECT least(
    current_setting('max_connections')::int
      - current_setting('superuser_reserved_connections')::int
      - coalesce(current_setting('reserved_connections', true)::int, 0),
    coalesce((SELECT nullif(rolconnlimit, -1) FROM pg_roles WHERE rolname = current_user),
             2147483647),
    coalesce((SELECT nullif(datconnlimit, -1) FROM pg_database
              WHERE datname = current_database()), 2147483647)
)
"""


def allowed_connections(database_url: str, timeout_s: float = 5.0) -> int:
    """How many connections this role may open in this database: the server's limit
    less its reserved slots, the role's and the database's own limits."""
    with psycopg.connect(database_url, connect_timeout=max(1, round(timeout_s))) as conn:
        row = conn.execute(_ALLOWED).fetchone()
    if row is None:
        raise RuntimeError("the server did not say how many connections it allows")
    return int(row[0])
