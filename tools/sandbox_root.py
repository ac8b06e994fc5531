"""What of the host's file system a sandboxed Python sees: the interpreter, its standard
library, the shared libraries those load, and the time-zone database — nothing else.

Binding the whole of `/usr` read-only gave a program every binary and library of the
machine (compilers, shells, curl, setuid helpers' libraries) to run or read. The list
here comes from the interpreter itself (where its standard library lives) and from
`ldd` over it and its compiled standard-library modules, once per process; bubblewrap
bind-mounts each file or folder read-only at its own path.
"""

from __future__ import annotations

import glob
import os
import subprocess
from functools import lru_cache

ZONEINFO = "/usr/share/zoneinfo"


class InterpreterUnusable(RuntimeError):
    """The configured Python cannot be inspected (missing, not Python, no ldd)."""


@lru_cache(maxsize=8)
def python_binds(python: str) -> tuple[str, ...]:
    """bwrap arguments that make `python` runnable inside an otherwise empty `/usr`."""
    executable = os.path.realpath(python)
    stdlib = _stdlib_of(executable)
    modules = sorted(glob.glob(os.path.join(stdlib, "lib-dynload", "*.so")))
    paths = {executable, stdlib, *_shared_libraries([executable, *modules])}
    if os.path.isdir(ZONEINFO):
        paths.add(ZONEINFO)
    arguments: list[str] = []
    for path in sorted(paths):
        arguments += ["--ro-bind", path, path]
    if python != executable:
        arguments += ["--symlink", executable, python]
    return tuple(arguments)


def _stdlib_of(executable: str) -> str:
    try:
        completed = subprocess.run(
            [executable, "-I", "-S", "-c", "import sysconfig; print(sysconfig.get_path('stdlib'))"],
            capture_output=True,
            timeout=10,
            check=True,
            env={"PATH": "/usr/bin:/bin"},
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise InterpreterUnusable(f"{executable} did not say where its library is: {exc}") from exc
    return os.path.realpath(completed.stdout.decode().strip())


def _shared_libraries(binaries: list[str]) -> set[str]:
    """Every library `ldd` says these load, at the path the loader looks for it (the
    folder resolved — /lib is /usr/lib on merged-/usr systems — the name kept, since
    the loader asks for `libz.so.1`, not the file it points to)."""
    try:
        completed = subprocess.run(["ldd", *binaries], capture_output=True, timeout=30, check=False)
    except (OSError, subprocess.SubprocessError) as exc:
        raise InterpreterUnusable(f"ldd failed: {exc}") from exc
    libraries: set[str] = set()
    for line in completed.stdout.decode(errors="replace").splitlines():
        words = line.split()
        if "=>" in words:
            words = words[words.index("=>") + 1 :]
        if words and words[0].startswith("/") and not line.endswith(":"):
            path = words[0]
            libraries.add(
                os.path.join(os.path.realpath(os.path.dirname(path)), os.path.basename(path))
            )
    return libraries
