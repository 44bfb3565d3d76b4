"""Flow control: bounded memory for a huge map, and chunking that does not hurt slow tasks.

1. ``map(square, <10M-item generator>, buffersize=1000)`` on the process pool: the
   growth of the parent's peak RSS (DESIGN.md §4: < 50 MB), next to the default
   (eager) map of 1M items, which holds every result.
2. ``map`` of 2,000 tasks of 5 ms each with default arguments: corral (automatic
   chunking) against the stdlib ProcessPoolExecutor (chunksize=1) and
   ``multiprocessing.Pool.map`` (its default chunksize), in one run.

Run: ``.venv/bin/python bench/bench_flow.py [--items 10000000] [--slow 2000]``
"""

from __future__ import annotations

import argparse
import concurrent.futures
import multiprocessing
import threading
import time
from collections.abc import Callable, Iterator

import psutil

import corral
from corral import testing

WORKERS = 2


def nap(_: int) -> None:
    time.sleep(0.005)


def peak_rss_growth(work: Callable[[], object]) -> tuple[float, float]:
    """Runs ``work``; returns (its seconds, the peak growth of this process's RSS, MB)."""
    me = psutil.Process()
    base = me.memory_info().rss
    peak = base
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.wait(0.01):
            peak = max(peak, me.memory_info().rss)

    sampler = threading.Thread(target=sample)
    sampler.start()
    begin = time.perf_counter()
    try:
        work()
    finally:
        took = time.perf_counter() - begin
        done.set()
        sampler.join()
    peak = max(peak, me.memory_info().rss)
    return took, (peak - base) / 2**20


def numbers(n: int) -> Iterator[int]:
    yield from range(n)


def memory(items: int) -> None:
    print(f"1. map over a generator, process pool of {WORKERS}: parent's peak RSS growth")
    with corral.ProcessPoolExecutor(WORKERS) as ex:
        ex.submit(testing.noop).result()  # workers started before the baseline

        def bounded() -> None:
            total = 0
            for value in ex.map(testing.square, numbers(items), buffersize=1000):
                total += value

        def eager() -> None:
            total = 0
            for value in ex.map(testing.square, numbers(items // 10)):
                total += value

        took, grew = peak_rss_growth(bounded)
        print(f"  buffersize=1000, {items:>10,} items: +{grew:6.1f} MB in {took:6.1f} s")
        took, grew = peak_rss_growth(eager)
        print(f"  default (eager), {items // 10:>10,} items: +{grew:6.1f} MB in {took:6.1f} s")


def slow_tasks(n: int) -> None:
    ideal = n * 0.005 / WORKERS
    print(f"\n2. map of {n:,} tasks of 5 ms, {WORKERS} workers (ideal {ideal:.2f} s)")
    with corral.ProcessPoolExecutor(WORKERS) as ex:
        ex.submit(testing.noop).result()
        begin = time.perf_counter()
        list(ex.map(nap, range(n)))
        ours = time.perf_counter() - begin
    ctx = multiprocessing.get_context("forkserver")
    with concurrent.futures.ProcessPoolExecutor(WORKERS, mp_context=ctx) as std:
        std.submit(testing.noop).result()
        begin = time.perf_counter()
        list(std.map(nap, range(n)))
        stdlib = time.perf_counter() - begin
    with ctx.Pool(WORKERS) as pool:
        pool.apply(testing.noop)
        begin = time.perf_counter()
        pool.map(nap, range(n))
        mp_pool = time.perf_counter() - begin
    print(f"  corral          {ours:6.2f} s")
    print(f"  stdlib          {stdlib:6.2f} s   corral is x{stdlib / ours:.2f} faster")
    print(f"  mp.Pool.map     {mp_pool:6.2f} s   corral is x{mp_pool / ours:.2f} faster")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=10_000_000)
    parser.add_argument("--slow", type=int, default=2000)
    args = parser.parse_args()
    memory(args.items)
    slow_tasks(args.slow)


if __name__ == "__main__":
    main()
