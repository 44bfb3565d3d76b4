"""Thread pool throughput: 100k no-op submit+result, corral vs the stdlib, one run.

Two patterns, each timed best-of-N for every pool in the same process, rounds
interleaved (each pool once per round):
  serial: ``ex.submit(noop).result()`` one after the other (latency of one round trip)
  batch:  submit all, then ``result()`` each (throughput with a full queue)

corral is timed twice: as is, and with "caller runs" off (a pool with an initializer
never runs a task in the thread that waits for it), which is the fair figure for the
batch pattern: there the waiting thread would otherwise run some of the tasks itself.

Run: ``.venv/bin/python bench/bench_thread.py [--n 100000] [--repeat 3]``
"""

from __future__ import annotations

import argparse
import concurrent.futures
import time
from collections.abc import Callable
from typing import Any

import corral


def noop() -> None:
    return None


def serial(ex: Any, n: int) -> None:
    for _ in range(n):
        ex.submit(noop).result()


def batch(ex: Any, n: int) -> None:
    futures = [ex.submit(noop) for _ in range(n)]
    for fut in futures:
        fut.result()


def timed(
    pools: dict[str, Callable[[], Any]], pattern: Callable[[Any, int], None], n: int, repeat: int
) -> dict[str, float]:
    """Best time of each pool; every round runs each pool once (interleaved, so that a
    change in the machine's load falls on all of them), on a fresh warmed-up pool."""
    best = dict.fromkeys(pools, float("inf"))
    for _ in range(repeat):
        for name, make in pools.items():
            with make() as ex:
                pattern(ex, 1000)  # warm the workers up
                start = time.perf_counter()
                pattern(ex, n)
                best[name] = min(best[name], time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workers", type=int, default=4)
    args = parser.parse_args()
    pools: dict[str, Callable[[], Any]] = {
        "stdlib": lambda: concurrent.futures.ThreadPoolExecutor(args.workers),
        "corral": lambda: corral.ThreadPoolExecutor(args.workers),
        "corral, no caller runs": lambda: corral.ThreadPoolExecutor(args.workers, initializer=noop),
    }
    print(f"{args.n} no-op tasks, {args.workers} workers, best of {args.repeat}")
    for name, pattern in (("serial", serial), ("batch", batch)):
        times = timed(pools, pattern, args.n, args.repeat)
        line = f"  {name:7} stdlib {args.n / times['stdlib']:>9,.0f}/s"
        for pool in list(pools)[1:]:
            ratio = times["stdlib"] / times[pool]
            line += f"   {pool} {args.n / times[pool]:>9,.0f}/s x{ratio:.2f}"
        print(line)


if __name__ == "__main__":
    main()
