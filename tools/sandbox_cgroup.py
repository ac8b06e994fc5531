"""One control group per code_interpreter run: a bound on the run as a whole.

Kernel rlimits (`prlimit`) apply to each process of a run separately: 32 processes of
256 MB and 5 CPU seconds each added up to gigabytes and every core of the machine. A
control group holds all of a run's processes together, so its memory (`memory.max`,
swap included), its CPU bandwidth (`cpu.max`: a share of one core, whatever it forks)
and its process count (`pids.max`) are the run's, not each process's.

Two layouts are handled, both by writing the kernel's own cgroup files (no library
does more than that, and the few that exist know only one of them):

- cgroup v2 (one unified hierarchy, Debian 12's default). A run's group is created
  under the parent named by `WA_AGENT_SANDBOX_CGROUP`, or under the service's own
  group; the parent must delegate `memory`, `pids` and `cpu` to its children
  (`cgroup.subtree_control`). The kernel forbids that for a group that holds
  processes itself, so a service whose own group is not a free parent (systemd:
  `Delegate=yes` with the service moved into a leaf; a container: a sub-group made for
  it) names one in the setting. Nothing here moves the service's own processes.
- cgroup v1 (one hierarchy per controller, as on this project's build machines): a
  run's group is created in the memory, pids and cpu hierarchies under the service's
  own group in each.

The sandbox's first process joins the group before it starts anything
(`joining_command`), so no child of the run is ever outside it. Where no group can be
made (no permission, no delegation, cgroups not mounted) `open_run_cgroup` says why and
the caller falls back to smaller per-process limits.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import time
from dataclasses import dataclass
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
CPU_PERIOD_US = 100_000
# What bounds a run: delegated to its group (v2), or one hierarchy each (v1).
CONTROLLERS = ("memory", "pids", "cpu")
RUN_PREFIX = "wa-agent-sandbox-"
POLL_SECONDS = 0.02
# A group still busy after the run's own wait is retried this long in the background.
_LATE_REMOVAL_S = 120.0
# A run's group older than this is nobody's: runs last seconds, a late removal minutes.
STALE_AFTER_S = 600.0
_LATE_REMOVALS: set[asyncio.Task[bool]] = set()


@dataclass(frozen=True)
class CgroupLimits:
    memory_bytes: int
    max_processes: int
    cpu_cores: float


@dataclass(frozen=True)
class CgroupUsage:
    """What the kernel counted for a run; read before its group is removed."""

    memory_peak_bytes: int | None = None
    oom_killed: bool = False
    processes_refused: bool = False


class CgroupUnavailable(RuntimeError):
    """No group can be made for a run here; the message says why."""


@dataclass
class RunCgroup:
    """A run's group: one directory (v2) or one per controller (v1)."""

    version: int
    directories: dict[str, Path]  # controller (or "unified") → directory

    @property
    def procs_files(self) -> list[str]:
        return [str(directory / "cgroup.procs") for directory in self.directories.values()]

    def usage(self) -> CgroupUsage:
        if self.version == 2:
            directory = self.directories["unified"]
            events = _keyed(directory / "memory.events")
            return CgroupUsage(
                memory_peak_bytes=_number(directory / "memory.peak"),
                oom_killed=events.get("oom_kill", 0) > 0,
                processes_refused=_keyed(directory / "pids.events").get("max", 0) > 0,
            )
        memory, pids = self.directories["memory"], self.directories["pids"]
        return CgroupUsage(
            memory_peak_bytes=_number(memory / "memory.max_usage_in_bytes"),
            oom_killed=_keyed(memory / "memory.oom_control").get("oom_kill", 0) > 0,
            processes_refused=_keyed(pids / "pids.events").get("max", 0) > 0,
        )

    async def remove(self, *, within_seconds: float = 5.0) -> None:
        """Kill whatever is left in the group, then delete it (an empty group only can
        be deleted: killed processes take a few milliseconds to go). Processes killed
        under memory pressure can take seconds more: past `within_seconds` the answer
        is not held back, and the group is deleted in the background once empty."""
        if await self._remove_within(within_seconds):
            return
        task = asyncio.create_task(self._remove_within(_LATE_REMOVAL_S))
        _LATE_REMOVALS.add(task)
        task.add_done_callback(_LATE_REMOVALS.discard)

    async def _remove_within(self, seconds: float) -> bool:
        for _ in range(int(seconds / POLL_SECONDS) + 1):  # the kernel says nothing
            if self._try_remove():
                return True
            await asyncio.sleep(POLL_SECONDS)
        return False

    def discard(self, *, within_seconds: float = 2.0) -> None:
        """`remove`, blocking: for the start-up probe, outside any event loop's turn."""
        for _ in range(int(within_seconds / POLL_SECONDS) + 1):
            if self._try_remove():
                return
            time.sleep(POLL_SECONDS)

    def _try_remove(self) -> bool:
        """One round of kill-and-delete; True when every directory is gone."""
        for name, directory in list(self.directories.items()):
            _kill_members(directory, self.version)
            try:
                directory.rmdir()
            except FileNotFoundError:
                pass
            except OSError:
                continue
            del self.directories[name]
        return not self.directories


