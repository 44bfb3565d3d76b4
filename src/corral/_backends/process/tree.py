"""The processes a worker's tasks started that left its process group.

A worker leads its own process group, so one ``killpg`` ends whatever its tasks
started. A process that starts a session of its own (``setsid``,
``subprocess.Popen(start_new_session=True)``, a daemon) leaves that group; while the
worker lives, it is still the worker's descendant, found through Linux's
``/proc/<pid>/task/<tid>/children``. Once the worker is gone, such a process belongs
to init and nothing ties it to the pool anymore, so it is found before:

* the worker kills its escaped descendants itself as it exits normally (retired,
  shut down, its initializer failed);
* the parent collects them when it kills a worker (cancel, ``task_timeout``,
  ``shutdown(kill=True)``), sends them the worker's signals and kills them when the
  worker has ended.

Each process is held by a pidfd, opened while it is still a child of the process it
was found under, so a signal never reaches a process that merely reused a pid. A
worker that dies by itself (a crash, ``os._exit``) takes its group with it, but the
processes that had left the group are not reached. Where pidfds or the children files
are missing (not Linux, or a kernel before 5.3) nothing is collected.

(Imported by worker processes: no typing.)
"""

from __future__ import annotations

import contextlib
import os
import signal

SUPPORTED = hasattr(os, "pidfd_open") and hasattr(signal, "pidfd_send_signal")


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


def _parent(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return int(f.read().rsplit(b")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return 0


def escaped(root: int) -> list[int]:
    """pidfds of the descendants of ``root`` outside its process group (``root`` leads
    one); the caller signals them with :func:`signal_all` and closes them."""
    if not SUPPORTED:
        return []
    fds: list[int] = []
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
                fds.append(fd)
            else:
                os.close(fd)  # in the group: killpg reaches it
    return fds


def signal_all(fds: list[int], signum: int) -> None:
    for fd in fds:
        with contextlib.suppress(OSError):
            signal.pidfd_send_signal(fd, signum)


def close_all(fds: list[int]) -> None:
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)


def kill_escaped(root: int) -> None:
    """Kills the descendants of ``root`` that left its process group, at once."""
    fds = escaped(root)
    signal_all(fds, signal.SIGKILL)
    close_all(fds)
