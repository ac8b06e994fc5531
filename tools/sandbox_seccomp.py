"""The code_interpreter's system-call filter, handed to bubblewrap (`--seccomp FD`).

Namespaces decide what a sandboxed program can see; this filter narrows what it can
ask the kernel for at all. A calculation in the standard library never needs to trace
another process, load a BPF program or a kernel module, set up io_uring, mount a file
system, handle keys or open netlink and raw sockets — and those are where kernel
escapes tend to live. They answer EPERM (sockets outside Unix/IPv4/IPv6:
EAFNOSUPPORT), so a program that tries gets a plain Python error; everything else is
allowed. System calls of another architecture's ABI (32-bit `int 0x80` on x86-64) kill
the process, as libseccomp does by default.

bubblewrap applies the filter after building the sandbox and just before it starts
Python, so bubblewrap itself is unaffected. The program is compiled once per process
by libseccomp (through `pyseccomp`, a ctypes binding of the system's libseccomp.so.2);
without libseccomp the sandbox still runs, with its namespaces and limits, and the
start-up log says the filter is missing.
"""

from __future__ import annotations

import errno
import os
import socket
import tempfile
from functools import lru_cache

import structlog

log = structlog.get_logger(__name__)

DENIED = (
    "ptrace", "process_vm_readv", "process_vm_writev", "kcmp", "pidfd_getfd",
    "bpf", "perf_event_open", "userfaultfd",
    "io_uring_setup", "io_uring_enter", "io_uring_register",
    "keyctl", "add_key", "request_key",
    "mount", "umount2", "pivot_root", "chroot", "open_tree", "move_mount",
    "fsopen", "fsconfig", "fsmount", "fspick", "mount_setattr",
    "unshare", "setns",
    "init_module", "finit_module", "delete_module", "kexec_load", "kexec_file_load",
    "swapon", "swapoff", "reboot", "acct", "quotactl", "syslog", "vhangup",
    "name_to_handle_at", "open_by_handle_at", "fanotify_init", "lookup_dcookie",
    "iopl", "ioperm", "uselib", "personality",
    "settimeofday", "clock_settime", "clock_adjtime", "adjtimex",
)  # fmt: skip
"""System calls a standard-library calculation has no use for."""

ALLOWED_SOCKET_FAMILIES = (socket.AF_UNIX, socket.AF_INET, socket.AF_INET6)


@lru_cache(maxsize=1)
def compiled_filter() -> bytes | None:
    """The filter as a BPF program, or None when libseccomp is not available here."""
    try:
        import pyseccomp as seccomp
    except (ImportError, OSError, AttributeError) as exc:  # no libseccomp.so.2
        log.warning("code_interpreter.no_seccomp", reason=str(exc)[:200])
        return None
    program = seccomp.SyscallFilter(seccomp.ALLOW)
    for name in DENIED:
        try:
            program.add_rule(seccomp.ERRNO(errno.EPERM), name)
        except OSError:  # not a system call on this architecture
            continue
    refuse_family = seccomp.ERRNO(errno.EAFNOSUPPORT)
    highest = max(ALLOWED_SOCKET_FAMILIES)
    for family in range(highest):
        if family not in ALLOWED_SOCKET_FAMILIES:
            program.add_rule(refuse_family, "socket", seccomp.Arg(0, seccomp.EQ, family))
    program.add_rule(refuse_family, "socket", seccomp.Arg(0, seccomp.GT, highest))
    with tempfile.TemporaryFile() as exported:
        program.export_bpf(exported)
        exported.seek(0)
        return exported.read()


def filter_fd(program: bytes) -> int:
    """A file descriptor bwrap reads the program from (a memory file, rewound); the
    caller passes it to the child and closes it after the start."""
    fd = os.memfd_create("wa-agent-seccomp", 0)
    os.write(fd, program)
    os.lseek(fd, 0, os.SEEK_SET)
    return fd
