"""`wa-agent seed-demo`: load the demo shop into the configured database."""

from __future__ import annotations

import asyncio

from graph.composition.toolbox import knowledge_base_from_settings
from graph.infra.database import apply_migrations, open_pool, resolve_database_url
from graph.settings import Settings
from tools.demo import KNOWLEDGE_DIR, seed_demo


async def seed_demo_data(settings: Settings) -> int:
    database_url = await asyncio.to_thread(resolve_database_url, settings)
    await apply_migrations(database_url)
    async with (
        open_pool(database_url, settings) as pool,
        knowledge_base_from_settings(pool, database_url, settings) as knowledge,
    ):
        report = await seed_demo(
            pool,
            timezone=settings.business_timezone,
            knowledge=knowledge,
            knowledge_dir=settings.knowledge_dir or KNOWLEDGE_DIR,
        )
    print(f"demo business loaded: {report.summary()}")
    return 0
