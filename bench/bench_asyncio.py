"""asyncio: 10k awaited no-op tasks, corral vs loop.run_in_executor on the stdlib pools.

The stdlib side starts the 10k calls with loop.run_in_executor and awaits them with
asyncio.gather; corral's side submits them and awaits them with gather (which wraps
each future in a Task) and one by one (no Task). Warm pools, best of ``--repeat``.
Ratios > 1: corral is faster.

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
import time
from collections.abc import Awaitable, Callable
from typing import Any

import corral


def noop() -> None:
    return None


async def with_corral(ex: Any, n: int) -> None:
    await asyncio.gather(*(ex.submit(noop) for _ in range(n)))


async def with_corral_each(ex: Any, n: int) -> None:
    for fut in [ex.submit(noop) for _ in range(n)]:
        await fut


async def with_run_in_executor(ex: Any, n: int) -> None:
    loop = asyncio.get_running_loop()
    await asyncio.gather(*(loop.run_in_executor(ex, noop) for _ in range(n)))


def best(
    make: Callable[[], Any], run: Callable[[Any, int], Awaitable[None]], n: int, repeat: int
) -> float:
    with make() as ex:
        asyncio.run(run(ex, 100))  # warm the workers up
        times = []
        for _ in range(repeat):
            begin = time.perf_counter()
            asyncio.run(run(ex, n))
            times.append(time.perf_counter() - begin)
    return min(times)


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
    print(f"{args.n} awaited no-op tasks, best of {args.repeat}")
    for kind, stdlib, ours in (
        ("threads", concurrent.futures.ThreadPoolExecutor, corral.ThreadPoolExecutor),
        ("processes", concurrent.futures.ProcessPoolExecutor, corral.ProcessPoolExecutor),
    ):
        t_std = best(lambda s=stdlib: s(2), with_run_in_executor, args.n, args.repeat)  # type: ignore[misc]
        t_gather = best(lambda o=ours: o(2), with_corral, args.n, args.repeat)  # type: ignore[misc]
        t_each = best(lambda o=ours: o(2), with_corral_each, args.n, args.repeat)  # type: ignore[misc]
        print(f"  {kind}: stdlib loop.run_in_executor + gather {t_std * 1000:8.1f} ms")
        print(
            f"  {'':{len(kind)}}  corral gather(*futures)              {t_gather * 1000:8.1f} ms"
            f"   x{t_std / t_gather:.2f}"
        )
        print(
            f"  {'':{len(kind)}}  corral `await f` for each           {t_each * 1000:8.1f} ms"
            f"   x{t_std / t_each:.2f}"
        )
    gaps = tick_gaps(args.repeat)
    p99 = gaps[min(len(gaps) - 1, int(len(gaps) * 0.99))]
    print("loop ticking every 10 ms while 2 worker processes compute (4 x 0.5 s of CPU)")
    print(f"  longest gap {gaps[-1] * 1000:7.1f} ms   99th percentile {p99 * 1000:7.1f} ms")


if __name__ == "__main__":
    main()
