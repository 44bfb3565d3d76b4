"""The corral showcase (``make demo``): what corral does that concurrent.futures does not.

Run: ``.venv/bin/python demo/showcase.py``. Plain output, ~15 s; numpy, when installed,
adds the shared-memory section.

The showcase is a list of sections (``SECTIONS``); each is a function that takes the
shared ``Demo`` and prints a short, side-by-side comparison under its header. A new
capability (Ctrl+C, asyncio...) adds a function to the list.

The process-pool sections send module-level functions (the stdlib pickles functions by
name) and run only from ``main()``: a worker process started by forkserver or spawn
imports this file again, and must not run the show.
"""

from __future__ import annotations

import concurrent.futures
import itertools
import multiprocessing
import os
import re
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

import corral
from corral import testing

ROOT = Path(__file__).resolve().parent.parent
RUN_SEED = ROOT / "examples" / "run_seed.py"

#: How long the probe task runs when nothing stops it (the stdlib's side of each race).
TASK_SECONDS = 1.0

#: The stdlib's process pools start their workers as corral's do by default: the same
#: start method on both sides. (The stdlib's default before Python 3.14, fork, is unsafe
#: in a process that runs threads, as this one does; 3.14 moved to forkserver.)
START_METHOD = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"


def stdlib_processes(max_workers: int) -> concurrent.futures.ProcessPoolExecutor:
    context = multiprocessing.get_context(START_METHOD)
    return concurrent.futures.ProcessPoolExecutor(max_workers, mp_context=context)


@dataclass
class Demo:
    """What the sections share: corral's pools (their statistics close the show)."""

    pool: corral.ThreadPoolExecutor
    processes: corral.ProcessPoolExecutor
    failures: list[str] = field(default_factory=list)


Section = Callable[[Demo], None]
SECTIONS: list[tuple[str, Section]] = []


def section(title: str) -> Callable[[Section], Section]:
    """Adds the decorated function to SECTIONS, under ``title``."""

    def add(fn: Section) -> Section:
        SECTIONS.append((title, fn))
        return fn

    return add


# --------------------------------------------------------------------- helpers


def table(rows: Sequence[Sequence[object]], head: Sequence[str] | None = None) -> None:
    """Prints rows as aligned columns, indented; ``head`` is underlined."""
    lines = [list(map(str, row)) for row in rows]
    if head is not None:
        lines.insert(0, list(head))
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    for n, line in enumerate(lines):
        print(
            "  " + "   ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip()
        )
        if n == 0 and head is not None:
            print("  " + "   ".join("-" * w for w in widths))


COMPARE = ("", "concurrent.futures", "corral")


def seconds(value: float) -> str:
    return f"{value * 1000:.1f} ms" if value < 0.1 else f"{value:.2f} s"


def state(fut: concurrent.futures.Future[Any]) -> str:
    if fut.cancelled():
        return "cancelled"
    if fut.running():
        return "running"
    if fut.done():
        error = fut.exception()
        return "finished" if error is None else f"failed ({type(error).__name__})"
    return "pending"


class Probe:
    """A task that runs TASK_SECONDS unless ``corral.cancelled()`` turns true.

    It polls ``corral.cancelled()`` (always False outside corral) every millisecond and
    records when it started and when it stopped.
    """

    def __init__(self) -> None:
        self.started = threading.Event()
        self.stopped = threading.Event()
        self.stopped_at = 0.0
        self.outcome = ""

    def __call__(self, limit: float = TASK_SECONDS) -> str:
        self.started.set()
        deadline = time.perf_counter() + limit
        try:
            while time.perf_counter() < deadline:
                if corral.cancelled():
                    self.outcome = "stopped early"
                    return self.outcome
                time.sleep(0.001)
            self.outcome = "ran to the end"
            return self.outcome
        finally:
            self.stopped_at = time.perf_counter()
            self.stopped.set()


def square(x: int) -> int:
    return x * x


# Process-pool tasks: module-level, so that the stdlib can pickle them too.


def pid_then_sleep(path: str, seconds: float) -> str:
    """Writes this process's pid to ``path``, then sleeps ``seconds`` (deaf to cancel)."""
    with open(path + ".tmp", "w") as f:
        f.write(str(os.getpid()))
    os.replace(path + ".tmp", path)
    time.sleep(seconds)
    return "ran to the end"


def worker_pid() -> int:
    return os.getpid()


