"""The code_interpreter sandbox against real escape attempts, on this machine's bwrap.

Each test runs the tool the agents get (`make_code_interpreter_tool`) with a program a
hostile or careless model could write, and checks what the model reads back — and, for
the attempts that could leave traces (a connection, stray processes), the host itself.
The last test runs it through a real agent turn (webhook → worker → fake model → tool).
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import time
import uuid
from dataclasses import replace
from pathlib import Path

import pytest
from langchain_core.tools import BaseTool

from tests.fakes.graph_api import FakeGraphAPI
from tests.fakes.meta_payloads import envelope, text_message
from tests.fakes.openai_server import FakeOpenAIServer, ToolCall
from tests.support import eventually, running_service, service_settings
from tools.sandbox import (
    THROWAWAY_UIDS,
    SandboxLimits,
    SandboxUnavailable,
    cgroup_problem,
    make_code_interpreter_tool,
)
from tools.sandbox_cgroup import (
    RUN_PREFIX,
    STALE_AFTER_S,
    CgroupLimits,
    RunCgroup,
    joining_command,
    open_run_cgroup,
    remove_stale_runs,
)

LIMITS = SandboxLimits(wall_seconds=8.0, cpu_seconds=4)


@pytest.fixture(scope="module")
def interpreter() -> BaseTool:
    return make_code_interpreter_tool(LIMITS)


async def run(tool: BaseTool, code: str) -> str:
    return str(await tool.ainvoke({"code": code}))


async def test_a_calculation_prints_its_result(interpreter: BaseTool) -> None:
    answer = await run(interpreter, "print(1 + 1)")
    assert answer.splitlines() == ["ok", "2"]


async def test_the_host_files_are_out_of_reach(interpreter: BaseTool) -> None:
    host_passwd = Path("/etc/passwd").read_text()  # noqa: ASYNC240 - a test's setup
    repository_file = Path(__file__).resolve()  # noqa: ASYNC240
    attempts = [
        "print(open('/etc/passwd').read())",
        "print(open('/usr/../etc/passwd').read())",
        "print(open('/proc/1/root/etc/passwd').read())",
        f"print(open({str(repository_file)!r}).read())",
        "import os; print(open(os.path.expanduser('~root/.bashrc')).read())",
    ]
    for code in attempts:
        answer = await run(interpreter, code)
        assert answer.startswith("failed"), code
        assert "FileNotFoundError" in answer or "PermissionError" in answer, answer
        assert host_passwd.splitlines()[0] not in answer
        assert "escape attempts" not in answer  # this file's own text


async def test_the_sandbox_has_its_own_empty_file_system(interpreter: BaseTool) -> None:
    answer = await run(
        interpreter,
        "import os\n"
        "open('notes.txt', 'w').write('kept for this run only')\n"
        "print(sorted(os.listdir('/')), os.getcwd(), open('notes.txt').read())",
    )
    assert answer.splitlines()[0] == "ok"
    assert "['bin', 'dev', 'lib', 'lib64', 'proc', 'scratch', 'tmp', 'usr']" in answer
    assert "/scratch kept for this run only" in answer
    second = await run(interpreter, "import os; print(os.listdir('.'))")
    assert second.splitlines() == ["ok", "[]"]  # nothing survives from one run to the next


async def test_no_connection_leaves_the_sandbox(interpreter: BaseTool) -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.setblocking(False)
        port = listener.getsockname()[1]
        answer = await run(
            interpreter,
            "import socket\n"
            f"socket.create_connection(('127.0.0.1', {port}), timeout=2)\n"
            "print('connected')",
        )
        with pytest.raises(BlockingIOError):
            listener.accept()  # the host's server saw no connection
    assert answer.startswith("failed")
    assert "connected" not in answer.splitlines()
    assert "note: the sandbox has no network access" in answer

    outside = await run(
        interpreter,
        "import urllib.request\nprint(urllib.request.urlopen('http://1.1.1.1', timeout=2).status)",
    )
    assert outside.startswith("failed")
    assert "note: the sandbox has no network access" in outside


async def test_a_fork_bomb_is_stopped_and_leaves_no_process_behind(interpreter: BaseTool) -> None:
    answer = await run(interpreter, "import os\nwhile True:\n    os.fork()")
    assert answer.startswith(("failed", "stopped"))  # stopped: its tracebacks filled the output
    assert "note: the process limit was reached" in answer
    await eventually(_no_sandbox_process_left, within=10, what="the forked processes to die")


async def test_allocating_4_gb_fails_with_a_memory_error(interpreter: BaseTool) -> None:
    answer = await run(interpreter, "block = bytearray(4 * 1024 ** 3)\nprint(len(block))")
    assert answer.startswith("failed")
    assert "MemoryError" in answer
    assert "note: the memory limit was reached" in answer
    assert "4294967296" not in answer


async def test_an_endless_loop_is_cut_by_the_cpu_limit() -> None:
    tool = make_code_interpreter_tool(replace(LIMITS, cpu_seconds=1))
    answer = await run(tool, "print('started', flush=True)\nwhile True:\n    pass")
    assert answer.startswith("failed")
    assert "note: stopped after 1 s of CPU time (CPU limit)" in answer
    assert "started" in answer  # what it printed before is kept


async def test_a_sleeping_program_is_cut_at_the_wall_time_limit() -> None:
    tool = make_code_interpreter_tool(replace(LIMITS, wall_seconds=1.0))
    answer = await run(tool, "import time\nprint('waiting', flush=True)\ntime.sleep(60)")
    assert answer.startswith("stopped")
    assert "note: stopped after 1 s (wall-time limit)" in answer
    await eventually(_no_sandbox_process_left, within=10, what="the sleeper to be killed")


async def test_long_output_is_cut(interpreter: BaseTool) -> None:
    answer = await run(interpreter, "for i in range(100000):\n    print(i)")
    assert answer.startswith("stopped")
    assert f"note: output cut at {LIMITS.max_output_chars} characters" in answer
    assert len(answer) < LIMITS.max_output_chars + 200
    assert "99999" not in answer


async def test_big_files_and_overlong_programs_are_refused(interpreter: BaseTool) -> None:
    big_file = await run(interpreter, "open('big', 'wb').write(b'x' * (64 * 1024 * 1024))")
    assert "note: the file size limit was reached" in big_file
    overlong = await run(interpreter, "x = 1\n" * LIMITS.max_code_chars)
    assert overlong.startswith("refused")
    assert "longer than" in overlong


MEMORY_HOG = """
import os, time
children = []
for _ in range(4):
    pid = os.fork()
    if pid == 0:
        block = b"x" * (120 * 1024 * 1024)  # touched: every page is resident
        print("allocated", flush=True)
        time.sleep(2)
        os._exit(0)
    children.append(pid)
