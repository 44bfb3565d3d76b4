"""corral.testing: the fault kit and the helpers corral's own tests use, public for yours.

Synchronisation (never ``sleep`` in a test):

* :func:`wait_until` polls a predicate until it holds or a deadline passes, backing
  off from 1 ms to 20 ms so that it does not take a core from the work it waits for.
* :class:`Gate` is a one-shot signal that works across threads *and* processes: a test
  opens it to release a task, or a task opens it to tell the test it has started.

Faults, all module-level functions so that they pickle into worker processes:

* :func:`segfault`, :func:`exit_now`, :func:`kill_self`: the worker dies.
* :func:`hang`, :func:`sleep_until_cancelled`: the task does not end by itself.
* :class:`FailsToPickle`, :class:`FailsToUnpickle`: an argument or result that breaks
  on the way in or out; :class:`UnpicklableError`, an exception class that cannot be
  rebuilt in the parent.

Leak checks: :func:`snapshot` and :func:`assert_no_leaks` compare threads, child
processes and shared-memory segments with a baseline, waiting a little for things
that are already on their way out.

Slow machines: the environment variable ``CORRAL_TEST_SLACK`` (a number, 1 by default)
multiplies every deadline of this module (``wait_until``, ``assert_no_leaks``) and the
bounds that tests scale with :func:`slack`. The defaults hold on a busy 2-core machine;
set it higher where everything is slower still (an emulator, a sanitiser build).

(Longer than corral's usual 500 lines: one public module, so a user imports one name.)
"""

from __future__ import annotations

import ctypes
import logging
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from ._context import cancelled

__all__ = [
    "FailsToPickle",
    "FailsToUnpickle",
    "Gate",
    "Snapshot",
    "UnpicklableError",
    "add",
    "assert_no_leaks",
    "exit_now",
    "fail",
    "fail_times",
    "hang",
    "identity",
    "identity_or_fail",
    "kill_self",
    "noop",
    "segfault",
    "slack",
    "sleep_until_cancelled",
    "snapshot",
    "square",
    "wait_until",
]


def _read_slack() -> float:
    text = os.environ.get("CORRAL_TEST_SLACK", "").strip()
    try:
        value = float(text) if text else 1.0
    except ValueError:
        raise ValueError(f"CORRAL_TEST_SLACK must be a number, not {text!r}") from None
    if not value > 0:  # (NaN too)
        raise ValueError(f"CORRAL_TEST_SLACK must be above 0, not {text!r}")
    return value


#: The factor every deadline of the tests is multiplied by (``CORRAL_TEST_SLACK``).
SLACK = _read_slack()


def slack(seconds: float) -> float:
    """``seconds`` times ``CORRAL_TEST_SLACK``: a bound a test asserts on elapsed time.

    Write the bound for a busy machine (what must hold while other processes keep
    every core busy), not the figure of an idle one: the figure belongs in a benchmark.
    """
    return seconds * SLACK


#: The longest pause between two polls of :func:`wait_until` (unless its ``interval``
#: is longer) and of :meth:`Gate.wait` across processes. Polls start at ``interval``
#: and double up to it: a condition that holds soon is seen soon, and one that takes a
#: while does not cost a core that the awaited work (late on a busy machine) needs.
MAX_POLL_INTERVAL = 0.02


def _pauses(first: float) -> Iterator[float]:
    """``first``, then twice as long each time, up to ``MAX_POLL_INTERVAL``."""
    pause, longest = first, max(first, MAX_POLL_INTERVAL)
    while True:
        yield pause
        pause = min(pause * 2, longest)


