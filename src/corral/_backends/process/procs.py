"""One worker process as the manager sees it, its process group, and how its end is
told to the user (manager thread only, except ``signal_group``)."""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import multiprocessing.process
import os
import pickle
import signal
import threading
from collections import deque
from multiprocessing.connection import Connection

from ..._checks import callable_name
from ..._errors import WorkerCrashed, signal_name
from ..._task import Run, Task
from . import tree, wire

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator

#: mainload.ENV (that module runs the main module when imported: not imported here)
_MAIN_ENV = "_CORRAL_FORKSERVER_MAIN"

STARTING, READY, EXITING = "starting", "ready", "exiting"

_CRASH_CAUSES = {
    "SIGSEGV": "a crash in native code (a C extension, ctypes, or an interpreter bug)",
    "SIGBUS": "a crash in native code (bad memory access)",
    "SIGILL": "a crash in native code (illegal instruction)",
    "SIGFPE": "a crash in native code (arithmetic fault)",
    "SIGABRT": "abort() in native code, often a failed assertion in a C extension",
    "SIGKILL": "killed from outside: the out-of-memory killer (see `dmesg`) or kill -9",
    "SIGTERM": "terminated from outside",
}


def crash_error(pid: int, exitcode: int | None, task: Task) -> WorkerCrashed:
    what = callable_name(task.fn)
    if task.opts.name:
        what = f"{task.opts.name} ({what})"
    if exitcode is not None and exitcode < 0:
        sig = signal_name(-exitcode)
        how = f"was killed by {sig}: {_CRASH_CAUSES.get(sig, 'a signal from outside')}"
    else:
        sig = None
        how = (
            f"exited with code {exitcode}: os._exit() or sys.exit() in native code, "
            "or the process was ended from outside"
        )
    return WorkerCrashed(
        f"worker process {pid} {how}, while running {what}. Only this task failed and "
        "the pool replaced the worker; pass retries=N to run such tasks again",
        exitcode=exitcode,
        signal=sig,
        pid=pid,
    )


class Proc:
    """A worker process as the manager sees it (manager thread only)."""

    __slots__ = (
        "conn",
        "escaped",
        "exit_fd",
        "head_started",
        "idle_since",
        "inflight",
        "init_error",
        "killed",
        "last_end",
        "pid",
        "pidfd",
        "process",
        "queued_bytes",
        "reader",
        "ready",
        "reason",
        "revoked",
        "rss",
        "state",
        "tasks_run",
    )

    def __init__(
        self,
        process: multiprocessing.process.BaseProcess,
        conn: Connection,
        exit_fd: tuple[int, bool],
    ) -> None:
        self.exit_fd, self.pidfd = exit_fd
        self.process = process
        self.conn: Connection | None = conn
        self.pid = process.pid or 0
        self.state = STARTING
        self.inflight: deque[Run] = deque()  # handed over, outcome not back; [0] runs
        self.tasks_run = 0
        self.killed = False
        self.idle_since = 0.0
        self.head_started = 0.0
        self.revoked: set[int] = set()
        self.reader = wire.FrameReader()
        self.queued_bytes = 0  # payload bytes handed over behind the running task
        self.rss = 0
        self.init_error: BaseException | None = None
        self.reason: str | None = None  # why the pool ended it (for on_worker_exit)
        self.ready = False  # on_worker_start was announced
        # {pid: pidfd} of what its tasks started outside its process group, as the
        # worker reported them or a kill found them (tree.py); killed once it has ended
        self.escaped: dict[int, int] = {}
        self.last_end = 0.0  # when its last run ended (hooks: runs never overlap)

    def hold_escaped(self, found: dict[int, int]) -> None:
        """Keeps the pidfds of ``found`` (what its tasks started outside its group),
        letting go of those of processes that have ended since."""
        for pid, fd in found.items():
            if pid in self.escaped:
                os.close(fd)  # held already
            else:
                self.escaped[pid] = fd
        if len(self.escaped) > 32:  # a worker whose tasks start many that end by themselves
            for pid, fd in list(self.escaped.items()):
                if tree.ended(fd):
                    os.close(self.escaped.pop(pid))

    def kill_escaped(self) -> None:
        """Kills what its tasks started outside its group (reported or found by a kill)."""
        fds, self.escaped = self.escaped, {}
        tree.signal_all(fds.values(), signal.SIGKILL)
        tree.close_all(fds.values())

    def close_exit_fd(self) -> None:
        if self.pidfd:
            self.pidfd = False
            os.close(self.exit_fd)


