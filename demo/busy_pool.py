"""A program with a busy pool: Ctrl+C it. Used by the demo, bench/bench_interrupt.py
and tests/test_interrupt.py.

Usage: ``python demo/busy_pool.py BACKEND MODE DIR``. BACKEND is ``process``,
``thread``, or ``stdlib-process`` / ``stdlib-thread`` (concurrent.futures' pools, for
comparison: their tasks sleep 60 s, as corral.cancelled() is never true there). When every
worker is busy, the script writes DIR/ready (the worker pids and their children's, for
process pools), then waits for the tasks, which take 60 s (process tasks: an hour).

MODE:
    with         the pool is a with-block; the main thread waits for the results
    open         no with-block: the pool is left open
    thread       the pool is used from a second thread; the main thread joins it
    trap_term    as ``with``, but the tasks ignore SIGTERM and kill_grace is 30 s
    raise        pool left open, then the program fails with ValueError
    finish       pool left open with two 0.3 s tasks; the program ends normally
    own_handler  the program set its own SIGINT handler (sys.exit(7)) first
    catch        pool left open; the program catches KeyboardInterrupt, checks (while it
                 still runs) that its futures were cancelled and its workers are gone,
                 runs one more task on the same pool and writes DIR/survived
    catch_force  as ``trap_term``, but the first KeyboardInterrupt is caught: DIR/caught
                 is written and shutdown() waits out the 30 s grace; a second Ctrl+C
                 there must SIGKILL the workers, which the program checks and writes
                 to DIR/survived
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psutil

import corral
from corral import testing

WORKERS = 2


def busy(path: str, ignore_term: bool = False) -> None:
    if ignore_term:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    testing.write_pids_and_hang(path, grandchild=True)


def short(path: str, finished: str) -> None:
    with open(path + ".tmp", "w") as f:
        f.write(str(os.getpid()))
    os.replace(path + ".tmp", path)
    time.sleep(0.3)
    with open(finished, "a") as f:
        f.write("x")


def make(backend: str, mode: str) -> Any:
    if backend == "thread":
        return corral.ThreadPoolExecutor(WORKERS)
    if backend == "stdlib-process":
        return concurrent.futures.ProcessPoolExecutor(WORKERS)
    if backend == "stdlib-thread":
        return concurrent.futures.ThreadPoolExecutor(WORKERS)
    trap = mode in ("trap_term", "catch_force")
    return corral.ProcessPoolExecutor(WORKERS, kill_grace=30.0 if trap else 0.1)


def start(ex: Any, backend: str, mode: str, tmp: Path) -> list[Any]:
    paths = [str(tmp / f"worker{i}") for i in range(WORKERS)]
    if backend.endswith("thread"):
        gates = [testing.Gate() for _ in range(WORKERS)]
        futures = [ex.submit(testing.sleep_until_cancelled, 60.0, gate) for gate in gates]
        for gate in gates:
            assert gate.wait(60)
        pids = ""
    else:
        if mode == "finish":
            futures = [ex.submit(short, p, str(tmp / "finished")) for p in paths]
        else:
            trap = mode in ("trap_term", "catch_force")
            futures = [ex.submit(busy, p, trap) for p in paths]
        testing.wait_until(lambda: all(os.path.exists(p) for p in paths), timeout=60)
        pids = " ".join(Path(p).read_text() for p in paths)
    (tmp / "ready.tmp").write_text(pids)
    os.replace(tmp / "ready.tmp", tmp / "ready")
    return futures


# ------------------------------------------------------------------ the driver


def alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie counts as gone)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


class Run:
    """Starts this program in a session of its own and waits until its pool is busy."""

    def __init__(self, backend: str, mode: str, tmp: Path, timeout: float = 60.0) -> None:
        self.ready = tmp / "ready"
        self.proc = subprocess.Popen(
            [sys.executable, __file__, backend, mode, str(tmp)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        testing.wait_until(
            lambda: self.ready.exists() or self.proc.poll() is not None,
            timeout=timeout,
            message="the program's pool to be busy",
        )
        if not self.ready.exists():
            self.kill()
            raise RuntimeError(f"the program ended early: {self.proc.communicate()}")
        self.workers = [int(pid) for pid in self.ready.read_text().split()]

    def busy(self) -> bool:
        return self.proc.poll() is None and all(alive(pid) for pid in self.workers)

    def signal(self, *signums: int, group: bool = True) -> float:
        """Sends the signals to the program's process group, as a terminal's Ctrl+C
        does, or with ``group=False`` to the program alone (``kill -INT PID``, an IDE's
        stop button, a supervisor). Returns the time the first was sent.
        """
        sent = time.monotonic()
        for i, signum in enumerate(signums):
            if i:
                time.sleep(0.05)  # the stimulus: a second, separate press
            if group:
                os.killpg(self.proc.pid, signum)
            else:
                os.kill(self.proc.pid, signum)
        return sent

    def end(self, sent: float, timeout: float = 60.0) -> tuple[float | None, int, str]:
        """Waits for the exit; returns (seconds from ``sent``, or None if it outlived
        ``timeout`` and was killed; the exit status; what it printed on stderr)."""
        try:
            _, err = self.proc.communicate(timeout=timeout)
            took: float | None = time.monotonic() - sent
        except subprocess.TimeoutExpired:
            took = None
            self.kill_program()
            _, err = self.proc.communicate()
        finally:
            self.kill_program()
        return took, self.proc.returncode, err

    def workers_left(self, timeout: float = 2.0) -> list[int]:
        """The workers (and workers' children) still running after ``timeout``."""
        with contextlib.suppress(AssertionError):
            testing.wait_until(lambda: not any(alive(pid) for pid in self.workers), timeout=timeout)
        return [pid for pid in self.workers if alive(pid)]

    def kill_program(self) -> None:
        """SIGKILLs the program's process group (not workers that left it)."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def kill(self) -> None:
        """Clean-up: the program and every worker still there."""
        self.kill_program()
        for pid in self.workers if hasattr(self, "workers") else ():
            if alive(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


def main() -> None:
    backend, mode, tmp = sys.argv[1], sys.argv[2], Path(sys.argv[3])
    if mode == "own_handler":
        signal.signal(signal.SIGINT, lambda signum, frame: sys.exit(7))
    if mode in ("with", "trap_term", "own_handler"):
        with make(backend, mode) as ex:
            for fut in start(ex, backend, mode, tmp):
                fut.result()
    elif mode in ("catch", "catch_force"):
        ex = make(backend, mode)
        futures = start(ex, backend, mode, tmp)
        pids = [int(pid) for pid in (tmp / "ready").read_text().split()]
        try:
            for fut in futures:
                fut.result()
        except KeyboardInterrupt:
            pass
        if mode == "catch_force":
            (tmp / "caught").write_text("")
            try:
                ex.shutdown(wait=True)  # the tasks ignore SIGTERM: 30 s of grace
            except KeyboardInterrupt:  # the second Ctrl+C
                pass
            # (idle, within a few ms; the bounds here only tell "gone" from "left behind",
            # and must hold on a busy machine: tests/test_interrupt.py runs this)
            testing.wait_until(lambda: not any(alive(p) for p in pids), timeout=10)
            (tmp / "survived").write_text("workers killed")
            return
        testing.wait_until(lambda: all(f.cancelled() for f in futures), timeout=10)
        testing.wait_until(lambda: not any(alive(p) for p in pids), timeout=10)
        again = ex.submit(pow, 2, 5).result(timeout=60)
        ex.shutdown()
        (tmp / "survived").write_text(f"cancelled, workers gone, then {again}")
    elif mode == "thread":
        ex = make(backend, mode)

        def user() -> None:
            try:
                for fut in start(ex, backend, mode, tmp):
                    fut.result()
            except concurrent.futures.CancelledError:
                pass  # Ctrl+C in the main thread cancelled the pool's work

        thread = threading.Thread(target=user)
        thread.start()
        thread.join()
    else:
        ex = make(backend, mode)
        futures = start(ex, backend, mode, tmp)
        if mode == "raise":
            raise ValueError("the program failed")
        if mode == "finish":
            return  # the pool is left open: exit waits for the two tasks
        for fut in futures:
            fut.result()


if __name__ == "__main__":
    main()