def wait_until(
    predicate: Callable[[], object],
    timeout: float = 5.0,
    interval: float = 0.001,
    message: str | Callable[[], str] = "condition",
) -> None:
    """Polls ``predicate`` until it returns a truthy value.

    The first pause is ``interval``; each next one is twice as long, up to
    ``MAX_POLL_INTERVAL`` (or ``interval`` if longer). ``timeout`` is multiplied by
    ``CORRAL_TEST_SLACK`` (see :func:`slack`).

    Raises:
        AssertionError: it was still false after ``timeout`` seconds (the message
            says what was awaited).
    """
    limit = slack(timeout)
    deadline = time.monotonic() + limit
    pauses = _pauses(interval)
    while not predicate():
        now = time.monotonic()
        if now >= deadline:
            text = message() if callable(message) else message
            raise AssertionError(f"timed out after {limit:g}s waiting for {text}")
        time.sleep(min(next(pauses), deadline - now))


class Gate:
    """A one-shot signal usable from threads and from worker processes.

    In the process that made it, ``wait`` uses a threading.Event; a pickled copy (in
    a worker process) watches a marker file in a private temporary folder instead,
    so both sides can ``open()`` and ``wait()``. Call ``close()`` (or use ``with``)
    to remove the folder.
    """

    def __init__(self) -> None:
        self._dir = tempfile.mkdtemp(prefix="corral-gate-")
        self._path = os.path.join(self._dir, "open")
        self._event: threading.Event | None = threading.Event()

    def __getstate__(self) -> dict[str, Any]:
        return {"_dir": self._dir, "_path": self._path, "_event": None}

    def open(self) -> None:
        """Opens the gate; every waiter, here or in another process, proceeds."""
        if not os.path.exists(self._path):
            with open(self._path, "w"):
                pass
        if self._event is not None:
            self._event.set()

    def is_open(self) -> bool:
        if self._event is not None and self._event.is_set():
            return True
        return os.path.exists(self._path)

    def wait(self, timeout: float | None = 30.0) -> bool:
        """Blocks until the gate is open; returns False if ``timeout`` passed first.

        Opened in this process, it is seen at once; opened by another process, within
        a poll of the marker file (1 ms, backing off to ``MAX_POLL_INTERVAL``: a task
        waiting on a gate must not spin on the cores that the test's work needs).
        """
        if self._event is not None and self._event.is_set():
            return True
        deadline = None if timeout is None else time.monotonic() + timeout
        pauses = _pauses(0.001)
        while not os.path.exists(self._path):
            pause = next(pauses)
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                pause = min(pause, left)
            if self._event is not None:
                if self._event.wait(pause):
                    return True
            else:
                time.sleep(pause)
        return True

    def close(self) -> None:
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> Gate:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --------------------------------------------------------------------- plain tasks


def noop() -> None:
    """Does nothing."""


def identity(x: Any) -> Any:
    return x


def square(x: int) -> int:
    return x * x


def add(x: int, y: int) -> int:
    return x + y


def fail(message: str = "boom", exc_type: type[BaseException] = ValueError) -> None:
    """Raises ``exc_type(message)``."""
    raise exc_type(message)


def identity_or_fail(x: Any) -> Any:
    """Returns ``x``, or raises ValueError when ``x == "fail"``."""
    if x == "fail":
        raise ValueError("fail")
    return x


def fail_times(counter_path: str, failures: int) -> int:
    """Raises ValueError on its first ``failures`` runs, then returns the run number.

    Runs are counted in the file ``counter_path`` so that the count survives retries
    in other threads or processes.
    """
    runs = _count_run(counter_path)
    if runs <= failures:
        raise ValueError(f"attempt {runs} fails on purpose")
    return runs


