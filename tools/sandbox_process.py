"""Talking to a started sandbox: the program in, its output out (capped), its end.

Kept apart from tools/sandbox.py, which decides how a run is isolated and bounded;
these helpers only move bytes and signals for one started process.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal


async def converse(
    process: asyncio.subprocess.Process, code: str, kept: bytearray, limit: int
) -> bool:
    """Hand over the program, collect what it prints; True when the output was cut."""
    assert process.stdin is not None
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        process.stdin.write(code.encode())
        await process.stdin.drain()
        process.stdin.close()
    truncated = await _read_capped(process, kept, limit)
    if not truncated:
        await process.wait()  # its own exit status, not the kill that follows
    return truncated


async def _read_capped(process: asyncio.subprocess.Process, kept: bytearray, limit: int) -> bool:
    """Collect output into `kept` until EOF; a program printing more than `limit` bytes is
    stopped, not drained. True when it was cut."""
    assert process.stdout is not None
    while chunk := await process.stdout.read(65536):
        kept += chunk
        if len(kept) > limit:
            return True
    return False


def exit_code(status: int) -> int:
    """bwrap reports a program killed by signal N as 128 + N; say it the Python way."""
    return -(status - 128) if 128 < status < 128 + 65 else status


def kill_group(process: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
