"""`code_interpreter`: the model runs a short Python program in a real sandbox.

Isolation comes from bubblewrap (Debian package `bubblewrap`), never from Python itself:
new user, network, pid, ipc, uts and cgroup namespaces (`--unshare-all`: the only
network device is the sandbox's own loopback, with nothing listening), a root file
system holding only the interpreter, its standard library and the libraries those load
(tools/sandbox_root.py; no other binary, no `/etc`, `/home`, `/root` or repository),
size-capped tmpfs folders as the only writable places, a system-call filter
(tools/sandbox_seccomp.py), no way back to the service's terminal (`--new-session`) and
no nested namespaces. Inside, the process is an unprivileged user (a service running
as root drops to a throwaway uid first: the kernel does not apply RLIMIT_NPROC to root).

Limits hold for the run as a whole, not per process: a control group per run
(tools/sandbox_cgroup.py) caps its memory, CPU bandwidth and process count together;
where no group can be made, the process limit falls to `FALLBACK_MAX_PROCESSES` so the
per-process limits cannot add up to much. Kernel rlimits set by `prlimit` still bound
each process (address space, CPU seconds, file size), at most `max_concurrent_runs`
runs share the machine at once per service process, and the wall-time limit kills the
whole process group; bwrap's `--die-with-parent`, its pid namespace and the group's
removal take every process inside with it.

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
from dataclasses import dataclass, field
from functools import lru_cache

import structlog
from langchain_core.tools import BaseTool, StructuredTool
from pydantic import Field

from tools.common import ToolArgs
from tools.sandbox_cgroup import (
    CgroupLimits,
    CgroupUnavailable,
    CgroupUsage,
    RunCgroup,
    joining_command,
    open_run_cgroup,
    remove_stale_runs,
)
from tools.sandbox_process import converse, exit_code, kill_group
from tools.sandbox_root import InterpreterUnusable, python_binds
from tools.sandbox_seccomp import compiled_filter, filter_fd
from tools.sandbox_slots import SandboxBusy, run_slots

log = structlog.get_logger(__name__)

THROWAWAY_UIDS = 2_000_000_000  # far above login users and /etc/subuid ranges
MEBIBYTE = 1024 * 1024
FALLBACK_MAX_PROCESSES = 4
"""Processes of a run without a control group: bwrap's two and Python, and one child.
Each may use the per-process limits, so fewer processes is the only bound left."""


@dataclass(frozen=True)
class SandboxLimits:
    """What one run may use; the registry builds this from settings."""

    wall_seconds: float = 10.0
    cpu_seconds: int = 5
    memory_bytes: int = 256 * MEBIBYTE
    max_processes: int = 16
    max_file_bytes: int = 4 * MEBIBYTE
    scratch_bytes: int = 16 * MEBIBYTE
    max_output_chars: int = 4000
    max_code_chars: int = 20_000
    cpu_cores: float = 0.5
    max_concurrent_runs: int = 2
    cgroup: str = "auto"  # "auto", "off", or a delegated cgroup v2 directory
    python: str = "/usr/bin/python3"
    bwrap: str = "bwrap"


@dataclass(frozen=True)
class SandboxResult:
    output: str
    exit_code: int | None
    truncated: bool = False
    timed_out: bool = False
    seconds: float = 0.0
    usage: CgroupUsage = field(default_factory=CgroupUsage)


class SandboxUnavailable(RuntimeError):
    """This platform cannot isolate code; the tool must not be offered."""


def sandbox_command(
    limits: SandboxLimits, *, processes: int, uid: int | None, seccomp_fd: int | None
) -> list[str]:
    """[setpriv (drop root)] ▸ prlimit (per-process limits) ▸ bwrap (namespaces, file
    system, seccomp) ▸ python, reading the program from stdin. `-I -S`: no environment
    variables, no user or site packages."""
    drop = []
    if uid is not None:
        drop = [shutil.which("setpriv") or "setpriv", f"--reuid={uid}", f"--regid={uid}"]
        drop += ["--clear-groups", "--"]
    seccomp = [] if seccomp_fd is None else ["--seccomp", str(seccomp_fd)]
    return [
        *drop,
        shutil.which("prlimit") or "prlimit",
        f"--as={limits.memory_bytes}",
        # SIGXCPU at the soft limit (a clear cause); SIGKILL a second later if ignored.
        f"--cpu={limits.cpu_seconds}:{limits.cpu_seconds + 1}",
        f"--nproc={processes}",
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
        *python_binds(limits.python),
        "--symlink", "usr/lib", "/lib",
        "--symlink", "usr/lib64", "/lib64",
        "--symlink", "usr/bin", "/bin",
        "--proc", "/proc",
        "--dev", "/dev",
        "--size", str(limits.scratch_bytes), "--tmpfs", "/scratch",
        "--size", str(MEBIBYTE), "--tmpfs", "/tmp",
        "--chdir", "/scratch",
        *seccomp,
        limits.python, "-I", "-S", "-B", "-",
    ]  # fmt: skip


def _sandbox_uid() -> int | None:
    """Root is exempt from RLIMIT_NPROC and owns the host's files: run as a throwaway
    uid that owns nothing, a fresh one per run, so concurrent runs do not share the
    process limit and cannot signal one another."""
    if os.geteuid() != 0:
        return None
    return THROWAWAY_UIDS + secrets.randbelow(1_000_000)


@dataclass
class _Launch:
    """Everything one start of the sandbox needs, and what must be undone after it."""

    argv: list[str]
    cgroup: RunCgroup | None
    seccomp_fd: int | None

    @property
    def pass_fds(self) -> tuple[int, ...]:
        return () if self.seccomp_fd is None else (self.seccomp_fd,)

    def close_fd(self) -> None:
        if self.seccomp_fd is not None:
            with contextlib.suppress(OSError):
                os.close(self.seccomp_fd)
            self.seccomp_fd = None


def _launch(limits: SandboxLimits) -> _Launch:
    """The command for one run, in its own control group when the machine allows."""
    cgroup: RunCgroup | None = None
    if cgroup_problem(limits) is None:
        try:
            cgroup = open_run_cgroup(_cgroup_limits(limits), _cgroup_parent(limits))
        except CgroupUnavailable as exc:
            log.warning("code_interpreter.cgroup_failed", reason=str(exc)[:300])
    uid = _sandbox_uid()
    processes = limits.max_processes
    if cgroup is None and uid is not None:
        processes = min(processes, FALLBACK_MAX_PROCESSES)
    program = compiled_filter()
    fd = filter_fd(program) if program is not None else None
    command = sandbox_command(limits, processes=processes, uid=uid, seccomp_fd=fd)
    return _Launch(joining_command(cgroup, command), cgroup, fd)


def _cgroup_limits(limits: SandboxLimits) -> CgroupLimits:
    return CgroupLimits(limits.memory_bytes, limits.max_processes, limits.cpu_cores)


def _cgroup_parent(limits: SandboxLimits) -> str | None:
    return None if limits.cgroup in ("auto", "off") else limits.cgroup


@lru_cache(maxsize=8)
def cgroup_problem(limits: SandboxLimits) -> str | None:
    """None when runs get a control group here, else why not (tried once per limits)."""
    if limits.cgroup == "off":
        return "WA_AGENT_SANDBOX_CGROUP=off"
    try:
        trial = open_run_cgroup(_cgroup_limits(limits), _cgroup_parent(limits))
    except CgroupUnavailable as exc:
        log.warning("code_interpreter.no_cgroup", reason=str(exc)[:300])
        return str(exc)
    trial.discard()
    stale = remove_stale_runs(_cgroup_parent(limits))
    log.info("code_interpreter.cgroup", version=trial.version, stale_groups_removed=stale)
    return None


async def run_sandboxed(code: str, limits: SandboxLimits) -> SandboxResult:
    """Run `code` and return what it printed (stdout and stderr, interleaved); waits
    for a free slot first (`SandboxBusy` when none frees up within the wall time)."""
    async with run_slots.hold(limits.max_concurrent_runs, wait_seconds=limits.wall_seconds):
        launch = _launch(limits)
        try:
            return await _run(code, limits, launch)
        finally:
            launch.close_fd()
            if launch.cgroup is not None:
                await launch.cgroup.remove()


async def _run(code: str, limits: SandboxLimits, launch: _Launch) -> SandboxResult:
    started = time.perf_counter()
    process = await asyncio.create_subprocess_exec(
        *launch.argv,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        cwd="/",
        env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
        pass_fds=launch.pass_fds,
    )
    launch.close_fd()  # the child has its copy
    output = bytearray()
    truncated = timed_out = False
    try:
        truncated = await asyncio.wait_for(
            converse(process, code, output, limits.max_output_chars), limits.wall_seconds
        )
    except TimeoutError:
        timed_out = True
    finally:
        kill_group(process)  # nothing a run started outlives it
        status = await process.wait()
    return SandboxResult(
        output=bytes(output[: limits.max_output_chars]).decode(errors="replace"),
        exit_code=None if timed_out else exit_code(status),
        truncated=truncated,
        timed_out=timed_out,
        seconds=time.perf_counter() - started,
        usage=launch.cgroup.usage() if launch.cgroup is not None else CgroupUsage(),
    )


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
    if result.usage.oom_killed:
        notes.insert(0, "the memory limit was reached")
    if result.usage.processes_refused:
        notes.insert(0, "the process limit was reached")
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
    """None when the sandbox works here, else why not (checked once per limits): one
    program run exactly as the model's will be, control group and filter included."""
    missing = [tool for tool in (limits.bwrap, "prlimit") if shutil.which(tool) is None]
    if os.geteuid() == 0 and shutil.which("setpriv") is None:
        missing.append("setpriv")
    if missing:
        return f"{', '.join(missing)} not installed (Debian: apt-get install bubblewrap util-linux)"
    if not os.access(limits.python, os.X_OK):
        return f"{limits.python} is not an executable Python interpreter"
    try:
        launch = _launch(limits)
    except InterpreterUnusable as exc:
        return str(exc)
    try:
        completed = subprocess.run(
            launch.argv,
            input=b"print(6 * 7)",
            capture_output=True,
            timeout=max(limits.wall_seconds, 5.0),
            cwd="/",
            env={"PATH": "/usr/bin:/bin"},
            check=False,
            pass_fds=launch.pass_fds,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return f"the sandbox did not start: {exc}"
    finally:
        launch.close_fd()
        if launch.cgroup is not None:
            launch.cgroup.discard()
    if completed.returncode != 0 or completed.stdout.strip() != b"42":
        detail = completed.stderr.decode(errors="replace").strip()[:300]
        return f"the sandbox did not start (exit {completed.returncode}): {detail}"
    return None


class CodeArgs(ToolArgs):
    code: str = Field(
        min_length=1,
        description="Python 3, standard library; only what it prints comes back.",
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
        try:
            result = await run_sandboxed(code, limits)
        except SandboxBusy:
            return "refused: the sandbox is busy with other programs; try again in a minute"
        peak = result.usage.memory_peak_bytes
        log.info(
            "code_interpreter.ran",
            exit_code=result.exit_code,
            timed_out=result.timed_out,
            seconds=round(result.seconds, 3),
            memory_peak_mb=None if peak is None else round(peak / MEBIBYTE, 1),
            oom_killed=result.usage.oom_killed,
        )
        return describe_result(result, limits)

    return StructuredTool.from_function(
        coroutine=code_interpreter,
        name="code_interpreter",
        description=(
            "Run Python for exact sums, dates and conversions (no network, "
            f"{limits.wall_seconds:g} s, {limits.memory_bytes // MEBIBYTE} MB)."
        ),
        args_schema=CodeArgs,
    )
