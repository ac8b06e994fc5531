"""The specialists' configuration: defaults in prompts/agents/, live rows in Postgres.

Each prompts/agents/<name>.md holds YAML front matter (display name, description, tool
allow-list, model, temperature) and the agent's system prompt. At start the files seed
`agent_configurations` (rows that exist are left as the operator edited them); every
run then reads the rows through a short cache, so an edit applies without a restart.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import psycopg
import yaml
from psycopg.rows import DictRow

from graph.composition.prompts import PROMPTS_DIR
from graph.context import AgentConfig
from graph.infra.database import Pool

AGENTS_DIR = PROMPTS_DIR / "agents"
SPECIALISTS = ("customer_service", "sales", "booking", "payment", "tech_support")


def load_default_agents(business_name: str, directory: Path = AGENTS_DIR) -> dict[str, AgentConfig]:
    agents: dict[str, AgentConfig] = {}
    for name in SPECIALISTS:
        meta, prompt = _front_matter((directory / f"{name}.md").read_text(encoding="utf-8"))
        agents[name] = AgentConfig(
            name=name,
            display_name=str(meta["display_name"]),
            description=str(meta["description"]),
            system_prompt=prompt.format(business_name=business_name).strip(),
            tools=tuple(meta.get("tools", ())),
            model=meta.get("model"),
            temperature=meta.get("temperature"),
            enabled=bool(meta.get("enabled", True)),
        )
    return agents


def _front_matter(text: str) -> tuple[dict[str, Any], str]:
    if not text.startswith("---\n"):
        raise ValueError("an agent file starts with YAML front matter between --- lines")
    header, _, body = text[4:].partition("\n---\n")
    meta = yaml.safe_load(header)
    if not isinstance(meta, dict):
        raise ValueError("agent front matter must be a mapping")
    return meta, body


async def seed_agent_configurations(pool: Pool, defaults: Mapping[str, AgentConfig]) -> None:
    """Insert missing agents; never overwrite what an operator changed."""
    async with pool.connection() as conn, conn.transaction():
        for agent in defaults.values():
            await conn.execute(
                """
                INSERT INTO agent_configurations
                    (name, display_name, description, tools, model, temperature, enabled)
                VALUES (%s, %s, %s, %s, %s, %s, %s)
                ON CONFLICT (name) DO NOTHING
                """,
                (
                    agent.name,
                    agent.display_name,
                    agent.description,
                    list(agent.tools),
                    agent.model,
                    agent.temperature,
                    agent.enabled,
                ),
            )


# What an operator may change of an agent (the admin API's PATCH).
EDITABLE_COLUMNS = frozenset({"system_prompt", "tools", "model", "temperature", "enabled"})


class AgentDirectory:
    """The current configuration of every specialist, re-read at most every `ttl` s."""

    def __init__(self, pool: Pool, defaults: Mapping[str, AgentConfig], ttl: float = 2.0):
        self.pool = pool
        self.defaults = dict(defaults)
        self.ttl = ttl
        self._cached: dict[str, AgentConfig] = dict(defaults)
        self._loaded_at = float("-inf")

    def invalidate(self) -> None:
        self._loaded_at = float("-inf")

    @staticmethod
    async def save_changes(
        conn: psycopg.AsyncConnection[DictRow], name: str, fields: Mapping[str, Any]
    ) -> None:
        """An operator's edit of one agent, in the caller's transaction (beside its audit
        row); `invalidate()` once committed, and other processes see it within `ttl`."""
        unknown = set(fields) - EDITABLE_COLUMNS
        if unknown or not fields:
            raise ValueError(f"not editable: {sorted(unknown) or 'nothing to change'}")
        assignments = ", ".join(f"{column} = %({column})s" for column in sorted(fields))
        await conn.execute(
            f"UPDATE agent_configurations SET {assignments}, version = version + 1,"
            " updated_at = now() WHERE name = %(name)s",
            {**fields, "name": name},
        )

    async def current(self) -> dict[str, AgentConfig]:
        if time.monotonic() - self._loaded_at < self.ttl:
            return self._cached
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT name, display_name, description, system_prompt, tools, model,"
                " temperature, enabled, version FROM agent_configurations"
            )
            rows = await cur.fetchall()
        agents = dict(self.defaults)
        for row in rows:
            if row["name"] in self.defaults:
                agents[row["name"]] = self._from_row(row)
        self._cached, self._loaded_at = agents, time.monotonic()
        return agents

    def _from_row(self, row: Mapping[str, Any]) -> AgentConfig:
        default = self.defaults[row["name"]]
        return AgentConfig(
            name=row["name"],
            display_name=row["display_name"],
            description=row["description"],
            system_prompt=row["system_prompt"] or default.system_prompt,
            tools=tuple(row["tools"]),
            model=row["model"],
            temperature=row["temperature"],
            enabled=row["enabled"],
            version=row["version"],
        )