def square_later(x: int) -> int:
    time.sleep(0.05)
    return x * x


def same(value: Any) -> Any:
    return value


def read_pid(path: str) -> int:
    """Waits for pid_then_sleep to write ``path`` (so the task runs) and returns the pid."""
    testing.wait_until(lambda: os.path.exists(path), timeout=10, message=f"{path} to appear")
    with open(path) as f:
        return int(f.read())


def gone(pid: int) -> bool:
    """True once process ``pid`` has ended (a zombie counts: it runs nothing)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def outcomes(futures: Iterable[concurrent.futures.Future[Any]]) -> str:
    """Each future's result or error class, repeats collapsed: "0, 1, Broken x4"."""
    runs: list[list[Any]] = []
    for fut in futures:
        error = fut.exception()
        item = repr(fut.result()) if error is None else type(error).__name__
        if runs and runs[-1][0] == item:
            runs[-1][1] += 1
        else:
            runs.append([item, 1])
    return ", ".join(item if n == 1 else f"{item} x{n}" for item, n in runs)


def wrap(text: str, indent: str = "    ") -> None:
    print(textwrap.fill(text, width=92, initial_indent=indent, subsequent_indent=indent))


def start_method(executor: corral.ProcessPoolExecutor) -> str:
    """The start method of corral's workers (a private attribute)."""
    context = getattr(executor, "_ctx", None)
    return context.get_start_method() if context is not None else "?"


# --------------------------------------------------------------------- sections


# Examples of examples/seeds, run by examples/run_seed.py with small workloads:
# (name, what it shows, which output lines to keep: a regex, or None for all).
SEED_RUNS: list[tuple[str, str, str | None]] = [
    ("seed002_as_completed_urls", "as_completed with errors (no network here)", None),
    ("seed003_map_sum", "Thread-, then ProcessPoolExecutor.map, WORK_LIST / 1000", None),
    ("seed002_is_prime", "ProcessPoolExecutor.map over is_prime, primes near 1e9", None),
    # Its tasks print from three processes at once; keep the outcome lines.
    (
        "seed001_as_completed_errors",
        "a process pool, tasks that raise, sleeps x 0.05",
        r"task \d+ done|exception: task \d+ error",
    ),
    ("seed000_download_many", "Fluent Python's flags, local stand-in", None),
]
SEED_LINES = 6


def run_seed(name: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(RUN_SEED), name],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=ROOT,
    )


@section("The seeds' examples, run on corral by changing their import")
def seed_examples(demo: Demo) -> None:
    print(
        "  examples/seeds/NAME.py, run small by examples/run_seed.py (5 at once, on a corral pool);"
    )
    print("  each file's header lists what differs from its seed (the import, transcription fixes)")
    names = [name for name, _, _ in SEED_RUNS]
    for (name, what, keep), proc in zip(SEED_RUNS, demo.pool.map(run_seed, names), strict=True):
        print(f"\n  $ python examples/run_seed.py {name}    # {what}")
        lines = proc.stdout.rstrip("\n").splitlines()
        shown = lines if keep is None else [ln for ln in lines if re.fullmatch(keep, ln)]
        for line in shown[:SEED_LINES]:
            print(f"  | {line}")
        if len(shown) < len(lines) or len(shown) > SEED_LINES:
            print(f"  | ... ({len(lines) - min(len(shown), SEED_LINES)} more lines)")
        pids = set(re.findall(r"start in (\d+)", proc.stdout))
        if pids:
            print(f"  ({len(pids)} worker processes ran the tasks: pids {', '.join(sorted(pids))})")
        if proc.returncode != 0:
            last = (proc.stderr.strip().splitlines() or ["(no message)"])[-1]
            print(f"  ! FAILED (exit status {proc.returncode}): {last}")
            demo.failures.append(f"{name}: {last}")


