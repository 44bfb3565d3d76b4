"""The processes a worker's tasks started that left its process group.

A worker leads its own process group, so one ``killpg`` ends whatever its tasks
started. A process that starts a session of its own (``setsid``,
``subprocess.Popen(start_new_session=True)``, a daemon) leaves that group; while the
worker lives, it is still the worker's descendant, found through Linux's
``/proc/<pid>/task/<tid>/children``. Once the worker is gone, such a process belongs
to init and nothing ties it to the pool anymore, so it is found before:

* the worker kills its escaped descendants itself as it exits normally (retired,
  shut down, its initializer failed);
* after a task that ran ``CHECK_AFTER`` or longer (starting a process takes longer
  than that), the worker looks for new ones and reports their pids (``wire.Escaped``);
  the parent holds each by a pidfd, so that they end with the worker however it ends,
  a crash included;
* the parent also collects them when it kills a worker (cancel, ``task_timeout``,
  ``shutdown(kill=True)``), sends them the worker's signals, and kills them all once
  the worker has ended.

A process found by walking the tree is held by a pidfd opened while it is still a
child of the process it was found under, so a signal never reaches a process that
merely reused a pid; a reported one is opened a moment after the worker saw it (a pid
is not reused that fast). What a task starts in a session of its own and a crash kills
before the worker could report it (the same task) is not reached. Where pidfds or the
children files are missing (not Linux, or a kernel before 5.3) nothing is collected.

(Imported by worker processes: no typing.)
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
from collections.abc import Iterable

SUPPORTED = hasattr(os, "pidfd_open") and hasattr(signal, "pidfd_send_signal")

#: Seconds a task must have run before its worker looks for processes it left: less
#: than starting a process takes, so that no-op tasks pay nothing for the check.
CHECK_AFTER = 0.0002


def _children(pid: int) -> list[int]:
    found: list[int] = []
    try:
        threads = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for tid in threads:
        try:
            with open(f"/proc/{pid}/task/{tid}/children", "rb") as f:
                found.extend(int(child) for child in f.read().split())
        except (OSError, ValueError):
            pass
    return found


def stat_field(pid: int | str, index: int) -> int:
    """Field ``index`` of ``/proc/<pid>/stat`` counted after the command name (0: the
    state; 1: the parent's pid; 17: the number of threads), or -1 where it can't be
    read (no such process, not Linux)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return int(f.read().rsplit(b")", 1)[1].split()[index])
    except (OSError, ValueError, IndexError):
        return -1


def _parent(pid: int) -> int:
    return stat_field(pid, 1)


def escaped(root: int) -> dict[int, int]:
    """{pid: pidfd} of the descendants of ``root`` outside its process group (``root``
    leads one); the caller signals them with :func:`signal_all` and closes them."""
    if not SUPPORTED:
        return {}
    fds: dict[int, int] = {}
    parents = [root]
    while parents:
        parent = parents.pop()
        for pid in _children(parent):
            try:
                fd = os.pidfd_open(pid)
            except OSError:
                continue  # it has ended (and been reaped)
            if _parent(pid) != parent:  # the pid was reused after it ended
                os.close(fd)
                continue
            parents.append(pid)  # its own children may have left the group too
            try:
                outside = os.getpgid(pid) != root
            except OSError:
                outside = False
            if outside:
                fds[pid] = fd
            else:
                os.close(fd)  # in the group: killpg reaches it
    return fds


def escaped_pids(root: int) -> set[int]:
    """The pids of what :func:`escaped` finds (a worker reports them to its parent)."""
    fds = escaped(root)
    close_all(fds.values())
    return set(fds)


def hold(pids: Iterable[int]) -> dict[int, int]:
    """{pid: pidfd} of the processes of ``pids`` still running (a worker's report)."""
    fds: dict[int, int] = {}
    if SUPPORTED:
        for pid in pids:
            with contextlib.suppress(OSError):
                fds[pid] = os.pidfd_open(pid)
    return fds


def ended(fd: int) -> bool:
    """True once the process of the pidfd ``fd`` has exited (the pidfd is readable)."""
    readable, _, _ = select.select([fd], [], [], 0)
    return bool(readable)


def signal_all(fds: Iterable[int], signum: int) -> None:
    for fd in fds:
        with contextlib.suppress(OSError):
            signal.pidfd_send_signal(fd, signum)


def close_all(fds: Iterable[int]) -> None:
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)


def kill_escaped(root: int) -> None:
    """Kills the descendants of ``root`` that left its process group, at once."""
    fds = escaped(root).values()
    signal_all(fds, signal.SIGKILL)
    close_all(fds)
