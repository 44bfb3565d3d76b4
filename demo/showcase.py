"""The corral showcase (``make demo``): what corral does that concurrent.futures does not.

Run: ``.venv/bin/python demo/showcase.py``. Plain output, no dependencies, ~10 s.

The showcase is a list of sections (``SECTIONS``); each is a function that takes the
shared ``Demo`` and prints a short, side-by-side comparison under its header. A new
capability (the process pool, Ctrl+C, asyncio...) adds a function to the list.
"""

from __future__ import annotations

import concurrent.futures
import itertools
import re
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import corral

ROOT = Path(__file__).resolve().parent.parent
RUN_SEED = ROOT / "examples" / "run_seed.py"

#: How long the probe task runs when nothing stops it (the stdlib's side of each race).
TASK_SECONDS = 1.0


@dataclass
class Demo:
    """What the sections share: one corral pool (its statistics close the show)."""

    pool: corral.ThreadPoolExecutor
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


# --------------------------------------------------------------------- sections


# Examples of examples/seeds, run by examples/run_seed.py with small workloads:
# (name, what it shows, which output lines to keep: a regex, or None for all).
SEED_RUNS: list[tuple[str, str, str | None]] = [
    ("seed002_as_completed_urls", "as_completed with errors (no network here)", None),
    ("seed003_map_sum", "ThreadPoolExecutor.map, WORK_LIST / 1000", None),
    ("seed002_is_prime", "map over is_prime, primes near 1e9", None),
    # Its tasks print from three threads at once; keep the outcome lines.
    (
        "seed001_as_completed_errors",
        "tasks that raise, sleeps x 0.05",
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
        if proc.returncode != 0:
            last = (proc.stderr.strip().splitlines() or ["(no message)"])[-1]
            print(f"  ! FAILED (exit status {proc.returncode}): {last}")
            demo.failures.append(f"{name}: {last}")


@section("Cancel a running task")
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


@section("A timeout that stops the task")
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


@section("statistics()")
def statistics(demo: Demo) -> None:
    stats = demo.pool.statistics()
    print("  The pool the sections above shared, ex.statistics():\n")
    rows = [(name, value) for name, value in vars(stats).items()]
    rows.append(("done (property)", stats.done))
    table(rows)


# --------------------------------------------------------------------- main


def main() -> int:
    start = time.perf_counter()
    version = sys.version.split()[0]
    print(f"corral {corral.__version__} showcase: concurrent.futures vs corral (Python {version})")
    with corral.ThreadPoolExecutor(max_workers=8, thread_name_prefix="showcase") as pool:
        demo = Demo(pool)
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
