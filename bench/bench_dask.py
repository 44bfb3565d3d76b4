"""DaskExecutor against plain ``distributed.Client`` on the same local cluster.

One process starts a LocalCluster (worker processes, 127.0.0.1) and measures, on the
same cluster and client, four ways to run the same work:

* ``Client``: plain ``Client.submit`` (or ``Client.map``) then ``Client.gather``;
* ``get_executor``: ``client.get_executor()``, Dask's concurrent.futures executor;
* ``corral``: ``corral.DaskExecutor(client=client)``;
* ``local``: corral's own ProcessPoolExecutor on this machine, with as many
  processes as the cluster has threads (no cluster at all, for scale).

Workloads: bursts of no-op tasks (``--bursts``: N submits, then every result), one
no-op at a time (submit + result), ``map`` over ``--items`` small items, and ``--m``
CPU-bound tasks of about ``--ms`` milliseconds of pure-Python work. The four run
interleaved, each workload ``--repeat`` times, and the best time counts (the machine
may be shared: the load, from ``uptime``, is printed before and after). Ratios are
over plain Client (> 1: slower).

Then cancel of a running task: the time from ``cancel()`` to the process that ran it
being gone (plain Dask has no figure: its cancel leaves the task running), and how
late ``TaskTimeout`` comes.

corral runs each task in a process of the worker's inner corral pool (so that it can
be killed) and pickles the call once more; the ratios say what that costs.

Run: ``.venv/bin/python bench/bench_dask.py [--bursts 300 2000] [--items 10000]
[--m 64] [--workers 2] [--repeat 3]``
"""

from __future__ import annotations

import argparse
import atexit
import logging
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from typing import Any

import psutil

import corral
from corral import testing


def busy(ms: float) -> int:
    """About ``ms`` milliseconds of pure-Python work (holds the GIL)."""
    end = time.perf_counter() + ms / 1000
    n = 0
    while time.perf_counter() < end:
        n += 1
    return n


def timed(fn: Callable[[], Any]) -> float:
    begin = time.perf_counter()
    fn()
    return time.perf_counter() - begin


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _scratch() -> str:
    """A folder for the tasks' pid files, removed when the bench ends."""
    folder = tempfile.mkdtemp(prefix="corral-bench-")
    atexit.register(shutil.rmtree, folder, True)
    return folder


def cancel_latency(ex: corral.DaskExecutor, repeat: int) -> tuple[list[float], list[float]]:
    """Seconds from cancel() to the future cancelled, and to the task's process gone."""
    resolved, gone = [], []
    folder = _scratch()
    for i in range(repeat):
        path = os.path.join(folder, f"pid{i}")
        fut = ex.submit(testing.write_pids_and_hang, path)
        testing.wait_until(lambda p=path: os.path.exists(p), 60)  # type: ignore[misc]
        with open(path) as f:
            pid = int(f.read().split()[0])
        begin = time.perf_counter()
        fut.cancel()
        resolved.append(time.perf_counter() - begin)
        testing.wait_until(lambda p=pid: _gone(p), 10, 0.0002)  # type: ignore[misc]
        gone.append(time.perf_counter() - begin)
    return resolved, gone


def timeout_latency(ex: corral.DaskExecutor, repeat: int, limit: float) -> list[float]:
    """Seconds from the task_timeout deadline to the future failing with TaskTimeout.

    Counted from when the task's process wrote its pid (it has started): an upper
    bound, as the clock starts when the task is sent.
    """
    late = []
    folder = _scratch()
    for i in range(repeat):
        path = os.path.join(folder, f"pid{i}")
        begin = time.perf_counter()
        fut = ex.options(task_timeout=limit).submit(testing.write_pids_and_hang, path)
        try:
            fut.result(timeout=60)
        except corral.TaskTimeout:
            pass
        late.append(time.perf_counter() - begin - limit)
    return late