#: What the forkserver imports once, so that each worker forked from it starts with it.
_WORKER_MODULES = ["corral._backends.process.worker", "_ctypes"]
#: Runs the parent's main module in the forkserver (see its docstring), last.
_MAIN_MODULE = "corral._backends.process.mainload"


@contextlib.contextmanager
def forkserver_preloads() -> Iterator[None]:
    """Around the start of a pool's first forkserver worker: adds corral's worker
    modules to what the forkserver preloads, so that a worker starts without importing
    them (about 40 ms each, and a replacement after a cancel or a crash waits for it),
    and, when the preloads include ``"__main__"`` (the default), has the forkserver run
    the main module once for all its workers (``mainload``).

    It takes effect if this starts the forkserver: one already running keeps what it
    has. Not called when the pool is made: a pool whose workers were all forked may
    never need the forkserver (importing multiprocessing.forkserver costs a short
    program 2 ms)."""
    from multiprocessing import forkserver, spawn

    server = forkserver._forkserver
    modules = list(getattr(server, "_preload_modules", ["__main__"]))
    wanted = _WORKER_MODULES + ([_MAIN_MODULE] if "__main__" in modules else [])
    missing = [m for m in wanted if m not in modules]
    if missing:
        server.set_forkserver_preload(modules + missing)
    main: dict[str, object] = {}
    if "__main__" in modules and getattr(server, "_forkserver_pid", 0) is None:
        data = spawn.get_preparation_data("corral-forkserver")
        if "init_main_from_name" in data or "init_main_from_path" in data:
            keys = ("init_main_from_name", "init_main_from_path", "sys_path", "sys_argv")
            main = {k: data[k] for k in keys if k in data}
    if not main:
        yield
        return
    # the forkserver inherits this process's environment when it starts; set only for
    # that moment (another thread's child may see it too, and ignores it)
    os.environ[_MAIN_ENV] = pickle.dumps(main).hex()
    try:
        yield
    finally:
        os.environ.pop(_MAIN_ENV, None)


def log_levels() -> dict[str, int]:
    """This process's logger levels, for a new worker to filter as it would."""
    levels = {"": logging.getLogger().level}
    for name, logger in list(logging.Logger.manager.loggerDict.items()):
        if isinstance(logger, logging.Logger) and logger.level != logging.NOTSET:
            levels[name] = logger.level
    return levels


def exit_fd(process: multiprocessing.process.BaseProcess) -> tuple[int, bool]:
    """An fd that becomes readable when ``process`` ends, and whether it is a pidfd
    (ours to close).

    A pidfd (Linux 5.3+) where possible: multiprocessing's sentinel of a forked process
    is a pipe that the child's own children inherit, so a process a task left behind
    (in a session of its own, out of reach of the group kill) would keep the worker's
    death from ever being seen. A forkserver's sentinel has no such problem, and is
    the fallback, as for a process already reaped.
    """
    pidfd_open = getattr(os, "pidfd_open", None)
    if pidfd_open is not None and process.pid is not None:
        try:
            return pidfd_open(process.pid), True
        except OSError:  # gone and reaped already, or no pidfd in this kernel
            pass
    return process.sentinel, False


def single_threaded() -> bool:
    """True when this process has exactly one thread, so that a fork copies no lock that
    another thread holds (Python's and the C libraries' threads both count: Linux's
    /proc says how many the process has). False where it cannot tell."""
    if threading.active_count() != 1 or "fork" not in multiprocessing.get_all_start_methods():
        return False
    return tree.stat_field("self", 17) == 1  # num_threads


def signal_group(pid: int, signum: int) -> None:
    """Sends ``signum`` to a worker's process group (its task's children too), or to
    the worker alone where it is not a group leader; no locks (signal handlers call it)."""
    try:
        if os.getpgid(pid) == pid:
            os.killpg(pid, signum)
            return
    except ProcessLookupError:
        pass
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)
    try:  # the leader is gone, but its group (grandchildren) may remain
        os.killpg(pid, signum)
    except (ProcessLookupError, PermissionError):
        pass