@section("Thread pool: cancel a running task")
def cancel_running(demo: Demo) -> None:
    print("  fut.cancel() on a task that is already running (it polls corral.cancelled()):\n")
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as stdlib:
        probe_s = Probe()
        fut_s = stdlib.submit(probe_s)
        probe_s.started.wait()
        t0 = time.perf_counter()
        cancelled_s = fut_s.cancel()
        state_s = state(fut_s)
        probe_s.stopped.wait()
        ran_on = probe_s.stopped_at - t0

    probe_c = Probe()
    fut_c = demo.pool.submit(probe_c)
    probe_c.started.wait()
    t0 = time.perf_counter()
    cancelled_c = fut_c.cancel()
    state_c = state(fut_c)
    probe_c.stopped.wait(5)
    stopped_after = probe_c.stopped_at - t0

    table(
        [
            ("fut.cancel() returns", cancelled_s, cancelled_c),
            ("future right after cancel()", state_s, state_c),
            (
                "task stopped",
                f"{seconds(ran_on)} later ({probe_s.outcome})",
                f"{seconds(stopped_after)} later ({probe_c.outcome})",
            ),
        ],
        COMPARE,
    )


@section("Thread pool: a timeout that stops the task")
def timeout_stops(demo: Demo) -> None:
    limit = 0.2
    print(f"  Give up on a {seconds(TASK_SECONDS)} task after {seconds(limit)}:\n")
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as stdlib:
        probe_s = Probe()
        fut_s = stdlib.submit(probe_s)
        probe_s.started.wait()
        t0 = time.perf_counter()
        try:
            fut_s.result(timeout=limit)
            raised_s = "nothing"
        except concurrent.futures.TimeoutError as error:  # the builtin one since 3.11
            raised_s = type(error).__name__
        raised_after_s = time.perf_counter() - t0
        state_s = state(fut_s)
        probe_s.stopped.wait()
        ran_s = probe_s.stopped_at - t0

    probe_c = Probe()
    fut_c = demo.pool.options(task_timeout=limit).submit(probe_c)
    probe_c.started.wait()
    t0 = time.perf_counter()  # task_timeout counts from the task's start, just before this
    try:
        fut_c.result()
        raised_c = "nothing"
    except corral.TaskTimeout as error:
        raised_c = type(error).__name__
    raised_after_c = time.perf_counter() - t0
    state_c = state(fut_c)
    probe_c.stopped.wait(5)
    ran_c = probe_c.stopped_at - t0

    table(
        [
            ("asked with", f"fut.result(timeout={limit})", f"ex.options(task_timeout={limit})"),
            (
                "raised",
                f"{raised_s} after {seconds(raised_after_s)}",
                f"{raised_c} after {seconds(raised_after_c)}",
            ),
            ("future after the timeout", state_s, state_c),
            (
                "task ran for",
                f"{seconds(ran_s)} ({probe_s.outcome})",
                f"{seconds(ran_c)} ({probe_c.outcome})",
            ),
        ],
        COMPARE,
    )


@section("A bounded queue, and map() over an endless input")
def bounded_queue(demo: Demo) -> None:
    # submit_nowait on a full queue: one worker held busy, max_pending=4.
    release = threading.Event()
    started = threading.Event()

    def busy() -> None:
        started.set()
        release.wait(5)

    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as stdlib:
        stdlib.submit(busy)
        started.wait(5)
        accepted_s = sum(1 for _ in (stdlib.submit(square, i) for i in range(1000)))
        release.set()

    release.clear()
    started.clear()
    with corral.ThreadPoolExecutor(max_workers=1, max_pending=4) as bounded:
        bounded.submit(busy)
        started.wait(5)
        accepted_c = 0
        refusal = "none"
        try:
            for i in range(1000):
                bounded.submit_nowait(square, i)
                accepted_c += 1
        except corral.QueueFull as error:
            refusal = f"QueueFull: {error}"
        # submit() instead waits for room: the busy task ends in 0.1 s and frees a slot.
        threading.Timer(0.1, release.set).start()
        t0 = time.perf_counter()
        bounded.submit(square, 0)
        waited = time.perf_counter() - t0

    print("  One worker kept busy; then 1000 quick submits:\n")
    table(
        [
            ("queue bound", "none", "max_pending=4"),
            ("tasks accepted while busy", f"{accepted_s} of 1000", f"{accepted_c} of 1000"),
            ("then", "-", "submit_nowait() raised QueueFull"),
            ("submit() on a full queue", "-", f"waited {seconds(waited)} for room"),
        ],
        COMPARE,
    )
    print("\n  corral's message:")
    print(textwrap.fill(refusal, width=88, initial_indent="    ", subsequent_indent="    "))

    # map() over a long (or endless) input: how much of it is read for 20 results.
    def counted(items: Iterator[int], tally: list[int]) -> Iterator[int]:
        for item in items:
            tally[0] += 1
            yield item

    big = 100_000
    tally_s = [0]
    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as stdlib:
        results = stdlib.map(square, counted(iter(range(big)), tally_s))
        first_s = list(itertools.islice(results, 20))
    tally_c = [0]
    results_c = demo.pool.map(square, counted(itertools.count(), tally_c), buffersize=8)
    first_c = list(itertools.islice(results_c, 20))
    results_c.close()
    assert first_s == first_c

    print("\n  The first 20 squares from map(square, numbers):\n")
    table(
        [
            ("numbers", f"range({big:_})", "itertools.count() (endless)"),
            ("call", "ex.map(square, numbers)", "ex.map(square, numbers, buffersize=8)"),
            (
                "items read for 20 results",
                f"{tally_s[0]:_} (all of them)",
                f"{tally_c[0]} (20 + 8 ahead)",
            ),
        ],
        COMPARE,
    )
    if sys.version_info < (3, 14):
        print("  (on an endless input the stdlib's map() never returns; buffersize= came to")
        print("   the stdlib only in Python 3.14)")

    # ordered=False: results in completion order.
    def nap(seconds_: float) -> float:
        time.sleep(seconds_)
        return seconds_

    naps = [0.3, 0.1, 0.2]
    in_order = list(demo.pool.map(nap, naps))
    as_done = list(demo.pool.map(nap, naps, ordered=False))
    print(f"\n  map(nap, {naps}):  ordered -> {in_order}   ordered=False -> {as_done}")


