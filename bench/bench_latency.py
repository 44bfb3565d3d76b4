"""Latency of stopping work: task_timeout and cancel() of a running task.

For the process pool (DESIGN.md §4: future resolved <= 50 ms after the deadline,
replacement worker serving <= 250 ms later), a TaskGroup whose task fails (its hung
sibling's worker and grandchild gone), a parent SIGKILLed (its workers gone), and for
the thread pool (a task polling corral.cancelled() stops soon after cancel()). Figures
are medians and maxima over ``--repeat`` runs on a warm pool.

These are the figures; the tests (tests/test_process.py, tests/test_thread.py,
tests/contract) check only what holds on a busy machine too: that the work stops.

Run: ``.venv/bin/python bench/bench_latency.py [--repeat 20]``
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import psutil

import corral
from corral import testing


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def process_timeout(repeat: int, limit: float) -> list[float]:
    late = []
    with corral.ProcessPoolExecutor(2, min_workers=2) as ex:
        ex.submit(testing.noop).result()
        for _ in range(repeat):
            begin = time.monotonic()
            fut = ex.options(task_timeout=limit).submit(testing.hang)
            try:
                fut.result(timeout=30)
            except corral.TaskTimeout:
                pass
            late.append(time.monotonic() - begin - limit)
    return late


def process_cancel(repeat: int) -> tuple[list[float], list[float], list[float]]:
    resolve, gone, serving = [], [], []
    with corral.ProcessPoolExecutor(1, min_workers=1) as ex:
        ex.submit(testing.noop).result()
        for _ in range(repeat):
            with testing.Gate() as started:
                fut = ex.submit(testing.hang, started)
                started.wait(30)
                pid = next(iter(ex._backend._procs))  # the one worker
                begin = time.monotonic()
                fut.cancel()
                resolve.append(time.monotonic() - begin)
                nxt = ex.submit(testing.noop)
                while not _gone(pid):
                    time.sleep(0.0005)
                gone.append(time.monotonic() - begin)
                nxt.result(timeout=30)
                serving.append(time.monotonic() - begin)
    return resolve, gone, serving


def _wait_for_pids(path: Path) -> list[int]:
    testing.wait_until(path.exists, 30)
    return [int(x) for x in path.read_text().split()]


def task_group_failure(repeat: int) -> tuple[list[float], list[float]]:
    """A group's task fails while its sibling hangs (with a grandchild): seconds until
    the group raised, and until the sibling's worker and grandchild were gone."""
    raised, gone = [], []
    with corral.ProcessPoolExecutor(2, min_workers=2) as ex, tempfile.TemporaryDirectory() as tmp:
        ex.submit(testing.noop).result()
        for i in range(repeat):
            pidfile = Path(tmp) / f"pids{i}"
            begin = 0.0
            try:
                with corral.TaskGroup(ex) as group:
                    group.submit(testing.write_pids_and_hang, str(pidfile), None, True)
                    pids = _wait_for_pids(pidfile)
                    begin = time.monotonic()
                    group.submit(testing.fail, "first failure")
            except Exception:  # the group's ExceptionGroup
                pass
            raised.append(time.monotonic() - begin)
            while not all(_gone(p) for p in pids):
                time.sleep(0.0005)
            gone.append(time.monotonic() - begin)
    return raised, gone


PARENT = """
import sys, time, corral
from corral import testing
if __name__ == "__main__":
    ex = corral.ProcessPoolExecutor(2)
    for i in range(2):
        ex.submit(testing.write_pids_and_hang, sys.argv[1] + str(i))
    time.sleep(600)
"""


def parent_killed(repeat: int) -> list[float]:
    """A parent with two busy workers is SIGKILLed: seconds until both workers are gone."""
    gone = []
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "parent.py"
        script.write_text(textwrap.dedent(PARENT))
        for i in range(repeat):
            prefix = str(Path(tmp) / f"workers{i}-")
            parent = subprocess.Popen([sys.executable, str(script), prefix])
            try:
                workers = [_wait_for_pids(Path(f"{prefix}{w}"))[0] for w in range(2)]
                begin = time.monotonic()
                os.kill(parent.pid, signal.SIGKILL)
                parent.wait()
                while not all(_gone(p) for p in workers):
                    time.sleep(0.0005)
                gone.append(time.monotonic() - begin)
            finally:
                parent.kill()
                parent.wait()
    return gone


def _poll_until_cancelled(started: testing.Gate, stopped: list[float]) -> None:
    started.open()
    while not corral.cancelled():
        time.sleep(0.001)
    stopped.append(time.monotonic())


def thread_cancel(repeat: int) -> list[float]:
    stops = []
    with corral.ThreadPoolExecutor(1) as ex:
        for _ in range(repeat):
            stopped: list[float] = []
            with testing.Gate() as started:
                fut = ex.submit(_poll_until_cancelled, started, stopped)
                started.wait(30)
                begin = time.monotonic()
                fut.cancel()
                testing.wait_until(lambda s=stopped: s, 5)  # type: ignore[misc]
                stops.append(stopped[0] - begin)
    return stops


def show(name: str, values: list[float]) -> None:
    ms = [v * 1000 for v in values]
    print(f"  {name:48} median {statistics.median(ms):7.2f} ms   max {max(ms):7.2f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    print(f"best case on a warm pool, {args.repeat} runs each")
    print("process pool")
    show("task_timeout=0.2: future resolved after the deadline", process_timeout(args.repeat, 0.2))
    resolve, gone, serving = process_cancel(args.repeat)
    show("cancel(): future resolved", resolve)
    show("cancel(): worker process gone", gone)
    show("cancel(): replacement worker served a task", serving)
    raised, gone = task_group_failure(args.repeat)
    show("TaskGroup failed: the group raised", raised)
    show("TaskGroup failed: sibling's worker, child gone", gone)
    show("parent SIGKILLed: its 2 busy workers gone", parent_killed(min(args.repeat, 5)))
    print("thread pool")
    show("cancel(): task polling cancelled() every 1 ms stopped", thread_cancel(args.repeat))


if __name__ == "__main__":
    main()
