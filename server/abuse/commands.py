"""`wa-agent block | unblock`: the blacklist from a terminal, audited as `cli:user@host`.

The change is written to Postgres (with its audit row) and to Redis when `REDIS_URL`
is set, so running services see it at once; with the in-process limiter they pick it up
at their next blacklist sync (`WA_AGENT_BLACKLIST_SYNC_S`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import getpass
import socket
import sys
from collections.abc import AsyncIterator
from datetime import timedelta

from graph.infra.database import open_pool, resolve_database_url
from graph.settings import Settings
from graph.settings.abuse import duration_seconds
from server.abuse import build_limiter
from server.abuse.blacklist import Blacklist
from server.abuse.validation import normalize_customer_id


def cli_actor() -> str:
    return f"cli:{getpass.getuser()}@{socket.gethostname()}"


@contextlib.asynccontextmanager
async def open_blacklist(settings: Settings) -> AsyncIterator[Blacklist]:
    database_url = await asyncio.to_thread(resolve_database_url, settings)
    limiter = build_limiter(settings)
    try:
        async with open_pool(database_url, settings) as pool:
            yield Blacklist(pool, limiter)
    finally:
        await limiter.aclose()


def _customer(raw: str, settings: Settings) -> str | None:
    try:
        return normalize_customer_id(raw, settings.phone_region)
    except ValueError as exc:
        print(f"{raw!r}: {exc}", file=sys.stderr)
        return None


async def block(settings: Settings, raw: str, reason: str, duration: str | None) -> int:
    customer = _customer(raw, settings)
    if customer is None:
        return 2
    try:
        seconds = duration_seconds(duration) if duration else None
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 2
    async with open_blacklist(settings) as blacklist:
        expires_at = blacklist.now() + timedelta(seconds=seconds) if seconds else None
        entry = await blacklist.add(
            customer, reason=reason, source="manual", actor=cli_actor(), expires_at=expires_at
        )
    until = entry.expires_at.isoformat() if entry.expires_at else "until unblocked"
    print(f"blocked {customer} ({until}): {entry.reason}")
    return 0


async def unblock(settings: Settings, raw: str) -> int:
    customer = _customer(raw, settings)
    if customer is None:
        return 2
    async with open_blacklist(settings) as blacklist:
        removed = await blacklist.remove(customer, actor=cli_actor())
    print(f"unblocked {customer}" if removed else f"{customer} was not blocked")
    return 0 if removed else 1


async def list_blocked(settings: Settings) -> int:
    async with open_blacklist(settings) as blacklist:
        entries = await blacklist.active()
    for entry in entries:
        until = entry.expires_at.isoformat() if entry.expires_at else "until unblocked"
        print(f"{entry.wa_id}\t{entry.source}\t{until}\t{entry.created_by}\t{entry.reason}")
    return 0


COMMANDS = frozenset({"block", "unblock"})


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`block` and `unblock` on the `wa-agent` command line."""
    block_parser = commands.add_parser("block", help="blacklist a customer (audited)")
    block_parser.add_argument("number", nargs="?", help="+250788123456, or a user id")
    block_parser.add_argument("--reason", default="blocked by an operator")
    block_parser.add_argument("--for", dest="duration", help="e.g. 12h, 7d; omit: until unblocked")
    block_parser.add_argument("--list", action="store_true", help="list who is blocked")
    unblock_parser = commands.add_parser("unblock", help="lift a block and its penalties")
    unblock_parser.add_argument("number")


async def run_command(args: argparse.Namespace, settings: Settings) -> int:
    if args.command == "unblock":
        return await unblock(settings, args.number)
    if args.list:
        return await list_blocked(settings)
    if not args.number:
        print("block: a number is required (or --list)", file=sys.stderr)
        return 2
    return await block(settings, args.number, args.reason, args.duration)