def joining_command(run: RunCgroup | None, command: list[str]) -> list[str]:
    """`command`, started by a shell that first moves itself into the run's group(s):
    everything the command forks is born inside. Exit 125 when joining fails."""
    if run is None:
        return command
    script = 'while [ "$1" != -- ]; do echo $$ > "$1" || exit 125; shift; done; shift; exec "$@"'
    return ["/bin/sh", "-c", script, "wa-agent-sandbox", *run.procs_files, "--", *command]


def open_run_cgroup(limits: CgroupLimits, parent: str | None = None) -> RunCgroup:
    """Create a run's group with its limits written, or raise `CgroupUnavailable`."""
    name = RUN_PREFIX + secrets.token_hex(6)
    if _unified(parent):
        return _open_v2(_unified_base(parent), name, limits)
    return _open_v1(name, limits)


def _unified(parent: str | None) -> bool:
    """Runs' groups go in one cgroup v2 directory (else one per v1 hierarchy)."""
    return (CGROUP_ROOT / "cgroup.controllers").exists() or parent is not None


def _unified_base(parent: str | None) -> Path:
    return Path(parent) if parent else CGROUP_ROOT / _own_path("")


def _v1_base(controller: str) -> Path | None:
    """Where runs' groups go in a v1 hierarchy; None when it is not mounted."""
    hierarchy = CGROUP_ROOT / controller
    return hierarchy / _own_path(controller) if (hierarchy / "cgroup.procs").exists() else None


def remove_stale_runs(parent: str | None = None, *, older_than_s: float = STALE_AFTER_S) -> int:
    """Delete the empty run groups that a process which died mid-run left where this one
    makes its own (a crashed service, a killed test session: their late removal died
    with them); returns how many. A group with a process in it is left alone."""
    removed = 0
    cutoff = time.time() - older_than_s
    for base in _run_bases(parent):
        for directory in base.glob(RUN_PREFIX + "*"):
            with contextlib.suppress(OSError):  # gone meanwhile, or not empty
                if (
                    directory.stat().st_mtime < cutoff
                    and not _read(directory / "cgroup.procs").strip()
                ):
                    directory.rmdir()
                    removed += 1
    return removed


def _run_bases(parent: str | None) -> list[Path]:
    """The directories `open_run_cgroup` creates runs' groups in, from this process."""
    try:
        if _unified(parent):
            return [_unified_base(parent)]
        return [base for c in CONTROLLERS if (base := _v1_base(c)) is not None]
    except CgroupUnavailable:
        return []