def _count_run(counter_path: str) -> int:
    """Adds one to the count kept in ``counter_path`` (atomically) and returns it."""
    import fcntl

    with open(counter_path, "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        f.seek(0)
        runs = int(f.read() or 0) + 1
        f.seek(0)
        f.truncate()
        f.write(str(runs))
    return runs


def wait_for_gate(gate: Gate | None, value: Any = None, started: Gate | None = None) -> Any:
    """Opens ``started`` (if given), waits for ``gate`` (if given), returns ``value``."""
    if started is not None:
        started.open()
    if gate is not None and not gate.wait(60):
        raise TimeoutError("the test never opened the gate")
    return value


def sleep_until_cancelled(limit: float = 60.0, started: Gate | None = None) -> str:
    """Loops until ``corral.cancelled()`` (returns "cancelled") or ``limit`` seconds."""
    if started is not None:
        started.open()
    deadline = time.monotonic() + limit
    pauses = _pauses(0.001)  # as wait_until: no core spent on a task that only waits
    while time.monotonic() < deadline:
        if cancelled():
            return "cancelled"
        time.sleep(next(pauses))
    return "not cancelled"


def hang(started: Gate | None = None, seconds: float = 3600.0) -> None:
    """Ignores cancellation and sleeps (a task that only a kill can stop)."""
    if started is not None:
        started.open()
    time.sleep(seconds)


def log_messages(logger: str, message: str, from_thread: bool = False) -> str:
    """Logs ``message`` at DEBUG, INFO and ERROR (with a traceback) on ``logger``.

    ``from_thread``: the INFO record comes from a thread the task starts.
    """
    log = logging.getLogger(logger)
    log.debug("debug: %s", message)
    if from_thread:
        thread = threading.Thread(target=log.info, args=("info: %s", message))
        thread.start()
        thread.join()
    else:
        log.info("info: %s", message)
    try:
        raise KeyError(message)
    except KeyError:
        log.exception("error: %s", message)
    return message


def print_then_hang(text: str, started: Gate | None = None, end: str = "\n") -> None:
    """Prints ``text`` (stdout) and ``text`` (stderr), then waits for a kill."""
    print(text, end=end)
    print(text, end=end, file=sys.stderr)
    hang(started)


# --------------------------------------------------------------------- faults


def exit_leaving_a_pipe_holder(pid_path: str, code: int = 3) -> None:
    """Starts a process in a session of its own that keeps this process's file
    descriptors (the worker's pipe among them) open for 60 s, writes its pid to
    ``pid_path``, then ends the calling process with ``os._exit(code)``."""
    child = os.fork()
    if child == 0:  # pragma: no cover - the holder
        os.setsid()
        with open(pid_path + ".tmp", "w") as f:
            f.write(str(os.getpid()))
        os.rename(pid_path + ".tmp", pid_path)
        time.sleep(60)
        os._exit(0)
    deadline = time.monotonic() + 10  # (the holder may fail to start: exit anyway)
    while not os.path.exists(pid_path) and time.monotonic() < deadline:
        time.sleep(0.001)
    os._exit(code)


def segfault() -> None:
    """Crashes the calling process with SIGSEGV (a real invalid memory read)."""
    ctypes.string_at(0)


def exit_now(code: int = 3) -> None:
    """Ends the calling process at once, skipping cleanup (``os._exit``)."""
    os._exit(code)


def kill_self(signum: int = signal.SIGKILL) -> None:
    """Sends ``signum`` to the calling process."""
    os.kill(os.getpid(), signum)


class FailsToPickle:
    """An object whose pickling raises (an argument or result that cannot be sent)."""

    def __reduce__(self) -> Any:
        raise TypeError("FailsToPickle refuses to be pickled")


def _refuse_unpickle() -> None:
    raise RuntimeError("FailsToUnpickle refuses to be unpickled")


class FailsToUnpickle:
    """An object that pickles fine but raises when unpickled on the other side."""

    def __reduce__(self) -> Any:
        return (_refuse_unpickle, ())


class UnpicklableError(Exception):
    """An exception whose __init__ needs two arguments, so default unpickling fails."""

    def __init__(self, a: Any, b: Any) -> None:
        super().__init__(f"{a}-{b}")

    def __reduce__(self) -> tuple[Any, ...]:
        # what the default does, said explicitly: rebuilding calls __init__ with one
        # argument, and fails. Without it, tblib's pickling support (installed by
        # importing distributed, and inherited by forked workers) rebuilds exceptions
        # that have their own __init__ and no __reduce__ through __new__ instead.
        return (type(self), self.args)


def raise_unpicklable_error() -> None:
    raise UnpicklableError("a", "b")


def return_unpicklable() -> FailsToPickle:
    return FailsToPickle()


def return_fails_to_unpickle() -> FailsToUnpickle:
    return FailsToUnpickle()


def crash_times(counter_path: str, crashes: int) -> int:
    """Kills its own process (``os._exit(3)``) on its first ``crashes`` runs."""
    runs = _count_run(counter_path)
    if runs <= crashes:
        os._exit(3)
    return runs


def crash_after_gate(gate: Gate) -> None:
    """Waits for ``gate``, then ends its process at once (``os._exit(3)``)."""
    gate.wait(60)
    os._exit(3)


def pid() -> int:
    """The process id of the worker that runs it."""
    return os.getpid()


def parent_pid() -> int:
    return os.getppid()


def start_grandchild(path: str, seconds: int = 600, new_session: bool = False) -> int:
    """Starts a ``sleep`` process, writes its pid to ``path`` and returns, leaving it
    running: a task that leaves a process behind (it must end with its worker).
    ``new_session``: the process leaves the worker's process group (``setsid``)."""
    import subprocess

    child = subprocess.Popen(["sleep", str(seconds)], start_new_session=new_session)
    with open(path + ".tmp", "w") as f:
        f.write(str(child.pid))
    os.replace(path + ".tmp", path)
    child.returncode = 0  # not ours to wait for: the worker's group ends it
    return child.pid


def write_pids_and_hang(
    path: str, started: Gate | None = None, grandchild: bool = False, new_session: bool = False
) -> None:
    """Writes this process's pid (and a child's, if ``grandchild``) to ``path``, then hangs.

    The grandchild is a ``sleep`` process in the worker's process group (or, with
    ``new_session``, in a session of its own): killing the worker must take it down too.
    """
    import subprocess

    pids = [os.getpid()]
    child = None
    if grandchild:
        child = subprocess.Popen(["sleep", "600"], start_new_session=new_session)
        pids.append(child.pid)
    with open(path + ".tmp", "w") as f:
        f.write(" ".join(map(str, pids)))
    os.replace(path + ".tmp", path)
    if started is not None:
        started.open()
    time.sleep(3600)


def write_pid_and_hold_the_gil(path: str) -> int:
    """Writes this process's pid to ``path``, then spins in C code that never releases
    the GIL nor runs a signal handler (for days): no other thread of the process runs
    meanwhile, so only what the kernel does (a signal's default action, SIGKILL) can
    end it."""
    with open(path + ".tmp", "w") as f:
        f.write(str(os.getpid()))
    os.replace(path + ".tmp", path)
    return sum(range(10**16))


_kept: list[bytearray] = []


def allocate_and_keep(megabytes: int) -> int:
    """Allocates and keeps ``megabytes`` MiB in the worker (to grow its RSS); returns pid."""
    block = bytearray(megabytes * 1024 * 1024)
    block[::4096] = b"x" * len(block[::4096])  # touch every page
    _kept.append(block)
    return os.getpid()


_worker_state: dict[str, Any] = {}


def set_state(key: str, value: Any) -> None:
    """An initializer: stores per-worker state that tasks read with :func:`get_state`."""
    _worker_state[key] = value


def get_state(key: str) -> Any:
    return _worker_state.get(key)


def init_ok_times(counter_path: str, successes: int) -> None:
    """An initializer that succeeds on its first ``successes`` runs, then always raises."""
    if _count_run(counter_path) > successes:
        raise RuntimeError("initializer broke on purpose")


def fail_first_init(counter_path: str, failures: int) -> None:
    """An initializer that raises on its first ``failures`` runs (in any worker)."""
    if _count_run(counter_path) <= failures:
        raise RuntimeError("initializer failed on purpose")


# --------------------------------------------------------------------- leak checks


def _helper_pids() -> set[int]:
    """multiprocessing's own long-lived helpers (forkserver, resource tracker)."""
    pids = set()
    try:
        from multiprocessing import forkserver, resource_tracker

        for owner in (forkserver._forkserver, resource_tracker._resource_tracker):
            pid = getattr(owner, "_forkserver_pid", None) or getattr(owner, "_pid", None)
            if pid:
                pids.add(pid)
    except Exception:  # pragma: no cover - internals moved
        pass
    return pids


def _child_pids() -> set[int]:
    try:
        import psutil
    except ImportError:  # pragma: no cover - psutil is a dependency
        return set()
    try:
        children = psutil.Process().children(recursive=True)
    except psutil.Error:  # pragma: no cover
        return set()
    helpers = _helper_pids()
    alive = set()
    for child in children:
        try:
            if child.pid in helpers or child.status() == psutil.STATUS_ZOMBIE:
                continue
        except psutil.Error:
            continue
        alive.add(child.pid)
    return alive


def _shm_names() -> set[str]:
    try:
        return {n for n in os.listdir("/dev/shm") if "corral" in n or n.startswith("psm_")}
    except OSError:  # pragma: no cover - no /dev/shm on this platform
        return set()


def _helper_fds() -> set[int]:
    fds = set()
    try:
        from multiprocessing import forkserver, resource_tracker

        for fd in (
            getattr(forkserver._forkserver, "_forkserver_alive_fd", None),
            getattr(resource_tracker._resource_tracker, "_fd", None),
        ):
            if fd is not None:
                fds.add(fd)
    except Exception:  # pragma: no cover - internals moved
        pass
    return fds


def _open_pipes() -> set[str]:
    """Pipes and sockets this process holds open, as "fd -> pipe:[inode]"."""
    found: set[str] = set()
    helpers = _helper_fds()
    try:
        names = os.listdir("/proc/self/fd")
    except OSError:  # pragma: no cover - not Linux
        return found
    for name in names:
        if int(name) in helpers:
            continue
        try:
            target = os.readlink(f"/proc/self/fd/{name}")
        except OSError:
            continue
        if target.startswith(("pipe:", "socket:")):
            found.add(f"{name} -> {target}")
    return found


@dataclass(frozen=True)
class Snapshot:
    """Threads, child processes, pipes and shared-memory segments alive at one moment."""

    threads: frozenset[int] = field(default_factory=frozenset)
    processes: frozenset[int] = field(default_factory=frozenset)
    shm: frozenset[str] = field(default_factory=frozenset)
    pipes: frozenset[str] = field(default_factory=frozenset)


def snapshot() -> Snapshot:
    return Snapshot(
        threads=frozenset(t.ident for t in threading.enumerate() if t.ident is not None),
        processes=frozenset(_child_pids()),
        shm=frozenset(_shm_names()),
        pipes=frozenset(_open_pipes()),
    )


def _leaks(before: Snapshot) -> dict[str, Any]:
    now = snapshot()
    found: dict[str, Any] = {}
    threads = [
        t.name
        for t in threading.enumerate()
        if t.ident in now.threads - before.threads and t.is_alive()
    ]
    if threads:
        found["threads"] = threads
    processes = now.processes - before.processes
    if processes:
        found["processes"] = sorted(processes)
    shm = now.shm - before.shm
    if shm:
        found["shared memory"] = sorted(shm)
    pipes = now.pipes - before.pipes
    if pipes:
        found["pipes"] = sorted(pipes)
    return found


def assert_no_leaks(before: Snapshot, timeout: float = 5.0) -> None:
    """Waits up to ``timeout`` for everything started since ``before`` to be gone.

    Raises:
        AssertionError: naming the threads, processes or segments still there.
    """
    try:
        wait_until(lambda: not _leaks(before), timeout, interval=0.005, message="cleanup")
    except AssertionError:
        raise AssertionError(f"leaked after the test: {_leaks(before)}") from None
