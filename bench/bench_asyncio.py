"""asyncio: 10k awaited no-op tasks, corral vs loop.run_in_executor on the stdlib pools.

The stdlib side starts the 10k calls with loop.run_in_executor and awaits them with
asyncio.gather (and one by one); corral's side submits them and awaits its futures with
gather (which wraps each future in a Task) and one by one. Warm pools, rounds
interleaved (each system once per round), best of ``--repeat``. Ratios > 1: corral is
faster.

Two thread-pool cases: no-op tasks (most are done by the time they are awaited, as
with any short task: an awaited corral future that is done returns without
suspending), and "pending", where every task waits for a gate that opens only once all
10k are awaited, so each await suspends and is woken from a worker thread.

Then the loop's responsiveness while a process pool computes: a loop ticking every
10 ms while 4 tasks of 0.5 s of CPU run on 2 workers, its longest gap between two ticks
and the 99th percentile (idle machine: close to 10 ms; tests/test_asyncio.py checks
only that the loop runs at all, which holds on a busy machine too).

Run: ``.venv/bin/python bench/bench_asyncio.py [--n 10000]``
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

import corral


def noop() -> None:
    return None


GATE = threading.Event()  # the "pending" case: tasks wait for it, opened once all are awaited


def gated() -> None:
    GATE.wait()


async def _open_gate(fn: Callable[[], None]) -> None:
    if fn is gated:
        await asyncio.sleep(0)  # after the first step of every other awaiter (gather's order)
        GATE.set()


async def corral_gather(ex: Any, n: int, fn: Callable[[], None] = noop) -> None:
    await asyncio.gather(_open_gate(fn), *[ex.submit(fn) for _ in range(n)])


async def corral_each(ex: Any, n: int, fn: Callable[[], None] = noop) -> None:
    futures = [ex.submit(fn) for _ in range(n)]
    await _open_gate(fn)
    for fut in futures:
        await fut


async def stdlib_gather(ex: Any, n: int, fn: Callable[[], None] = noop) -> None:
    loop = asyncio.get_running_loop()
    await asyncio.gather(_open_gate(fn), *[loop.run_in_executor(ex, fn) for _ in range(n)])


async def stdlib_each(ex: Any, n: int, fn: Callable[[], None] = noop) -> None:
    loop = asyncio.get_running_loop()
    futures = [loop.run_in_executor(ex, fn) for _ in range(n)]
    await _open_gate(fn)
    for fut in futures:
        await fut


Run = Callable[[Any, int, Callable[[], None]], Awaitable[None]]


def interleaved(
    pools: dict[str, tuple[Callable[[], Any], Run]], n: int, fn: Callable[[], None], repeat: int
) -> dict[str, float]:
    """Best time of each case; every round runs each case once, on its warm pool."""
    best = dict.fromkeys(pools, float("inf"))
    executors = {name: make() for name, (make, _) in pools.items()}
    try:
        for name, (_, run) in pools.items():
            GATE.set()
            asyncio.run(run(executors[name], 100, noop))  # the workers are up
        for _ in range(repeat):
            for name, (_, run) in pools.items():
                GATE.clear()
                begin = time.perf_counter()
                asyncio.run(run(executors[name], n, fn))
                best[name] = min(best[name], time.perf_counter() - begin)
    finally:
        for ex in executors.values():
            ex.shutdown()
    return best


def _spin(seconds: float) -> int:
    end = time.perf_counter() + seconds
    n = 0
    while time.perf_counter() < end:
        n += 1
    return n


async def _ticks_while_computing(ex: Any, tasks: int, seconds: float) -> list[float]:
    gaps = []
    work = [ex.submit(_spin, seconds) for _ in range(tasks)]
    last = time.perf_counter()
    while not all(f.done() for f in work):
        await asyncio.sleep(0.01)
        now = time.perf_counter()
        gaps.append(now - last)
        last = now
    for fut in work:
        await fut
    return gaps


def tick_gaps(repeat: int) -> list[float]:
    gaps: list[float] = []
    with corral.ProcessPoolExecutor(2) as ex:
        ex.submit(_spin, 0.0).result()  # the workers are up
        for _ in range(repeat):
            gaps += asyncio.run(_ticks_while_computing(ex, 4, 0.5))
    return sorted(gaps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print(f"{args.n} awaited tasks, 2 workers, best of {args.repeat} interleaved rounds")
    cases: list[tuple[str, Any, Any, Callable[[], None]]] = [
        ("threads", concurrent.futures.ThreadPoolExecutor, corral.ThreadPoolExecutor, noop),
        (
            "threads, pending",
            concurrent.futures.ThreadPoolExecutor,
            corral.ThreadPoolExecutor,
            gated,
        ),
        ("processes", concurrent.futures.ProcessPoolExecutor, corral.ProcessPoolExecutor, noop),
    ]
    for kind, stdlib, ours, fn in cases:
        pools: dict[str, tuple[Callable[[], Any], Run]] = {
            "stdlib gather": (lambda s=stdlib: s(2), stdlib_gather),
            "stdlib each": (lambda s=stdlib: s(2), stdlib_each),
            "corral gather": (lambda o=ours: o(2), corral_gather),
            "corral each": (lambda o=ours: o(2), corral_each),
        }
        t = interleaved(pools, args.n, fn, args.repeat)
        print(f"  {kind}:")
        for name, label in (
            ("stdlib gather", "stdlib run_in_executor + gather"),
            ("stdlib each", "stdlib run_in_executor, `await` each"),
        ):
            print(f"    {label:<38} {t[name] * 1000:8.1f} ms")
        for name, label, versus in (
            ("corral gather", "corral gather(*futures)", "stdlib gather"),
            ("corral each", "corral `await f` for each", "stdlib each"),
        ):
            print(f"    {label:<38} {t[name] * 1000:8.1f} ms   x{t[versus] / t[name]:.2f}")
    gaps = tick_gaps(args.repeat)
    p99 = gaps[min(len(gaps) - 1, int(len(gaps) * 0.99))]
    print("loop ticking every 10 ms while 2 worker processes compute (4 x 0.5 s of CPU)")
    print(f"  longest gap {gaps[-1] * 1000:7.1f} ms   99th percentile {p99 * 1000:7.1f} ms")


if __name__ == "__main__":
    main()
