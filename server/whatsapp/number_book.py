"""The `business_numbers` rows: the one module that reads and writes them.

A row says which number, how it is shown, where its access token and its app's secret
are (references, see :mod:`server.whatsapp.secret_refs`), the language its customers
are answered in until theirs is known, and whether it is answered at all. The CLI
(`wa-agent numbers`) and the admin API change rows; every process's
:class:`server.whatsapp.numbers.WhatsAppNumbers` reads them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from graph.composition.agent_configs import SPECIALISTS
from graph.context import FLAG_DEFAULTS
from graph.infra.database import Pool
from server.whatsapp.secret_refs import check_ref

__all__ = ["BusinessNumber", "NumberBook", "check_number_id"]

_NUMBER_ID = re.compile(r"[0-9A-Za-z_-]{1,64}")
_LANGUAGE = re.compile(r"[a-z]{2,3}")
# Conversations of the channels that are not WhatsApp use these as their "number".
_RESERVED = frozenset({"web", "terminal"})
_COLUMNS = (
    "phone_number_id, display_number, access_token_ref, app_secret_ref,"
    " default_language, enabled, agents, flags"
)


def check_number_id(phone_number_id: str) -> str:
    """The Cloud API's phone number id (digits in practice); a clear error otherwise."""
    if not _NUMBER_ID.fullmatch(phone_number_id) or phone_number_id in _RESERVED:
        raise ValueError(
            f"{phone_number_id!r} is not a phone number id (the id Meta shows beside the"
            " number in the WhatsApp Manager, not the number itself)"
        )
    return phone_number_id


@dataclass(frozen=True)
class BusinessNumber:
    phone_number_id: str
    access_token_ref: str
    app_secret_ref: str
    display_number: str = ""
    default_language: str | None = None
    enabled: bool = True
    # Where the number differs from the deployment: only these agents answer its
    # customers (None: every enabled agent), and these flags are set for them.
    agents: tuple[str, ...] | None = None
    flags: Mapping[str, bool] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_number_id(self.phone_number_id)
        check_ref(self.access_token_ref)
        check_ref(self.app_secret_ref)
        if len(self.display_number) > 32:
            raise ValueError("a display number has at most 32 characters")
        if self.default_language is not None and not _LANGUAGE.fullmatch(self.default_language):
            raise ValueError(f"{self.default_language!r} is not a language code (en, fr, sw…)")
        if self.agents is not None:
            if not self.agents or not set(self.agents) <= set(SPECIALISTS):
                raise ValueError(f"agents: one or more of {', '.join(SPECIALISTS)}")
            object.__setattr__(self, "agents", tuple(self.agents))
        unknown = sorted(set(self.flags) - set(FLAG_DEFAULTS))
        if unknown:
            raise ValueError(f"unknown flags {unknown}; known: {', '.join(FLAG_DEFAULTS)}")

    def as_row(self) -> dict[str, Any]:
        row = asdict(self)
        row["agents"] = list(self.agents) if self.agents is not None else None
        row["flags"] = dict(self.flags)
        return row


class NumberBook:
    def __init__(self, pool: Pool) -> None:
        self.pool = pool

    async def all(self) -> list[BusinessNumber]:
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                f"SELECT {_COLUMNS} FROM business_numbers ORDER BY phone_number_id"
            )
            return [_number(row) for row in await cur.fetchall()]

    async def find(self, phone_number_id: str) -> BusinessNumber | None:
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                f"SELECT {_COLUMNS} FROM business_numbers WHERE phone_number_id = %s",
                (phone_number_id,),
            )
            row = await cur.fetchone()
        return _number(row) if row else None

    async def save(self, number: BusinessNumber, conn: psycopg.AsyncConnection[Any]) -> bool:
        """Add the number or replace what is known of it; True when it is new. On the
        caller's connection, so the change and its audit row commit together."""
        cur = await conn.execute(
            f"""
            INSERT INTO business_numbers ({_COLUMNS})
            VALUES (%(phone_number_id)s, %(display_number)s, %(access_token_ref)s,
                    %(app_secret_ref)s, %(default_language)s, %(enabled)s, %(agents)s,
                    %(flags)s)
            ON CONFLICT (phone_number_id) DO UPDATE SET
                display_number = EXCLUDED.display_number,
                access_token_ref = EXCLUDED.access_token_ref,
                app_secret_ref = EXCLUDED.app_secret_ref,
                default_language = EXCLUDED.default_language,
                enabled = EXCLUDED.enabled,
                agents = EXCLUDED.agents,
                flags = EXCLUDED.flags,
                updated_at = now()
            RETURNING (xmax = 0) AS inserted
            """,
            {**number.as_row(), "flags": Jsonb(dict(number.flags))},
        )
        row = await cur.fetchone()
        return bool(row and row["inserted"])

    async def remove(self, phone_number_id: str, conn: psycopg.AsyncConnection[Any]) -> bool:
        """Forget the number (its conversations stay); False when there was none."""
        cur = await conn.execute(
            "DELETE FROM business_numbers WHERE phone_number_id = %s", (phone_number_id,)
        )
        return cur.rowcount > 0


def _number(row: Mapping[str, Any]) -> BusinessNumber:
    agents = row["agents"]
    return BusinessNumber(**{**row, "agents": tuple(agents) if agents is not None else None})