@section("Process pool: cancel a running task")
def process_cancel(demo: Demo) -> None:
    print(f"  One worker; its task sleeps {seconds(TASK_SECONDS)} and ignores cancellation.")
    print("  fut.cancel() while it runs, then submit another task:\n")
    with tempfile.TemporaryDirectory(prefix="corral-demo-") as folder:
        with stdlib_processes(1) as stdlib:
            path = os.path.join(folder, "stdlib")
            fut = stdlib.submit(pid_then_sleep, path, TASK_SECONDS)
            pid_s = read_pid(path)
            t0 = time.perf_counter()
            cancelled_s = fut.cancel()
            state_s = state(fut)
            following = stdlib.submit(worker_pid)
            outcome_s = fut.result()
            ran_on = time.perf_counter() - t0
            next_pid_s = following.result()
            next_s = time.perf_counter() - t0
            alive_s = "still alive" if not gone(pid_s) else "gone"

        with corral.ProcessPoolExecutor(max_workers=1) as pool:
            path = os.path.join(folder, "corral")
            fut = pool.submit(pid_then_sleep, path, TASK_SECONDS)
            pid_c = read_pid(path)
            t0 = time.perf_counter()
            cancelled_c = fut.cancel()
            state_c = state(fut)
            following = pool.submit(worker_pid)
            testing.wait_until(lambda: gone(pid_c), timeout=5, interval=0.0002)
            gone_c = time.perf_counter() - t0
            next_pid_c = following.result()
            next_c = time.perf_counter() - t0
            method = start_method(pool)

    table(
        [
            ("fut.cancel() returns", cancelled_s, cancelled_c),
            ("future right after cancel()", state_s, state_c),
            (
                "the task",
                f"{outcome_s}, {seconds(ran_on)} later",
                f"killed: worker gone after {seconds(gone_c)}",
            ),
            ("its worker process", f"{pid_s}, {alive_s}", f"{pid_c}, replaced"),
            (
                "next task done after",
                f"{seconds(next_s)} ({'same' if next_pid_s == pid_s else 'new'} worker)",
                f"{seconds(next_c)} (new worker {next_pid_c})",
            ),
        ],
        COMPARE,
    )
    print(f"\n  (both pools start their workers with {method}, corral's default)")


