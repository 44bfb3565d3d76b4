"""Process pool benchmarks, corral side by side with the stdlib and multiprocessing.Pool.

Every pool runs in this one process, one after the other, with the same start method
and worker count; each figure is the best of ``--repeat`` runs. Ratios > 1 mean corral
is faster.

  noop      20k no-op submit+result (submit all, then collect)
  map       map over 200k small items with default arguments
  arrays    16 x 16 MB numpy arrays in and out (vs one memcpy of the same data)
  start     pool start to first result

Run: ``.venv/bin/python bench/bench_process.py [--quick] [--only noop,map]``
"""

from __future__ import annotations

import argparse
import concurrent.futures
import multiprocessing
import os
import time
from collections.abc import Callable
from typing import Any

import numpy as np

import corral


def noop(x: Any = None) -> Any:
    return x


def small(x: int) -> int:
    return x * 2


def touch(a: np.ndarray) -> np.ndarray:
    a[0] += 1  # the worker gets a writable array and sends one back
    return a


def best(fn: Callable[[], None], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        begin = time.perf_counter()
        fn()
        times.append(time.perf_counter() - begin)
    return min(times)


def bench_noop(n: int, workers: int, ctx: Any, repeat: int) -> dict[str, float]:
    out = {}
    with corral.ProcessPoolExecutor(workers, mp_context=ctx) as ex:
        ex.submit(noop).result()
        out["corral"] = best(
            lambda: [f.result() for f in [ex.submit(noop) for _ in range(n)]], repeat
        )
    with concurrent.futures.ProcessPoolExecutor(workers, mp_context=ctx) as ex:
        ex.submit(noop).result()
        out["stdlib"] = best(
            lambda: [f.result() for f in [ex.submit(noop) for _ in range(n)]], repeat
        )
    with ctx.Pool(workers) as pool:
        pool.apply_async(noop).get()
        out["mp.Pool.apply_async"] = best(
            lambda: [r.get() for r in [pool.apply_async(noop) for _ in range(n)]], repeat
        )
    return out


def bench_map(n: int, workers: int, ctx: Any, repeat: int) -> dict[str, float]:
    items = range(n)
    out = {}
    with corral.ProcessPoolExecutor(workers, mp_context=ctx) as ex:
        ex.submit(noop).result()
        out["corral"] = best(lambda: list(ex.map(small, items)), repeat)
    with concurrent.futures.ProcessPoolExecutor(workers, mp_context=ctx) as ex:
        ex.submit(noop).result()
        out["stdlib"] = best(lambda: list(ex.map(small, items)), 1)
    with ctx.Pool(workers) as pool:
        pool.apply_async(noop).get()
        out["mp.Pool.map"] = best(lambda: pool.map(small, items), repeat)
    return out


def bench_arrays(count: int, mb: int, workers: int, ctx: Any, repeat: int) -> dict[str, float]:
    arrays = [np.ones(mb * 1024 * 1024 // 8) for _ in range(count)]
    out = {}
    out["memcpy once"] = best(lambda: [a.copy() for a in arrays], repeat)
    with corral.ProcessPoolExecutor(workers, mp_context=ctx) as ex:
        ex.submit(noop).result()
        out["corral"] = best(
            lambda: [f.result() for f in [ex.submit(touch, a) for a in arrays]], repeat
        )
    with concurrent.futures.ProcessPoolExecutor(workers, mp_context=ctx) as ex:
        ex.submit(noop).result()
        out["stdlib"] = best(
            lambda: [f.result() for f in [ex.submit(touch, a) for a in arrays]], repeat
        )
    return out


def bench_start(workers: int, ctx: Any, repeat: int) -> dict[str, float]:
    def corral_start() -> None:
        with corral.ProcessPoolExecutor(workers, mp_context=ctx) as ex:
            ex.submit(noop).result()

    def stdlib_start() -> None:
        with concurrent.futures.ProcessPoolExecutor(workers, mp_context=ctx) as ex:
            ex.submit(noop).result()

    corral_start()  # the forkserver (if any) starts once for both
    return {"corral": best(corral_start, repeat), "stdlib": best(stdlib_start, repeat)}


def report(title: str, times: dict[str, float]) -> None:
    print(f"\n{title}")
    base = times["corral"]
    for name, seconds in times.items():
        ratio = "" if name == "corral" else f"   corral is x{seconds / base:.2f} faster"
        print(f"  {name:22} {seconds * 1000:10.1f} ms{ratio}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--method", default="forkserver")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="smaller sizes (CI smoke run)")
    parser.add_argument("--only", default="noop,map,arrays,start")
    args = parser.parse_args()
    ctx = multiprocessing.get_context(args.method)
    only = set(args.only.split(","))
    scale = 10 if args.quick else 1
    print(f"{args.workers} workers, start method {args.method}, best of {args.repeat}")
    if "noop" in only:
        n = 20_000 // scale
        report(f"{n} no-op submit+result", bench_noop(n, args.workers, ctx, args.repeat))
    if "map" in only:
        n = 200_000 // scale
        report(
            f"map over {n} small items, default arguments",
            bench_map(n, args.workers, ctx, args.repeat),
        )
    if "arrays" in only:
        count = 16 if not args.quick else 4
        report(
            f"{count} x 16 MB numpy arrays in and out",
            bench_arrays(count, 16, args.workers, ctx, args.repeat),
        )
    if "start" in only:
        report("pool start to first result", bench_start(args.workers, ctx, args.repeat))


if __name__ == "__main__":
    main()
