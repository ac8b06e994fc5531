"""`wa-agent block | unblock` as an operator types them: real processes, real database,
the same normalisation and audit trail as the admin API."""

from __future__ import annotations

import getpass
import socket
import subprocess
import sys

from tests.support import REPO, query, service_env, service_settings


def wa_agent(db_url: str, *args: str) -> subprocess.Popen[str]:
    """`wa-agent ARGS` started; `.communicate()` waits for it."""
    return subprocess.Popen(
        [sys.executable, "-m", "server.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
        env=service_env(service_settings(db_url)),
    )


def finished(process: subprocess.Popen[str]) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=60)
    return process.returncode, out, err


async def test_block_list_and_unblock_from_the_terminal(db_url: str) -> None:
    blocked, blocked_out, blocked_err = finished(
        wa_agent(db_url, "block", "+250 788 123 456", "--reason", "spam", "--for", "7d")
    )
    started = [wa_agent(db_url, "block", "--list"), wa_agent(db_url, "block", "+1 555 0100")]
    (_, listed, _), (invalid, _, invalid_err) = map(finished, started)
    rows = await query(
        db_url, "SELECT wa_id, source, created_by, expires_at - created_at AS span FROM blacklist"
    )
    unblocked, unblocked_out, _ = finished(wa_agent(db_url, "unblock", "250788123456"))
    audit = await query(db_url, "SELECT actor, action, target FROM audit_log ORDER BY id")
    actor = f"cli:{getpass.getuser()}@{socket.gethostname()}"
    assert blocked == 0, blocked_err
    assert blocked_out.startswith("blocked 250788123456")
    assert listed.startswith("250788123456\tmanual\t") and listed.rstrip().endswith("spam")
    assert invalid == 2 and "not a valid phone number" in invalid_err
    assert [(r["wa_id"], r["source"], r["created_by"]) for r in rows] == [
        ("250788123456", "manual", actor)
    ]
    assert round(rows[0]["span"].total_seconds() / 86400) == 7
    assert unblocked == 0 and unblocked_out.strip() == "unblocked 250788123456"
    assert await query(db_url, "SELECT * FROM blacklist") == []
    assert audit == [
        {"actor": actor, "action": "blacklist.add", "target": "250788123456"},
        {"actor": actor, "action": "blacklist.remove", "target": "250788123456"},
    ]