@section("Process pool: a timeout that stops a runaway")
def process_timeout(demo: Demo) -> None:
    limit = 0.3
    print("  A runaway task (corral.testing.hang: it sleeps, deaf to cancellation); give up")
    print(f"  after {seconds(limit)}. For corral it would sleep an hour; for the stdlib only")
    print(f"  {seconds(TASK_SECONDS)}: nothing there can stop it, and shutdown waits for it.\n")
    with testing.Gate() as started, stdlib_processes(1) as stdlib:
        fut_s = stdlib.submit(testing.hang, started, TASK_SECONDS)
        started.wait(10)
        t0 = time.perf_counter()
        try:
            fut_s.result(timeout=limit)
            raised_s = "nothing"
        except TimeoutError as error:
            raised_s = type(error).__name__
        raised_after_s = time.perf_counter() - t0
        state_s = state(fut_s)
        fut_s.result()
        ran_s = time.perf_counter() - t0

    timed_out_before = demo.processes.statistics().timed_out
    with testing.Gate() as started:
        fut_c = demo.processes.options(task_timeout=limit).submit(testing.hang, started)
        started.wait(10)
        t0 = time.perf_counter()  # task_timeout counts from the task's start, just before
        try:
            fut_c.result()
            raised_c = "nothing"
        except corral.TaskTimeout as error:
            raised_c = type(error).__name__
            message = str(error)
        raised_after_c = time.perf_counter() - t0
        state_c = state(fut_c)
    timed_out = demo.processes.statistics().timed_out - timed_out_before

    table(
        [
            ("asked with", f"fut.result(timeout={limit})", f"ex.options(task_timeout={limit})"),
            (
                "raised",
                f"{raised_s} after {seconds(raised_after_s)}",
                f"{raised_c} after {seconds(raised_after_c)}",
            ),
            ("future after the timeout", state_s, state_c),
            (
                "the task",
                f"ran on to its end, {seconds(ran_s)}",
                f"killed with its worker (statistics: timed_out +{timed_out})",
            ),
        ],
        COMPARE,
    )
    print("\n  corral's message:")
    wrap(message)


@section("Process pool: a worker crashes")
def process_crash(demo: Demo) -> None:
    tasks: list[tuple[Callable[..., Any], tuple[Any, ...]]] = [
        (square_later, (0,)),
        (square_later, (1,)),
        (testing.exit_now, (3,)),
        (square_later, (3,)),
        (square_later, (4,)),
        (square_later, (5,)),
    ]
    print("  Two workers, six tasks; the third calls os._exit(3) (as a crash in native code,")
    print("  the OOM killer or a kill -9 would end it):\n")
    with stdlib_processes(2) as stdlib:
        futs_s = [stdlib.submit(fn, *args) for fn, args in tasks]
        concurrent.futures.wait(futs_s)
        try:
            stdlib.submit(square, 7).result()
            after_s = "works"
        except concurrent.futures.BrokenExecutor as error:
            after_s = f"{type(error).__name__}"
            broken_message = str(error)

    futs_c = [demo.processes.submit(fn, *args) for fn, args in tasks]
    corral.wait(futs_c)
    crash = futs_c[2].exception()
    assert isinstance(crash, corral.WorkerCrashed), crash
    after_c = f"returns {demo.processes.submit(square, 7).result()}"
    segv = demo.processes.submit(testing.segfault).exception()
    assert isinstance(segv, corral.WorkerCrashed), segv

    table(
        [
            ("the six futures", outcomes(futs_s), outcomes(futs_c)),
            ("then submit(square, 7)", after_s, after_c),
        ],
        COMPARE,
    )
    print("\n  The stdlib's message (the pool is unusable from then on):")
    wrap(broken_message)
    print("\n  corral's WorkerCrashed, on the one future whose worker died:")
    wrap(str(crash))
    print(f"    .exitcode={crash.exitcode} .signal={crash.signal} .pid={crash.pid}")
    print(
        f"  and a segfault: WorkerCrashed .exitcode={segv.exitcode} .signal={segv.signal}; "
        f"the pool still has {demo.processes.statistics().workers} workers"
    )


@section("Process pool: lambdas and closures")
def process_lambda(demo: Demo) -> None:
    factor = 3

    def times_factor(x: int) -> int:  # a closure: it reads `factor`
        return x * factor

    def error_text(error: Exception) -> str:
        return re.sub(r" at 0x[0-9a-f]+", "", f"{type(error).__name__}: {error}")

    with stdlib_processes(1) as stdlib:
        try:
            lambda_s = repr(stdlib.submit(lambda x: x * 2, 21).result())
        except Exception as error:  # the stdlib's pickling error
            lambda_s = error_text(error)
        try:
            closure_s = repr(list(stdlib.map(times_factor, range(5))))
        except Exception as error:
            closure_s = error_text(error)
    lambda_c = repr(demo.processes.submit(lambda x: x * 2, 21).result())
    closure_c = repr(list(demo.processes.map(times_factor, range(5))))

    for call, got_s, got_c in [
        ("ex.submit(lambda x: x * 2, 21).result()", lambda_s, lambda_c),
        ("list(ex.map(times_factor, range(5)))    # a closure", closure_s, closure_c),
    ]:
        print(f"  {call}")
        wrap(f"concurrent.futures: {got_s}")
        wrap(f"corral:             {got_c}")
    print("\n  (corral sends what pickle refuses by value, with cloudpickle)")


