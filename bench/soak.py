"""A chaos soak: a long-lived pool under a random mix of work and faults, checked as it goes.

Every step picks at random: a task of some kind (a value, an exception, a sleep, a CPU
spin, a 4-32 MB array, a result that won't pickle, ``os._exit``, a segfault, SIGKILL
of its own worker, a task that starts a process and leaves it, a task that overruns
its ``task_timeout``), a cancel of a random unfinished future, a ``submit_nowait``
against ``max_pending``, or a streaming ``map``. The thread pool gets the kinds that
make sense in a thread.

Checked while it runs: each future ends within its kind's bound, and with the outcome
its kind must give (or cancelled, if a cancel of it returned True). Checked at the end:
``statistics()`` adds up, and after shutdown no worker, grandchild, thread or /dev/shm
entry of ours is left and the open fds are back where they started. It prints a table
of kinds and outcomes and the parent's RSS, fds and threads at the start, the middle
and the end, and fails if the second half grew the parent's RSS by more than half
again (plus 64 MB). Exit status 1 on any violation.

Run: ``.venv/bin/python bench/soak.py --pool process --seconds 600 --seed 1``
(``make soak`` runs both pools for SOAK_SECONDS each).
"""

from __future__ import annotations

import argparse
import collections
import os
import random
import sys
import tempfile
import threading
import time
from typing import Any

import psutil

import corral
from corral import testing

BOUND = 60.0  # seconds any future may take beyond its kind's own duration