def load() -> str:
    """The machine's load averages, as ``uptime`` prints them."""
    try:
        out = subprocess.run(["uptime"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return "load: unknown (no uptime)"
    return "load average:" + out.rsplit("load average:", 1)[-1].rstrip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bursts", type=int, nargs="*", default=[300, 2000], help="no-op bursts")
    parser.add_argument("--n", type=int, default=300, help="no-op tasks one at a time")
    parser.add_argument("--items", type=int, default=10000, help="map items (0: skip)")
    parser.add_argument("--m", type=int, default=64, help="CPU-bound tasks")
    parser.add_argument("--ms", type=float, default=50.0, help="milliseconds per CPU task")
    parser.add_argument("--workers", type=int, default=2, help="Dask worker processes")
    parser.add_argument("--threads", type=int, default=1, help="threads per Dask worker")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each workload")
    parser.add_argument("--latency", type=int, default=10, help="cancel measurements")
    parser.add_argument(
        "--prefetch", type=int, default=None, help="DaskExecutor(prefetch=...) (default: its own)"
    )
    args = parser.parse_args()

    import distributed

    print(f"before: {load()}")
    cluster = distributed.LocalCluster(
        n_workers=args.workers,
        threads_per_worker=args.threads,
        processes=True,
        host="127.0.0.1",
        dashboard_address=None,
        silence_logs=logging.ERROR,
    )
    client = distributed.Client(cluster, set_as_default=False)
    options = {} if args.prefetch is None else {"prefetch": args.prefetch}
    ex = corral.DaskExecutor(client=client, **options)
    dask_ex = client.get_executor(pure=False)
    threads = args.workers * args.threads
    local = corral.ProcessPoolExecutor(threads)
    try:
        # warm up: the inner pools start their processes on first use
        list(ex.map(busy, [1.0] * 4 * threads))
        client.gather(client.map(busy, [1.0] * 4 * threads, pure=False))
        list(local.map(busy, [1.0] * 4 * threads))

        def burst(n: int) -> dict[str, Callable[[], Any]]:
            return {
                "Client": lambda: client.gather(
                    [client.submit(testing.noop, pure=False) for _ in range(n)]
                ),
                "get_executor": lambda: [
                    f.result() for f in [dask_ex.submit(testing.noop) for _ in range(n)]
                ],
                "corral": lambda: corral.wait([ex.submit(testing.noop) for _ in range(n)]),
                "local": lambda: corral.wait([local.submit(testing.noop) for _ in range(n)]),
            }

        def one_by_one(n: int) -> dict[str, Callable[[], Any]]:
            return {
                "Client": lambda: [
                    client.submit(testing.noop, pure=False).result() for _ in range(n)
                ],
                "get_executor": lambda: [dask_ex.submit(testing.noop).result() for _ in range(n)],
                "corral": lambda: [ex.submit(testing.noop).result() for _ in range(n)],
                "local": lambda: [local.submit(testing.noop).result() for _ in range(n)],
            }

        def mapped(fn: Callable[[Any], Any], items: list[Any]) -> dict[str, Callable[[], Any]]:
            return {
                "Client": lambda: client.gather(client.map(fn, items, pure=False)),
                "get_executor": lambda: list(dask_ex.map(fn, items)),
                "corral": lambda: list(ex.map(fn, items)),
                "local": lambda: list(local.map(fn, items)),
            }

        rows: list[tuple[str, dict[str, Callable[[], Any]]]] = [
            (f"{n} no-op submits, then all results", burst(n)) for n in args.bursts
        ]
        if args.n:
            rows.append((f"{args.n} no-op submit+result, one at a time", one_by_one(args.n)))
        if args.items:
            rows.append(
                (
                    f"map over {args.items} small items",
                    mapped(testing.square, list(range(args.items))),
                )
            )
        if args.m:
            rows.append((f"{args.m} CPU tasks of {args.ms:g} ms", mapped(busy, [args.ms] * args.m)))
        print(
            f"Dask LocalCluster: {args.workers} worker processes x {args.threads} thread(s), "
            f"distributed {distributed.__version__}, {os.cpu_count()} CPUs; best of "
            f"{args.repeat}, interleaved; local = corral.ProcessPoolExecutor({threads})"
        )
        names = ["Client", "get_executor", "corral", "local"]
        print(
            f"{'workload':<40}"
            + "".join(f"{n:>13}" for n in names)
            + "   ratio over Client: get_executor, corral, local"
        )
        for name, ways in rows:
            best = dict.fromkeys(names, float("inf"))
            for _ in range(args.repeat):
                for way in names:  # interleaved: a slow moment of the machine hits each
                    best[way] = min(best[way], timed(ways[way]))
            cells = "".join(f"{best[n]:12.3f}s" for n in names)
            ratios = "".join(f"{best[n] / best['Client']:8.2f}x" for n in names[1:])
            print(f"{name:<40}{cells}  {ratios}")
        resolved, gone = cancel_latency(ex, args.latency)
        late = timeout_latency(ex, args.latency, 0.5)
        print(
            f"task_timeout=0.5 ({args.latency} runs): TaskTimeout raised "
            f"{statistics.median(late) * 1000:.2f} ms after the deadline (median), "
            f"{max(late) * 1000:.2f} ms max"
        )
        print(
            f"cancel() of a running task ({args.latency} runs): future cancelled in "
            f"{statistics.median(resolved) * 1000:.2f} ms (median); its process gone in "
            f"{statistics.median(gone) * 1000:.1f} ms median, {max(gone) * 1000:.1f} ms max "
            "(plain Dask: the task keeps running)"
        )
    finally:
        ex.shutdown(wait=True, kill=True)
        local.shutdown(wait=True, kill=True)
        dask_ex.shutdown(wait=True)
        client.close()
        cluster.close()
    print(f"after: {load()}")


if __name__ == "__main__":
    main()