ARRAYS = 4
ARRAY_MB = 16


@section(f"Process pool: {ARRAYS} x {ARRAY_MB} MB numpy arrays there and back")
def process_numpy(demo: Demo) -> None:
    try:
        import numpy as np
    except ImportError:
        print("  (skipped: numpy is not installed; `pip install numpy` shows this section)")
        return
    arrays = [np.full(ARRAY_MB * 1024 * 1024 // 8, i, dtype=np.float64) for i in range(ARRAYS)]

    def best_of(runs: int, fn: Callable[[], object]) -> float:
        times = []
        for _ in range(runs):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        return min(times)

    with stdlib_processes(2) as stdlib:
        back = list(stdlib.map(same, arrays))  # warm: workers started
        assert all(np.array_equal(a, b) for a, b in zip(arrays, back, strict=True))
        took_s = best_of(3, lambda: list(stdlib.map(same, arrays)))
    back = list(demo.processes.map(same, arrays))
    assert all(np.array_equal(a, b) for a, b in zip(arrays, back, strict=True))
    took_c = best_of(3, lambda: list(demo.processes.map(same, arrays)))
    copy = best_of(3, lambda: [a.copy() for a in arrays])

    print(f"  list(ex.map(same, arrays)): {ARRAYS} arrays of {ARRAY_MB} MB to the workers and")
    print("  back, 2 workers, best of 3 (pools already started):\n")
    table(
        [
            ("round trip", seconds(took_s), seconds(took_c)),
            ("speed", "1.0x", f"{took_s / took_c:.1f}x"),
            ("how", "pickled through a pipe", "pickle protocol 5 buffers in shared memory"),
        ],
        COMPARE,
    )
    print(f"\n  (copying the {ARRAYS * ARRAY_MB} MB once in this process: {seconds(copy)})")


def spin(seconds_: float) -> int:
    """CPU-bound work: counts for ``seconds_``."""
    end = time.perf_counter() + seconds_
    n = 0
    while time.perf_counter() < end:
        n += 1
    return n


@section("asyncio: the event loop keeps ticking, and wait_for() stops the work")
def asyncio_section(demo: Demo) -> None:
    import asyncio

    async def ticker_during(work: Callable[[], Any]) -> tuple[float, int]:
        gaps: list[float] = []
        task = asyncio.ensure_future(work())
        last = time.perf_counter()
        while not task.done():
            await asyncio.sleep(0.01)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now
        await task
        return max(gaps), len(gaps)

    async def in_the_loop() -> None:
        for _ in range(4):
            spin(0.25)  # what "just call it" does: blocks the loop

    async def on_corral() -> None:
        await asyncio.gather(*(demo.processes.submit(spin, 0.25) for _ in range(4)))

    gap_blocking, _ = asyncio.run(ticker_during(in_the_loop))
    gap_corral, _ = asyncio.run(ticker_during(on_corral))
    print("  A ticker sleeps 10 ms in a loop while 4 x 0.25 s of CPU work run:\n")
    table(
        [
            ("longest gap between ticks", seconds(gap_blocking), seconds(gap_corral)),
            ("how", "spin() called in a coroutine", "await ex.submit(spin, 0.25)"),
        ],
        ("", "in the event loop", "corral process pool"),
    )

    async def runaway() -> str:
        try:
            await asyncio.wait_for(demo.processes.submit(testing.hang), 0.3)
        except (asyncio.TimeoutError, TimeoutError):
            return "TimeoutError"
        return "finished"

    before = demo.processes.statistics().cancelled
    t0 = time.perf_counter()
    outcome = asyncio.run(runaway())
    took = time.perf_counter() - t0
    killed = demo.processes.statistics().cancelled - before
    call = "await asyncio.wait_for(ex.submit(testing.hang), 0.3)"
    print(f"\n  {call}: {outcome} after {seconds(took)};")
    print(f"  the worker running it was killed (statistics: cancelled +{killed})")


@section("Ctrl+C on a busy pool")
def ctrl_c(demo: Demo) -> None:
    cap = 2.0
    print("  A program (demo/busy_pool.py) whose two workers are each in a 60 s task; its")
    print("  main thread waits for them inside `with pool:`. Send it SIGINT, from a terminal")
    print("  (the whole process group) or with kill -INT PID (the program alone: an IDE's")
    print(f"  stop button, a supervisor). The stdlib gets {seconds(cap)} before it is killed.\n")
    import busy_pool  # demo/busy_pool.py, next to this file

    def measure(backend: str, group: bool) -> tuple[str, str, str, str]:
        with tempfile.TemporaryDirectory() as tmp:
            run = busy_pool.Run(backend, "with", Path(tmp))
            took, status, err = run.end(run.signal(2, group=group), timeout=cap)
            left = len(run.workers_left(timeout=0.5))
            run.kill()
        exited = f"still running after {seconds(cap)}" if took is None else seconds(took)
        return exited, str(status), str(err.count("Traceback (most recent")), str(left)

    cases = [
        ("corral processes", "process"),
        ("stdlib processes", "stdlib-process"),
        ("corral threads", "thread"),
        ("stdlib threads", "stdlib-thread"),
    ]
    jobs = [(label, backend, to) for to in ("terminal", "kill -INT") for label, backend in cases]
    results: dict[tuple[str, str], tuple[str, str, str, str]] = {}

    def one(label: str, backend: str, to: str) -> None:
        results[label, to] = measure(backend, to == "terminal")

    # corral's runs one at a time (they are timed); the stdlib's, which wait out the
    # cap, side by side
    for label, backend, to in jobs:
        if backend in ("process", "thread"):
            one(label, backend, to)
    waiting = [
        threading.Thread(target=one, args=job) for job in jobs if job[1].startswith("stdlib")
    ]
    for thread in waiting:
        thread.start()
    for thread in waiting:
        thread.join()
    table(
        [(label, to, *results[label, to]) for label, _, to in jobs],
        ("pool", "SIGINT from", "exits after", "status", "tracebacks", "workers left"),
    )
    print("\n  corral: the first Ctrl+C cancels pending work and kills running work in every")
    print("  pool; a second one during that clean-up SIGKILLs at once. bench/bench_interrupt.py")
    print("  measures it over repeated runs.")


LOG_FORMAT = "    log | %(levelname)s %(corral_worker)s, task %(corral_task)s: %(message)s"


@section("See what the pool is doing: progress, a timeline, worker logs, top")
def observe(demo: Demo) -> None:
    import logging

    import timeline_run  # demo/timeline_run.py, next to this file

    sys.path.insert(0, str(ROOT / "examples" / "seeds"))
    from seed002_is_prime import PRIMES, is_prime

    print("  ex.map(is_prime, PRIMES * 2, progress=True): seed 002's work with a progress bar")
    print("  (tqdm on a terminal when installed, else a line of text; drawn on stdout here):\n")
    bar = corral.Progress(desc="    is_prime", file=sys.stdout, interval=0.5)
    # a pool started after examples/seeds joined sys.path: its workers import the seed
    with corral.ProcessPoolExecutor(2) as ex:
        primes = list(ex.map(is_prime, PRIMES * 2, progress=bar))
    print(f"\n  {primes.count(True)} primes; the bar counted {bar.done} done, {bar.failed} failed")

    print("\n  corral.Timeline(), passed as hooks=, records which worker ran what and when.")
    print("  Seeds 002 and 003 on 3 workers, with a crash, a timeout and a cancel:\n")
    out = ROOT / "demo" / "out"
    timeline = timeline_run.run(out)
    rows = [
        (r.name, r.worker, r.outcome, seconds(r.ended - r.started) if r.ended else "")
        for r in sorted(timeline.runs, key=lambda r: r.started)
        if r.name != "noop" and (not r.name.startswith("map(") or r.outcome != "completed")
    ]
    table(rows, ("task", "worker", "outcome", "ran"))
    maps = sum(1 for r in timeline.runs if r.name.startswith("map(") and r.outcome == "completed")
    print(f"  (and {maps} map chunks, completed)")
    print(f"  wrote {out.relative_to(ROOT)}/timeline.html (open in a browser),")
    print("  timeline.svg and trace.json (https://ui.perfetto.dev or chrome://tracing)")

    print("\n  Logging in a worker process reaches this process's handlers, worker and task")
    print(f"  named (format: {LOG_FORMAT.split('| ')[1]!r}):\n")
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    logger = logging.getLogger("showcase")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        with corral.ProcessPoolExecutor(1) as ex:
            ex.options(name="resize-42").submit(testing.log_messages, "showcase.worker", "hello")
    finally:
        logger.removeHandler(handler)
        logger.setLevel(logging.NOTSET)

    print("\n  python -m corral top --once, while a pool of 2 runs two 1-second tasks:\n")
    with corral.ProcessPoolExecutor(2) as ex:
        busy = [ex.submit(spin, 1.0) for _ in range(2)]
        testing.wait_until(lambda: all(f.running() for f in busy), 30)  # in the workers
        top = subprocess.run(
            [sys.executable, "-m", "corral", "top", "--once", "--pid", str(os.getpid())],
            capture_output=True,
            text=True,
            timeout=30,
        )
        corral.wait(busy)
    for line in top.stdout.splitlines():
        print(f"    {line}")


@section("From laptop to cluster: the same code on a Dask cluster")
def dask_section(demo: Demo) -> None:
    try:
        import distributed  # noqa: F401
    except ImportError:
        print("  (skipped: distributed is not installed; pip install 'corral[dask]')")
        return
    sys.path.insert(0, str(ROOT / "examples" / "seeds"))
    from seed002_is_prime import PRIMES, is_prime

    print("  seed 002's map(is_prime, PRIMES), the pool made three ways (docs/dask.md):\n")
    rows = []
    pid, stopped = 0, 0.0
    makers: list[tuple[str, Callable[[], Any]]] = [
        ("corral.ThreadPoolExecutor()", corral.ThreadPoolExecutor),
        ("corral.ProcessPoolExecutor()", corral.ProcessPoolExecutor),
        ("corral.DaskExecutor()  (a local cluster)", lambda: corral.DaskExecutor(n_workers=2)),
    ]
    for label, make in makers:
        begin = time.perf_counter()
        with make() as ex:
            ready = time.perf_counter()
            found = list(ex.map(is_prime, PRIMES))
            took = time.perf_counter() - ready
            if isinstance(ex, corral.DaskExecutor):
                with tempfile.TemporaryDirectory() as tmp, testing.Gate() as started:
                    path = os.path.join(tmp, "pid")
                    fut = ex.submit(testing.write_pids_and_hang, path, started)
                    started.wait(60)
                    (pid,) = (int(p) for p in Path(path).read_text().split())
                    stop = time.perf_counter()
                    fut.cancel()
                    testing.wait_until(lambda pid=pid: gone(pid), 10)
                    stopped = time.perf_counter() - stop
        rows.append((label, seconds(ready - begin), seconds(took), found.count(True)))
    table(rows, ("pool", "start", "map", "primes"))
    print(f"\n  On the cluster, cancel() of a running task: its process (pid {pid}) was gone")
    print(f"  {seconds(stopped)} later (Dask alone would only forget the task). A Dask worker")
    print("  that dies fails only its own tasks, with WorkerCrashed (tests/test_dask.py).")


@section("statistics()")
def statistics(demo: Demo) -> None:
    print("  The pools the sections above shared, ex.statistics():\n")
    threads, processes = demo.pool.statistics(), demo.processes.statistics()
    rows: list[tuple[str, object, object]] = [
        (name, value, getattr(processes, name)) for name, value in vars(threads).items()
    ]
    rows.append(("done (property)", threads.done, processes.done))
    table(rows, ("", "ThreadPoolExecutor", "ProcessPoolExecutor"))


# --------------------------------------------------------------------- main


def main() -> int:
    start = time.perf_counter()
    version = sys.version.split()[0]
    print(f"corral {corral.__version__} showcase: concurrent.futures vs corral (Python {version})")
    with (
        corral.ThreadPoolExecutor(max_workers=8, thread_name_prefix="showcase") as pool,
        corral.ProcessPoolExecutor(max_workers=2) as processes,
    ):
        demo = Demo(pool, processes)
        for number, (title, run) in enumerate(SECTIONS, 1):
            header = f"{number}. {title}"
            print(f"\n{header}\n{'=' * len(header)}")
            run(demo)
    print(f"\nshowcase finished in {time.perf_counter() - start:.1f} s")
    if demo.failures:
        print(f"{len(demo.failures)} seed example(s) failed:")
        for failure in demo.failures:
            print(f"  {failure}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
