"""`code_interpreter`: the model runs a short Python program in a real sandbox.

Isolation comes from bubblewrap (Debian package `bubblewrap`), never from Python itself:
new user, network, pid, ipc, uts and cgroup namespaces (`--unshare-all`: the only
network device is the sandbox's own loopback, with nothing listening), a root file
system holding nothing but a read-only `/usr` (the interpreter and its standard
library; no `/etc`, `/home`, `/root` or repository), size-capped tmpfs folders as the
only writable places, no way back to the service's terminal (`--new-session`) and no
nested namespaces. Inside, the process is an unprivileged user (a service running as
root drops to a throwaway uid first: the kernel does not apply RLIMIT_NPROC to root),
with kernel resource limits set by `prlimit` before bwrap starts: address space, CPU
seconds, processes, file size. The wall-time limit kills the whole process group;
bwrap's `--die-with-parent` and its pid namespace take every process inside with it.

Where bubblewrap cannot start (no binary, user namespaces disabled) the tool is not
offered at all: `make_code_interpreter_tool` raises `SandboxUnavailable`. Code never runs
unsandboxed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from functools import lru_cache

import structlog
from langchain_core.tools import BaseTool, StructuredTool
from pydantic import Field

from tools.common import ToolArgs

log = structlog.get_logger(__name__)

THROWAWAY_UIDS = 2_000_000_000  # far above login users and /etc/subuid ranges
MEBIBYTE = 1024 * 1024


@dataclass(frozen=True)
class SandboxLimits:
    """What one run may use; the registry builds this from settings."""

    wall_seconds: float = 10.0
    cpu_seconds: int = 5
    memory_bytes: int = 256 * MEBIBYTE
    max_processes: int = 32
    max_file_bytes: int = 4 * MEBIBYTE
    scratch_bytes: int = 16 * MEBIBYTE
    max_output_chars: int = 4000
    max_code_chars: int = 20_000
    python: str = "/usr/bin/python3"
    bwrap: str = "bwrap"


@dataclass(frozen=True)
class SandboxResult:
    output: str
    exit_code: int | None
    truncated: bool = False
    timed_out: bool = False
    seconds: float = 0.0


class SandboxUnavailable(RuntimeError):
    """This platform cannot isolate code; the tool must not be offered."""


def sandbox_command(limits: SandboxLimits) -> list[str]:
    """prlimit (kernel limits) ▸ bwrap (namespaces, file system) ▸ python, reading the
    program from stdin. `-I -S`: no environment variables, no user or site packages."""
    prefix = os.path.dirname(os.path.dirname(os.path.realpath(limits.python)))
    binds = ["--ro-bind", "/usr", "/usr"]
    if prefix != "/usr" and prefix != "/":
        binds += ["--ro-bind", prefix, prefix]
    return [
        shutil.which("prlimit") or "prlimit",
        f"--as={limits.memory_bytes}",
        # SIGXCPU at the soft limit (a clear cause); SIGKILL a second later if ignored.
        f"--cpu={limits.cpu_seconds}:{limits.cpu_seconds + 1}",
        f"--nproc={limits.max_processes}",
        f"--fsize={limits.max_file_bytes}",
        "--core=0",
        "--",
        limits.bwrap,
        "--unshare-all",
        "--unshare-user",
        "--disable-userns",
        "--die-with-parent",
        "--new-session",
        "--clearenv",
        "--setenv", "PATH", "/usr/bin",
        "--setenv", "HOME", "/scratch",
        "--setenv", "LANG", "C.UTF-8",
        *binds,
        "--symlink", "usr/lib", "/lib",
        "--symlink", "usr/lib64", "/lib64",
        "--symlink", "usr/bin", "/bin",
        "--proc", "/proc",
        "--dev", "/dev",
        "--size", str(limits.scratch_bytes), "--tmpfs", "/scratch",
        "--size", str(MEBIBYTE), "--tmpfs", "/tmp",
        "--chdir", "/scratch",
        limits.python, "-I", "-S", "-B", "-",
    ]  # fmt: skip


def _sandbox_uid() -> int | None:
    """Root is exempt from RLIMIT_NPROC and owns the host's files: run as a throwaway
    uid that owns nothing, a fresh one per run, so concurrent runs do not share the
    process limit and cannot signal one another."""
    if os.geteuid() != 0:
        return None
    return THROWAWAY_UIDS + secrets.randbelow(1_000_000)


async def run_sandboxed(code: str, limits: SandboxLimits) -> SandboxResult:
    """Run `code` and return what it printed (stdout and stderr, interleaved)."""
    started = time.perf_counter()
    uid = _sandbox_uid()
    process = await asyncio.create_subprocess_exec(
        *sandbox_command(limits),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        cwd="/",
        env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
        user=uid,
        group=uid,
        extra_groups=None if uid is None else [],
    )
    output = bytearray()
    truncated = timed_out = False
    try:
        truncated = await asyncio.wait_for(
            _converse(process, code, output, limits.max_output_chars), limits.wall_seconds
        )
    except TimeoutError:
        timed_out = True
    finally:
        _kill_group(process)  # nothing a run started outlives it
        status = await process.wait()
    return SandboxResult(
        output=bytes(output[: limits.max_output_chars]).decode(errors="replace"),
        exit_code=None if timed_out else _exit_code(status),
        truncated=truncated,
        timed_out=timed_out,
        seconds=time.perf_counter() - started,
    )


async def _converse(
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


def _exit_code(status: int) -> int:
    """bwrap reports a program killed by signal N as 128 + N; say it the Python way."""
    return -(status - 128) if 128 < status < 128 + 65 else status


def _kill_group(process: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)


_HINTS = (
    ("MemoryError", "the memory limit was reached"),
    ("Resource temporarily unavailable", "the process limit was reached"),
    ("Network is unreachable", "the sandbox has no network access"),
    ("Connection refused", "the sandbox has no network access"),
    ("name resolution", "the sandbox has no network access"),
    ("File too large", "the file size limit was reached"),
    ("No such file or directory", "only /scratch (writable) and the standard library exist"),
)


def describe_result(result: SandboxResult, limits: SandboxLimits) -> str:
    """What the model reads: whether it worked, which limit stopped it in plain words,
    then the output (notes first, so they survive any later trimming)."""
    notes = [hint for marker, hint in _HINTS if marker in result.output]
    if result.timed_out:
        notes.insert(0, f"stopped after {limits.wall_seconds:g} s (wall-time limit)")
    elif result.truncated:
        notes.insert(0, f"output cut at {limits.max_output_chars} characters")
    elif result.exit_code == -signal.SIGXCPU:
        notes.insert(0, f"stopped after {limits.cpu_seconds} s of CPU time (CPU limit)")
    elif result.exit_code is not None and result.exit_code < 0:
        notes.insert(0, f"stopped by signal {signal.Signals(-result.exit_code).name}")
    if result.truncated or result.timed_out:
        header = "stopped"
    else:
        header = "ok" if result.exit_code == 0 else f"failed (exit code {result.exit_code})"
    lines = [header, *(f"note: {note}" for note in dict.fromkeys(notes))]
    lines.append(result.output.strip() or "(no output; print() what you need)")
    return "\n".join(lines)


@lru_cache(maxsize=8)
def probe_sandbox(limits: SandboxLimits) -> str | None:
    """None when the sandbox works here, else why not (checked once per limits)."""
    if shutil.which(limits.bwrap) is None:
        return f"{limits.bwrap} is not installed (Debian: apt-get install bubblewrap)"
    if shutil.which("prlimit") is None:
        return "prlimit is not installed (Debian: util-linux)"
    if not os.access(limits.python, os.X_OK):
        return f"{limits.python} is not an executable Python interpreter"
    uid = _sandbox_uid()
    try:
        completed = subprocess.run(
            sandbox_command(limits),
            input=b"print(6 * 7)",
            capture_output=True,
            timeout=max(limits.wall_seconds, 5.0),
            cwd="/",
            env={"PATH": "/usr/bin:/bin"},
            check=False,
            user=uid,
            group=uid,
            extra_groups=None if uid is None else [],
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return f"the sandbox did not start: {exc}"
    if completed.returncode != 0 or completed.stdout.strip() != b"42":
        detail = completed.stderr.decode(errors="replace").strip()[:300]
        return f"the sandbox did not start (exit {completed.returncode}): {detail}"
    return None


class CodeArgs(ToolArgs):
    code: str = Field(
        min_length=1,
        description=(
            "A complete Python 3 program (standard library only). Print what you need: "
            "only printed output comes back."
        ),
    )


def make_code_interpreter_tool(limits: SandboxLimits) -> BaseTool:
    """The tool, or `SandboxUnavailable` when this machine cannot isolate code."""
    problem = probe_sandbox(limits)
    if problem is not None:
        log.warning("code_interpreter.unavailable", reason=problem)
        raise SandboxUnavailable(problem)

    async def code_interpreter(code: str) -> str:
        if len(code) > limits.max_code_chars:
            return f"refused: the program is longer than {limits.max_code_chars} characters"
        result = await run_sandboxed(code, limits)
        log.info(
            "code_interpreter.ran",
            exit_code=result.exit_code,
            timed_out=result.timed_out,
            seconds=round(result.seconds, 3),
        )
        return describe_result(result, limits)

    return StructuredTool.from_function(
        coroutine=code_interpreter,
        name="code_interpreter",
        description=(
            "Run a short Python program for exact calculations (prices, dates, totals, "
            "unit conversions). No network, no files outside a scratch folder, standard "
            f"library only, {limits.wall_seconds:g} s and "
            f"{limits.memory_bytes // MEBIBYTE} MB at most. Returns what it prints."
        ),
        args_schema=CodeArgs,
    )