def _open_v2(base: Path, name: str, limits: CgroupLimits) -> RunCgroup:
    delegated = set(_read(base / "cgroup.subtree_control").split())
    missing = [c for c in CONTROLLERS if c not in delegated]
    if missing:
        try:
            (base / "cgroup.subtree_control").write_text(" ".join(f"+{c}" for c in missing))
        except OSError as exc:
            raise CgroupUnavailable(
                f"{base} does not delegate {', '.join(missing)} to child groups ({exc}); "
                "name a delegated cgroup v2 directory in WA_AGENT_SANDBOX_CGROUP"
            ) from exc
    directory = _make(base / name)
    run = RunCgroup(2, {"unified": directory})
    try:
        _write(directory / "memory.max", str(limits.memory_bytes))
        _write(directory / "memory.swap.max", "0", optional=True)
        _write(directory / "pids.max", str(limits.max_processes))
        quota = max(1000, int(limits.cpu_cores * CPU_PERIOD_US))
        _write(directory / "cpu.max", f"{quota} {CPU_PERIOD_US}")
    except CgroupUnavailable:
        run.discard()
        raise
    return run


def _open_v1(name: str, limits: CgroupLimits) -> RunCgroup:
    directories: dict[str, Path] = {}
    run = RunCgroup(1, directories)
    try:
        for controller in CONTROLLERS:
            base = _v1_base(controller)
            if base is None:
                raise CgroupUnavailable(f"no cgroup v1 {controller} hierarchy under {CGROUP_ROOT}")
            directories[controller] = _make(base / name)
        memory = directories["memory"]
        _write(memory / "memory.limit_in_bytes", str(limits.memory_bytes))
        _write(memory / "memory.memsw.limit_in_bytes", str(limits.memory_bytes), optional=True)
        _write(directories["pids"] / "pids.max", str(limits.max_processes))
        cpu = directories["cpu"]
        _write(cpu / "cpu.cfs_period_us", str(CPU_PERIOD_US))
        _write(cpu / "cpu.cfs_quota_us", str(max(1000, int(limits.cpu_cores * CPU_PERIOD_US))))
    except CgroupUnavailable:
        run.discard()
        raise
    return run


def _own_path(controller: str) -> str:
    """This process's group in a hierarchy ("" = the unified one), relative to its
    mount point, from /proc/self/cgroup (`4:memory:/a/b`, `0::/a/b`)."""
    for line in _read(Path("/proc/self/cgroup")).splitlines():
        _, controllers, path = line.split(":", 2)
        named = controllers.split(",") if controllers else []
        if (controller in named) if controller else not named:
            return path.lstrip("/")
    raise CgroupUnavailable(f"this process is in no {controller or 'cgroup v2'} group")


def _make(directory: Path) -> Path:
    try:
        directory.mkdir()
    except OSError as exc:
        raise CgroupUnavailable(f"cannot create {directory}: {exc}") from exc
    return directory


def _write(path: Path, value: str, *, optional: bool = False) -> None:
    try:
        path.write_text(value)
    except FileNotFoundError:
        if not optional:
            raise CgroupUnavailable(f"{path} does not exist (controller not enabled?)") from None
    except OSError as exc:
        if not optional:
            raise CgroupUnavailable(f"cannot write {path}: {exc}") from exc


def _kill_members(directory: Path, version: int) -> None:
    if version == 2 and (directory / "cgroup.kill").exists():
        with contextlib.suppress(OSError):
            (directory / "cgroup.kill").write_text("1")
        return
    for pid in _read(directory / "cgroup.procs").split():
        with contextlib.suppress(ProcessLookupError, PermissionError, ValueError):
            os.kill(int(pid), signal.SIGKILL)


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def _number(path: Path) -> int | None:
    text = _read(path).strip()
    return int(text) if text.isdigit() else None


def _keyed(path: Path) -> dict[str, int]:
    """`name value` lines (memory.events, pids.events, memory.oom_control)."""
    values: dict[str, int] = {}
    for line in _read(path).splitlines():
        key, _, value = line.partition(" ")
        if value.strip().isdigit():
            values[key] = int(value)
    return values