def make_array(megabytes: int) -> Any:
    import numpy as np

    return np.ones(megabytes * 1024 * 1024 // 8)


def spin(seconds: float) -> int:
    end = time.perf_counter() + seconds
    n = 0
    while time.perf_counter() < end:
        n += 1
    return n


def sleep_then(seconds: float, value: int) -> int:
    time.sleep(seconds)
    return value


# kind -> (pools it runs on, weight)
KINDS: dict[str, tuple[str, int]] = {
    "value": ("both", 30),
    "error": ("both", 10),
    "sleep": ("both", 10),
    "spin": ("both", 8),
    "array": ("process", 4),
    "unpicklable": ("process", 3),
    "exit": ("process", 3),
    "segfault": ("process", 2),
    "sigkill": ("process", 2),
    "grandchild": ("process", 3),
    "timeout": ("both", 3),
}


class Soak:
    def __init__(self, pool: str, seed: int, tmp: str) -> None:
        self.rng = random.Random(seed)
        self.pool_kind = pool
        self.tmp = tmp
        self.kinds = [k for k, (where, _) in KINDS.items() if where in ("both", pool)]
        self.weights = [KINDS[k][1] for k in self.kinds]
        self.live: dict[Any, tuple[str, float, Any]] = {}  # future -> (kind, deadline, expect)
        self.cancelled: set[Any] = set()
        self.outcomes: collections.Counter[tuple[str, str]] = collections.Counter()
        self.violations: list[str] = []
        self.grandchildren: list[str] = []
        self.submitted = 0
        if pool == "process":
            self.ex: Any = corral.ProcessPoolExecutor(
                4, max_tasks_per_child=200, max_pending=64, kill_grace=0.2
            )
        else:
            self.ex = corral.ThreadPoolExecutor(8, max_pending=64)

    def submit_one(self) -> None:
        kind = self.rng.choices(self.kinds, self.weights)[0]
        x = self.rng.randrange(1000)
        ex = self.ex
        seconds = 0.0
        if kind == "value":
            fut, expect = ex.submit(testing.square, x), ("value", x * x)
        elif kind == "error":
            fut, expect = ex.submit(testing.fail, "soak"), ("raises", ValueError)
        elif kind == "sleep":
            seconds = self.rng.uniform(0, 0.2)
            fut, expect = ex.submit(sleep_then, seconds, x), ("value", x)
        elif kind == "spin":
            seconds = self.rng.uniform(0, 0.1)
            fut, expect = ex.submit(spin, seconds), ("any", None)
        elif kind == "array":
            fut = ex.submit(make_array, self.rng.choice([4, 8, 16, 32]))
            expect = ("any", None)
        elif kind == "unpicklable":
            fut, expect = (
                ex.submit(testing.return_unpicklable),
                ("raises", corral.SerializationError),
            )
        elif kind == "exit":
            fut, expect = ex.submit(testing.exit_now, 3), ("raises", corral.WorkerCrashed)
        elif kind == "segfault":
            fut, expect = ex.submit(testing.segfault), ("raises", corral.WorkerCrashed)
        elif kind == "sigkill":
            fut, expect = ex.submit(testing.kill_self), ("raises", corral.WorkerCrashed)
        elif kind == "grandchild":
            path = os.path.join(self.tmp, f"gc{self.submitted}")
            self.grandchildren.append(path)
            fut, expect = ex.submit(testing.start_grandchild, path, 600), ("any", None)
        else:  # timeout
            seconds = 0.3
            work = testing.sleep_until_cancelled if self.pool_kind == "thread" else testing.hang
            fut = ex.options(task_timeout=seconds).submit(work)
            expect = ("raises", corral.TaskTimeout)
        self.submitted += 1
        self.live[fut] = (kind, time.monotonic() + seconds + BOUND, expect)

    def cancel_one(self) -> None:
        if self.live:
            fut = self.rng.choice(list(self.live))
            if fut.cancel():
                self.cancelled.add(fut)

    def check(self) -> None:
        current = time.monotonic()
        for fut, (kind, deadline, expect) in list(self.live.items()):
            if not fut.done():
                if current > deadline:
                    self.violations.append(f"{kind} future still pending {BOUND:.0f} s late")
                    del self.live[fut]
                continue
            del self.live[fut]
            outcome = self.judge(fut, kind, expect)
            self.outcomes[(kind, outcome)] += 1

    def judge(self, fut: Any, kind: str, expect: tuple[str, Any]) -> str:
        if fut.cancelled():
            if fut not in self.cancelled:
                self.violations.append(f"{kind}: cancelled, but nobody cancelled it")
            return "cancelled"
        exc = fut.exception()
        how, what = expect
        if how == "value":
            if exc is not None or fut.result() != what:
                self.violations.append(f"{kind}: wanted {what!r}, got {exc or fut.result()!r}")
            return "ok"
        if how == "raises":
            if not isinstance(exc, what):
                self.violations.append(f"{kind}: wanted {what.__name__}, got {exc!r}")
            return type(exc).__name__
        if exc is not None:
            self.violations.append(f"{kind}: failed with {exc!r}")
        return "ok" if exc is None else type(exc).__name__


def sample() -> tuple[int, int, int]:
    me = psutil.Process()
    return me.memory_info().rss // 2**20, me.num_fds(), threading.active_count()


def run(pool: str, seconds: float, seed: int) -> bool:
    # multiprocessing's process-wide helpers (forkserver, resource tracker) start once and
    # stay, with their fds: started before the baseline, they are not counted as leaks
    with corral.ProcessPoolExecutor(1) if pool == "process" else corral.ThreadPoolExecutor(1) as ex:
        ex.submit(testing.noop).result()
    if pool == "process":  # (a first pool forks its workers: the forkserver starts later)
        from multiprocessing import forkserver

        forkserver.ensure_running()
    before = testing.snapshot()
    fds_before = psutil.Process().num_fds()
    samples = {"start": sample()}
    with tempfile.TemporaryDirectory() as tmp:
        soak = Soak(pool, seed, tmp)
        began = time.monotonic()
        halfway = False
        while time.monotonic() - began < seconds:
            step = soak.rng.random()
            if step < 0.80:
                soak.submit_one()
            elif step < 0.93:
                soak.cancel_one()
            elif step < 0.97:
                try:
                    soak.live[soak.ex.submit_nowait(testing.square, 3)] = (
                        "nowait",
                        time.monotonic() + BOUND,
                        ("value", 9),
                    )
                except corral.QueueFull:
                    soak.outcomes[("nowait", "QueueFull")] += 1
            else:
                n = soak.rng.randrange(1, 200)
                got = list(soak.ex.map(testing.square, range(n), buffersize=16))
                ok = got == [i * i for i in range(n)]
                soak.outcomes[("map", "ok" if ok else "WRONG")] += 1
                if not ok:
                    soak.violations.append("map: wrong results")
            if len(soak.live) > 200:
                corral.wait(list(soak.live), timeout=BOUND, return_when=corral.FIRST_COMPLETED)
            soak.check()
            if not halfway and time.monotonic() - began > seconds / 2:
                halfway, samples["middle"] = True, sample()
        corral.wait(list(soak.live), timeout=BOUND + 30)
        soak.check()
        stats = soak.ex.statistics()
        soak.ex.shutdown(wait=True)
        # every task ended and was counted (maps count per chunk on the process pool, so
        # the total is not compared with the items)
        if stats.pending or stats.running or stats.retrying:
            soak.violations.append(f"statistics after the run: {stats}")
        for path in soak.grandchildren:
            try:
                with open(path) as f:
                    pid = int(f.read())
            except (OSError, ValueError):
                continue  # the task was cancelled or crashed before it started one
            if psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                soak.violations.append(f"a grandchild ({pid}) outlived the pool")
        try:
            testing.assert_no_leaks(before, timeout=10)
        except AssertionError as exc:
            soak.violations.append(str(exc))
        if psutil.Process().num_fds() > fds_before:
            soak.violations.append(f"fds: {fds_before} before, {psutil.Process().num_fds()} after")
    samples["end"] = sample()
    # parent RSS has no trend: after the first half's warm-up (segments, caches, the
    # allocator's arenas), the second half may not add half as much again (and 64 MB,
    # two of the largest arrays it sends)
    if "middle" in samples and samples["end"][0] > samples["middle"][0] * 1.5 + 64:
        soak.violations.append(
            f"parent RSS grew from {samples['middle'][0]} MB at half time to "
            f"{samples['end'][0]} MB at the end"
        )
    print(f"\n{pool} pool, {seconds:.0f} s, seed {seed}: {soak.submitted} tasks submitted")
    print(f"  {'kind':<12} {'outcome':<22} count")
    for (kind, outcome), count in sorted(soak.outcomes.items()):
        print(f"  {kind:<12} {outcome:<22} {count}")
    print(f"  statistics: {stats}")
    print("  parent        RSS MB   fds   threads")
    for when, (rss, fds, threads) in samples.items():
        print(f"  {when:<12} {rss:>7} {fds:>5} {threads:>9}")
    for line in soak.violations:
        print(f"  VIOLATION: {line}")
    print(f"  {'clean' if not soak.violations else f'{len(soak.violations)} violations'}")
    return not soak.violations


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pool", choices=["process", "thread", "both"], default="both")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    pools = ["process", "thread"] if args.pool == "both" else [args.pool]
    clean = [run(pool, args.seconds, args.seed) for pool in pools]
    return 0 if all(clean) else 1


if __name__ == "__main__":
    sys.exit(main())