for pid in children:
    os.waitpid(pid, 0)
"""


async def test_a_memory_hog_in_several_processes_is_bounded_as_a_whole(
    interpreter: BaseTool,
) -> None:
    """Each process stays under its own 256 MB, four of them would take 480 MB: the
    run as a whole gets its 256 MB, no more. Only a bound on the whole group makes the
    kernel kill anything here (no process alone reaches a limit). How many print
    "allocated" first is the kernel's choice: it kills the largest member, often one
    that already printed, which lets the next one finish."""
    _needs_cgroups()
    # Groups another run left behind (a test session killed mid-run) are not this one's.
    earlier = set(_sandbox_cgroups_left())
    answer = await run(interpreter, MEMORY_HOG)
    assert "note: the memory limit was reached" in answer, answer
    await eventually(_no_sandbox_process_left, within=10, what="the hog's processes to die")

    async def no_group_left() -> bool:
        return set(_sandbox_cgroups_left()) <= earlier

    await eventually(no_group_left, within=60, what="the run's cgroups deleted")


async def test_a_run_gets_its_share_of_one_core_however_much_it_forks() -> None:
    """Three processes spinning for 2 s of wall time could take both cores (4 s of CPU);
    the run is held to `cpu_cores` (0.5) of one core, whatever it forks."""
    _needs_cgroups()
    tool = make_code_interpreter_tool(replace(LIMITS, cpu_cores=0.5))
    answer = await run(
        tool,
        "import os, time\n"
        "end = time.monotonic() + 2\n"
        "children = []\n"
        "for _ in range(2):\n"
        "    pid = os.fork()\n"
        "    if pid == 0:\n"
        "        break\n"
        "    children.append(pid)\n"
        "while time.monotonic() < end:\n"
        "    pass\n"
        "print('cpu', time.process_time(), flush=True)\n"
        "for pid in children:\n"
        "    os.waitpid(pid, 0)\n",
    )
    assert answer.startswith("ok"), answer
    used = [float(line.split()[1]) for line in answer.splitlines() if line.startswith("cpu ")]
    assert len(used) == 3
    assert sum(used) <= 0.5 * 2 * 1.3, used


async def test_runs_beyond_the_concurrency_limit_wait_for_a_free_slot() -> None:
    tool = make_code_interpreter_tool(replace(LIMITS, max_concurrent_runs=1))
    program = "import time\nprint('started', time.time())\ntime.sleep(1)"
    first, second = await asyncio.gather(run(tool, program), run(tool, program))
    starts = sorted(float(answer.split()[-1]) for answer in (first, second))
    assert starts[1] - starts[0] >= 0.9, (first, second)


async def test_without_a_control_group_a_run_gets_only_a_few_processes() -> None:
    tool = make_code_interpreter_tool(replace(LIMITS, cgroup="off"))
    one_child = await run(tool, "import os\nif os.fork() == 0:\n    os._exit(0)\nprint('ok')")
    assert one_child.splitlines() == ["ok", "ok"]
    many = await run(
        tool, "import os\nfor _ in range(4):\n    if os.fork() == 0:\n        os._exit(0)"
    )
    assert "note: the process limit was reached" in many
    await eventually(_no_sandbox_process_left, within=10, what="the children to die")


async def test_only_the_interpreter_and_its_libraries_are_there(interpreter: BaseTool) -> None:
    answer = await run(
        interpreter,
        "import os, sqlite3, ssl, ctypes, zoneinfo, decimal, lzma, hashlib\n"
        "print(zoneinfo.ZoneInfo('Africa/Kigali'), sqlite3.sqlite_version > '3')\n"
        "print(sorted(os.listdir('/usr/bin')))\n"
        "absent = ('/usr/bin/sh', '/bin/sh', '/usr/bin/gcc', '/usr/sbin')\n"
        "print([os.path.exists(p) for p in absent])",
    )
    lines = answer.splitlines()
    assert lines[:2] == ["ok", "Africa/Kigali True"], answer
    assert all(name.startswith("python") for name in eval(lines[2])), answer
    assert lines[3] == "[False, False, False, False]"


async def test_kernel_interfaces_a_calculation_never_needs_are_refused(
    interpreter: BaseTool,
) -> None:
    answer = await run(
        interpreter,
        "import ctypes, errno, socket\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        "print('ptrace', libc.ptrace(0, 0, 0, 0), errno.errorcode[ctypes.get_errno()])\n"
        "try:\n"
        "    socket.socket(socket.AF_NETLINK, socket.SOCK_RAW)\n"
        "    print('netlink open')\n"
        "except OSError as exc:\n"
        "    print('netlink', errno.errorcode[exc.errno])\n",
    )
    assert "ptrace -1 EPERM" in answer, answer
    assert "netlink EAFNOSUPPORT" in answer, answer


def _needs_cgroups() -> None:
    problem = cgroup_problem(LIMITS)
    if problem is not None:
        pytest.skip(f"no control group for sandbox runs here: {problem}")


def _sandbox_cgroups_left() -> list[str]:
    return [str(p) for p in Path("/sys/fs/cgroup").rglob(RUN_PREFIX + "*")]


def test_the_groups_a_dead_process_left_behind_are_deleted() -> None:
    """A service killed mid-run leaves its run's group behind, empty once the run's
    processes died with it; the next process to offer the tool deletes it. A recent
    group (another process's run) and one with a process in it are left alone."""
    _needs_cgroups()
    limits = CgroupLimits(memory_bytes=64 * 2**20, max_processes=4, cpu_cores=0.5)
    dead, recent, busy = (open_run_cgroup(limits) for _ in range(3))
    sleeper = subprocess.Popen(joining_command(busy, ["sleep", "60"]))
    try:
        deadline = time.monotonic() + 10
        while not all(Path(procs).read_text().strip() for procs in busy.procs_files):
            assert time.monotonic() < deadline, "the sleeper never joined its group"
            time.sleep(0.01)
        _age(dead)
        _age(busy)
        removed = remove_stale_runs()
        assert removed >= len(dead.directories)
        assert not any(directory.exists() for directory in dead.directories.values())
        assert all(directory.exists() for directory in recent.directories.values())
        assert all(directory.exists() for directory in busy.directories.values())
    finally:
        sleeper.kill()
        sleeper.wait()
        for run in (dead, recent, busy):
            run.discard()


def _age(run: RunCgroup) -> None:
    """As if created before the stale age (a run's group is never older than minutes)."""
    then = time.time() - STALE_AFTER_S - 60
    for directory in run.directories.values():
        os.utime(directory, (then, then))


def test_without_bubblewrap_the_tool_is_not_offered() -> None:
    with pytest.raises(SandboxUnavailable, match="not installed"):
        make_code_interpreter_tool(replace(LIMITS, bwrap="/nonexistent/bwrap"))


async def _no_sandbox_process_left() -> bool:
    """No process of the sandbox's throwaway users on the host (killed ones take a few
    milliseconds to be reaped, hence the polling)."""
    for entry in Path("/proc").iterdir():  # noqa: ASYNC240 - /proc is memory
        if entry.name.isdigit():
            try:
                if entry.stat().st_uid >= THROWAWAY_UIDS:
                    return False
            except FileNotFoundError:
                continue
    return True


async def test_an_agent_calculates_with_the_code_interpreter_in_a_real_turn(
    db_url: str, graph_api: FakeGraphAPI, openai_server: FakeOpenAIServer
) -> None:
    customer = "2507" + str(uuid.uuid4().int)[:8]
    settings = service_settings(
        db_url,
        whatsapp_api_base_url=graph_api.base_url,
        openai_api_key="sk-test",
        openai_base_url=openai_server.base_url + "/v1",
        flags=frozenset({"code_interpreter"}),
    )
    async with running_service(settings) as service:
        # An operator allows the tool for every agent (it is in no default allow-list).
        await service.execute(
            "UPDATE agent_configurations SET tools = array_append(tools, 'code_interpreter')"
        )
        service.services.agents.invalidate()
        openai_server.script(
            ToolCall("code_interpreter", {"code": "print(3 * 45000 * 0.9)"}),
            "Three helmets with the 10% discount: 121,500 RWF.",
        )
        await service.post_webhook(envelope(text_message(customer, "price of 3 helmets -10%?")))

        async def recorded() -> bool:
            rows = await service.fetch("SELECT tool FROM agent_tool_executions")
            return any(row["tool"] == "code_interpreter" for row in rows)

        await eventually(recorded, within=30, what="the tool call to be recorded")
        [row] = await service.fetch(
            "SELECT success, error FROM agent_tool_executions WHERE tool = 'code_interpreter'"
        )
        await graph_api.wait_for_async(lambda: len(graph_api.texts_to(customer)) == 1, 10)
    # The model's next call read the sandbox's output as the tool result.
    last_call = openai_server.requests[-1]["messages"]
    assert [m["content"] for m in last_call if m["role"] == "tool"] == ["ok\n121500.0"]
    assert graph_api.texts_to(customer) == ["Three helmets with the 10% discount: 121,500 RWF."]
    assert (row["success"], row["error"]) == (True, None)
