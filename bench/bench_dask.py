"""DaskExecutor against plain ``distributed.Client`` on the same local cluster.

One process starts a LocalCluster (worker processes, 127.0.0.1) and measures, on the
same cluster and client:

* per-task overhead: N no-op tasks, one at a time (submit + result), and all at once
  (N submits, then every result);
* a CPU-bound map: M tasks of about ``--ms`` milliseconds of pure-Python work;
* cancel of a running task: time from ``cancel()`` to the process that ran it being
  gone (plain Dask has no figure: its cancel leaves the task running).

corral runs each task in a process of the worker's inner corral pool (so that it can
be killed) and pickles the call once more; the ratios say what that costs.

Run: ``.venv/bin/python bench/bench_dask.py [--n 300] [--m 32] [--workers 2]``
"""

from __future__ import annotations

import argparse
import atexit
import logging
import os
import shutil
import statistics
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=300, help="no-op tasks")
    parser.add_argument("--m", type=int, default=32, help="CPU-bound tasks")
    parser.add_argument("--ms", type=float, default=50.0, help="milliseconds per CPU task")
    parser.add_argument("--workers", type=int, default=2, help="Dask worker processes")
    parser.add_argument("--repeat", type=int, default=10, help="cancel measurements")
    args = parser.parse_args()

    import distributed

    cluster = distributed.LocalCluster(
        n_workers=args.workers,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=None,
        silence_logs=logging.ERROR,
    )
    client = distributed.Client(cluster, set_as_default=False)
    ex = corral.DaskExecutor(client=client)
    ahead = corral.DaskExecutor(client=client, prefetch=2 * args.workers)
    try:
        # warm up: the inner pools start their processes on first use
        list(ex.map(busy, [1.0] * 4 * args.workers))
        client.gather(client.map(busy, [1.0] * 4 * args.workers, pure=False))

        def dask_one_by_one() -> None:
            for _ in range(args.n):
                client.submit(testing.noop, pure=False).result()

        def corral_one_by_one() -> None:
            for _ in range(args.n):
                ex.submit(testing.noop).result()

        def dask_all_at_once() -> None:
            client.gather([client.submit(testing.noop, pure=False) for _ in range(args.n)])

        def corral_all_at_once() -> None:
            corral.wait([ex.submit(testing.noop) for _ in range(args.n)])

        def corral_prefetch_all_at_once() -> None:
            corral.wait([ahead.submit(testing.noop) for _ in range(args.n)])

        def dask_map() -> None:
            client.gather(client.map(busy, [args.ms] * args.m, pure=False))

        def corral_map() -> None:
            list(ex.map(busy, [args.ms] * args.m))

        rows = [
            (f"{args.n} no-op submit+result, one at a time", dask_one_by_one, corral_one_by_one),
            (f"{args.n} no-op submits, then all results", dask_all_at_once, corral_all_at_once),
            (
                f"  the same, prefetch={2 * args.workers}",
                dask_all_at_once,
                corral_prefetch_all_at_once,
            ),
            (f"map over {args.m} CPU tasks of {args.ms:g} ms", dask_map, corral_map),
        ]
        print(
            f"Dask LocalCluster: {args.workers} worker processes x 1 thread, "
            f"distributed {distributed.__version__}, {os.cpu_count()} CPUs"
        )
        print(f"{'workload':<44} {'Client':>9} {'corral':>9} {'corral/Client':>14}")
        for name, plain, ours in rows:
            t_plain = min(timed(plain) for _ in range(2))
            t_ours = min(timed(ours) for _ in range(2))
            print(f"{name:<44} {t_plain:8.3f}s {t_ours:8.3f}s {t_ours / t_plain:13.2f}x")
            if "one at a time" in name:
                print(
                    f"{'  per task':<44} {t_plain / args.n * 1000:7.2f}ms "
                    f"{t_ours / args.n * 1000:7.2f}ms"
                )
        resolved, gone = cancel_latency(ex, args.repeat)
        late = timeout_latency(ex, args.repeat, 0.5)
        print(
            f"task_timeout=0.5 ({args.repeat} runs): TaskTimeout raised "
            f"{statistics.median(late) * 1000:.2f} ms after the deadline (median), "
            f"{max(late) * 1000:.2f} ms max"
        )
        print(
            f"cancel() of a running task ({args.repeat} runs): future cancelled in "
            f"{statistics.median(resolved) * 1000:.2f} ms (median); its process gone in "
            f"{statistics.median(gone) * 1000:.1f} ms median, {max(gone) * 1000:.1f} ms max "
            "(plain Dask: the task keeps running)"
        )
    finally:
        ex.shutdown(wait=True, kill=True)
        ahead.shutdown(wait=True, kill=True)
        client.close()
        cluster.close()


if __name__ == "__main__":
    main()
