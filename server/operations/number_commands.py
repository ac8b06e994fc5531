"""`wa-agent numbers list | add | remove`: the business numbers from a terminal, audited
as `cli:user@host`.

Running services read the change within `refresh` seconds (30), and at once when a
delivery for a number they do not know yet arrives.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator

from graph.infra.database import Pool, apply_migrations, open_pool, resolve_database_url
from graph.settings import Settings
from server.abuse.commands import cli_actor
from server.audit import record_audit
from server.whatsapp.number_book import BusinessNumber, NumberBook
from server.whatsapp.secret_refs import SecretRefError, resolve_ref

COMMAND = "numbers"


def add_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    numbers = commands.add_parser(COMMAND, help="the business numbers this service answers")
    actions = numbers.add_subparsers(dest="numbers_action", required=True)
    actions.add_parser("list", help="every number, and whether its secrets resolve here")
    add = actions.add_parser("add", help="add a number, or change one (audited)")
    add.add_argument("phone_number_id", help="the id Meta shows beside the number")
    add.add_argument("--token-ref", required=True, help="env:NAME or file:/path of its token")
    add.add_argument("--secret-ref", required=True, help="env:NAME or file:/path of its app secret")
    add.add_argument("--display", default="", help="the number as customers see it")
    add.add_argument("--language", help="its customers' language until theirs is known")
    add.add_argument("--disabled", action="store_true", help="known, but not answered")
    add.add_argument("--agents", help="only these agents answer it: sales,customer_service")
    add.add_argument(
        "--flag", action="append", default=[], help="NAME=on|off for its customers (repeat)"
    )
    remove = actions.add_parser("remove", help="stop answering a number (audited)")
    remove.add_argument("phone_number_id")


async def run_command(args: argparse.Namespace, settings: Settings) -> int:
    if args.numbers_action == "add":
        try:
            number = BusinessNumber(
                phone_number_id=args.phone_number_id,
                access_token_ref=args.token_ref,
                app_secret_ref=args.secret_ref,
                display_number=args.display,
                default_language=args.language,
                enabled=not args.disabled,
                agents=tuple(args.agents.split(",")) if args.agents else None,
                flags=_flags(args.flag),
            )
        except ValueError as exc:
            print(f"numbers add: {exc}", file=sys.stderr)
            return 2
        async with _open_pool(settings) as pool:
            return await _add(pool, number)
    async with _open_pool(settings) as pool:
        if args.numbers_action == "remove":
            return await _remove(pool, args.phone_number_id)
        return await _list(pool, settings)


def _flags(entries: list[str]) -> dict[str, bool]:
    """`csat=off`, `ai_agent=on`: the number's own flags."""
    flags: dict[str, bool] = {}
    for entry in entries:
        name, _, state = entry.partition("=")
        if state not in ("on", "off"):
            raise ValueError(f"--flag {entry!r}: write NAME=on or NAME=off")
        flags[name] = state == "on"
    return flags


@contextlib.asynccontextmanager
async def _open_pool(settings: Settings) -> AsyncIterator[Pool]:
    database_url = await asyncio.to_thread(resolve_database_url, settings)
    if settings.migrate_on_start:
        await apply_migrations(database_url)
    async with open_pool(database_url, settings) as pool:
        yield pool


async def _add(pool: Pool, number: BusinessNumber) -> int:
    async with pool.connection() as conn, conn.transaction():
        added = await NumberBook(pool).save(number, conn)
        await record_audit(
            conn,
            actor=cli_actor(),
            action="number.add" if added else "number.update",
            target=number.phone_number_id,
            details=number.as_row(),  # references only: no secret is in a row
            remote_addr=None,
        )
    print(f"{'added' if added else 'updated'} {number.phone_number_id}")
    for problem in unresolved(number):
        print(f"warning: {problem} (here; the service's environment may differ)", file=sys.stderr)
    return 0


async def _remove(pool: Pool, phone_number_id: str) -> int:
    async with pool.connection() as conn, conn.transaction():
        removed = await NumberBook(pool).remove(phone_number_id, conn)
        if removed:
            await record_audit(
                conn,
                actor=cli_actor(),
                action="number.remove",
                target=phone_number_id,
                details={},
                remote_addr=None,
            )
    print(f"removed {phone_number_id}" if removed else f"{phone_number_id} was not listed")
    return 0 if removed else 1


async def _list(pool: Pool, settings: Settings) -> int:
    if settings.whatsapp_phone_number_id:
        print(f"{settings.whatsapp_phone_number_id}\t(environment: WHATSAPP_PHONE_NUMBER_ID)")
    for number in await NumberBook(pool).all():
        state = "enabled" if number.enabled else "disabled"
        problems = unresolved(number)
        secrets = "secrets resolve here" if not problems else "; ".join(problems)
        agents = ",".join(number.agents) if number.agents else "every agent"
        flags = ",".join(f"{n}={'on' if on else 'off'}" for n, on in number.flags.items())
        print(
            f"{number.phone_number_id}\t{number.display_number or '-'}\t"
            f"{number.default_language or '-'}\t{state}\t{agents}\t{flags or '-'}\t{secrets}"
        )
    return 0


def unresolved(number: BusinessNumber) -> list[str]:
    """What of the number's secrets cannot be read by this process (never the values)."""
    problems = []
    for ref in (number.access_token_ref, number.app_secret_ref):
        try:
            resolve_ref(ref)
        except SecretRefError as exc:
            problems.append(str(exc))
    return problems
