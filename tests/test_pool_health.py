"""The pool hands out working connections: one killed while idle is replaced."""

from __future__ import annotations

import asyncio

import psycopg

from graph.infra.database import open_pool
from tests.support import service_settings


async def test_a_connection_killed_while_idle_is_replaced(db_url: str) -> None:
    settings = service_settings(db_url, db_pool_min_size=1, db_pool_max_size=1)
    settings = settings.model_copy(update={"db_check_idle_seconds": 0.2})
    async with open_pool(db_url, settings) as pool:
        async with pool.connection() as conn:
            row = await (await conn.execute("SELECT pg_backend_pid() AS pid")).fetchone()
        assert row is not None
        async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as admin:
            await admin.execute("SELECT pg_terminate_backend(%s)", (row["pid"],))
        await asyncio.sleep(0.3)  # idle past the threshold: checked, found dead, replaced
        async with pool.connection() as conn:
            again = await (await conn.execute("SELECT pg_backend_pid() AS pid")).fetchone()
    assert again is not None and again["pid"] != row["pid"]
