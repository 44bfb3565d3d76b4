"""corral beside its peers: every figure of the peers comparison, interleaved in one run.

Systems (2 workers each unless a figure says otherwise, each with its default arguments):
corral's ProcessPoolExecutor, the stdlib's ProcessPoolExecutor with its default start
method (fork on Python <= 3.13) and with forkserver, ``multiprocessing.Pool``, loky
(``loky.ProcessPoolExecutor``), pebble (``ProcessPool``), mpire (``WorkerPool``), joblib
(``Parallel``, its loky backend) and deadpool-executor (``Deadpool``).

Rounds are interleaved (each system once per round, so a burst of load elsewhere hits
every system alike) and a figure is the best (throughput and time figures) or the median
(latency figures and fresh interpreters) of ``--rounds`` rounds. Before each figure the
run waits (at most ``--idle-wait`` seconds) for the machine to be mostly idle and notes the
load it measured. A system that has no API for a figure gets "n/a", never a number; one
whose single run takes longer than ``--slow`` seconds is run once (noted "1 run").

  noop       20k no-op tasks, submit all then collect: tasks/s
  roundtrip  one task at a time, submit then wait for its result: µs per task
  map        map over 200k tiny items with default arguments, then with each system's
             best chunk size (tried among a few sizes first; mpire also keep_alive=True)
  arrays     16 x 16 MB numpy arrays in and out (a task per array, which writes to it and
             returns it), and the one-copy floors: the same bytes copied once, in process,
             into fresh (never touched) pages, and into memory written before
  start      in fresh interpreters (see bench_start.py): import, create a pool, first
             result; and a short-lived pool: import, create, 100 tasks, shut down
  cancel     1-worker pools: cancel the running task, time until its worker is gone and
             until a replacement worker has served a task (corral ``future.cancel()``,
             pebble ``future.cancel()``, deadpool ``cancel_and_kill_if_running()``)
  timeout    1-worker pools, a 0.2 s per-task timeout on a task that hangs: time past the
             deadline until the future failed and until the worker was stopped (corral
             ``task_timeout=``, pebble ``schedule(timeout=)``, deadpool
             ``deadpool_timeout=``, mpire ``apply_async(task_timeout=)``, which interrupts
             the task inside a worker that lives on)
  cpu        32 CPU-bound tasks of ~50 ms through each system's map: speedup over
             running them in process (the ideal is the worker count)
  asyncio    10k no-op thread-pool futures through ``asyncio.gather``: corral's
             ThreadPoolExecutor (futures submitted, then gathered) vs the stdlib's
             ThreadPoolExecutor through ``loop.run_in_executor`` (see bench_asyncio.py);
             the process-pool peers have no such figure

Output: a markdown table (one row per figure, one column per system, the best peer and
corral / best peer) on stdout and in ``--out``; a chart (one panel per figure, each system
normalised to the best peer = 1) in ``--svg`` (docs/peers.svg for a full run).

Run: ``.venv/bin/python bench/peers.py [--quick] [--only noop,map] [--out peers.md]``
(``make bench-peers``). ``--quick`` is a smoke run (1 round, small sizes, under a minute).
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import importlib.metadata
import multiprocessing
import os
import platform
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import psutil
from bench_asyncio import corral_gather, stdlib_gather
from bench_latency import _gone
from bench_process import noop, small
from bench_start import run_python

import corral

ROOT = Path(__file__).resolve().parent.parent
WORKERS = 2


# --------------------------------------------------------------------------- tasks
# Module-level so that every system can pickle them by reference (forkserver and loky
# workers import this module as __mp_main__; the heavy imports above are cheap to repeat
# once per worker, and warm-up runs absorb them before anything is timed).


def touch_any(a: Any) -> Any:
    """bench_process.touch for every system: write to the array and send it back.

    joblib hands a big array to its worker as a read-only memmap (its default
    mmap_mode="r"), so a task that writes must copy it first: what a user has to do.
    """
    if not a.flags.writeable:
        a = a.copy()
    a[0] += 1
    return a


def getpid() -> int:
    return os.getpid()


def hang_report(path: str) -> None:
    """Say which worker runs it (its pid in ``path``), then hang until stopped."""
    tmp = f"{path}.{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(str(os.getpid()))
    os.replace(tmp, path)  # the parent never reads a half-written pid
    time.sleep(3600)


def spin(n: int) -> int:
    """Pure-Python CPU work: a fixed amount of it, so that contention shows (a loop
    that spins until a deadline would take 50 ms however few cores it got)."""
    total = 0
    for i in range(n):
        total += i
    return total


# ------------------------------------------------------------------------- systems


class NotAvailable(Exception):
    """The system has no API for this figure."""


class System:
    """One peer behind one small interface; each method uses the peer's own API."""

    name = ""
    package = ""  # distribution name, for the version in the header
    submit_api = True  # a per-task submit with a future (or async result) back
    chunk_knob = "chunksize"  # map's batching argument; "" when map has none
    cancel_api = False  # can stop a task that is already running
    timeout_api = False  # a per-task timeout that stops the task
    timeout_stops_worker = True

    def open(self, workers: int, tuned: bool = False) -> Any:
        raise NotImplementedError

    def close(self, pool: Any) -> None:
        pool.shutdown(wait=True)

    def submit(self, pool: Any, fn: Callable[..., Any], *args: Any) -> Any:
        return pool.submit(fn, *args)

    def result(self, handle: Any, timeout: float | None = 60.0) -> Any:
        return handle.result(timeout)

    def map(self, pool: Any, fn: Callable[..., Any], items: Iterable[Any], chunk: int) -> list[Any]:
        """``chunk`` 0 means the system's default."""
        if chunk:
            return list(pool.map(fn, items, chunksize=chunk))
        return list(pool.map(fn, items))

    def cancel_running(self, handle: Any) -> None:
        raise NotAvailable

    def submit_timeout(self, pool: Any, seconds: float, fn: Callable[..., Any], *args: Any) -> Any:
        raise NotAvailable

    # Fresh-interpreter code (the start figures): import, make ``p``, a submit
    # expression of ``i``, how to wait for it, and how to shut the pool down.
    imp = ""
    make = ""
    submit_code = "p.submit(abs, -{i})"
    get_code = ".result()"
    close_code = "p.shutdown()"

    def first_code(self) -> str:
        return (
            "import time\nt0 = time.perf_counter()\n"
            f"{self.imp}\np = {self.make}\n"
            f"{self.submit_code.format(i=1)}{self.get_code}\n"
            f"print(time.perf_counter() - t0)\n{self.close_code}\n"
        )

    def short_code(self) -> str:
        return (
            "import time\nt0 = time.perf_counter()\n"
            f"{self.imp}\np = {self.make}\n"
            f"fs = [{self.submit_code.format(i='i')} for i in range(100)]\n"
            f"assert sum(f{self.get_code} for f in fs) == 4950\n"
            f"{self.close_code}\nprint(time.perf_counter() - t0)\n"
        )


class Corral(System):
    name = "corral"
    package = "corral"
    cancel_api = True
    timeout_api = True
    imp = "import corral"
    make = "corral.ProcessPoolExecutor(2)"

    def open(self, workers: int, tuned: bool = False) -> Any:
        return corral.ProcessPoolExecutor(workers)

    def cancel_running(self, handle: Any) -> None:
        if not handle.cancel():
            raise RuntimeError("corral: cancel() of a running task returned False")

    def submit_timeout(self, pool: Any, seconds: float, fn: Callable[..., Any], *args: Any) -> Any:
        return pool.options(task_timeout=seconds).submit(fn, *args)


class Stdlib(System):
    package = ""

    def __init__(self, method: str | None) -> None:
        self.method = method
        default = multiprocessing.get_context().get_start_method()
        self.name = f"stdlib {method or default}"
        self.imp = "import concurrent.futures as cf, multiprocessing as mp"
        ctx = f", mp_context=mp.get_context({method!r})" if method else ""
        self.make = f"cf.ProcessPoolExecutor(2{ctx})"

    def open(self, workers: int, tuned: bool = False) -> Any:
        ctx = multiprocessing.get_context(self.method) if self.method else None
        return concurrent.futures.ProcessPoolExecutor(workers, mp_context=ctx)


class MpPool(System):
    name = "mp.Pool"
    imp = "import multiprocessing as mp"
    make = "mp.Pool(2)"
    submit_code = "p.apply_async(abs, (-{i},))"
    get_code = ".get()"
    close_code = "p.close(); p.join()"

    def open(self, workers: int, tuned: bool = False) -> Any:
        return multiprocessing.Pool(workers)

    def close(self, pool: Any) -> None:
        pool.close()  # (the context manager would terminate(): a clean shutdown instead)
        pool.join()

    def submit(self, pool: Any, fn: Callable[..., Any], *args: Any) -> Any:
        return pool.apply_async(fn, args)

    def result(self, handle: Any, timeout: float | None = 60.0) -> Any:
        return handle.get(timeout)

    def map(self, pool: Any, fn: Callable[..., Any], items: Iterable[Any], chunk: int) -> list[Any]:
        return list(pool.map(fn, items, chunk or None))


class Loky(System):
    name = "loky"
    package = "loky"
    imp = "import loky"
    make = "loky.ProcessPoolExecutor(2)"

    def open(self, workers: int, tuned: bool = False) -> Any:
        import loky

        # A pool of its own, as for every other system (loky's get_reusable_executor is
        # what joblib uses: that is the joblib column).
        return loky.ProcessPoolExecutor(workers)


class Pebble(System):
    name = "pebble"
    package = "pebble"
    cancel_api = True
    timeout_api = True
    imp = "import pebble"
    make = "pebble.ProcessPool(2)"
    submit_code = "p.schedule(abs, args=(-{i},))"
    close_code = "p.close(); p.join()"

    def open(self, workers: int, tuned: bool = False) -> Any:
        import pebble

        return pebble.ProcessPool(max_workers=workers)

    def close(self, pool: Any) -> None:
        pool.close()
        pool.join()

    def submit(self, pool: Any, fn: Callable[..., Any], *args: Any) -> Any:
        return pool.schedule(fn, args=args)

    def map(self, pool: Any, fn: Callable[..., Any], items: Iterable[Any], chunk: int) -> list[Any]:
        return list(pool.map(fn, items, chunksize=chunk or 1).result())

    def cancel_running(self, handle: Any) -> None:
        if not handle.cancel():
            raise RuntimeError("pebble: cancel() of a running task returned False")

    def submit_timeout(self, pool: Any, seconds: float, fn: Callable[..., Any], *args: Any) -> Any:
        return pool.schedule(fn, args=args, timeout=seconds)


class Mpire(System):
    name = "mpire"
    package = "mpire"
    chunk_knob = "chunk_size"
    timeout_api = True
    timeout_stops_worker = False  # it raises in the task; the worker process lives on
    imp = "import mpire"
    make = "mpire.WorkerPool(2)"
    submit_code = "p.apply_async(abs, args=(-{i},))"
    get_code = ".get()"
    close_code = "p.stop_and_join()"

    def open(self, workers: int, tuned: bool = False) -> Any:
        from mpire.pool import WorkerPool

        # By default mpire starts fresh workers for every map call; keep_alive=True
        # reuses them, part of its best setting.
        return WorkerPool(n_jobs=workers, keep_alive=tuned)

    def close(self, pool: Any) -> None:
        pool.stop_and_join()

    def submit(self, pool: Any, fn: Callable[..., Any], *args: Any) -> Any:
        return pool.apply_async(fn, args=args)

    def result(self, handle: Any, timeout: float | None = 60.0) -> Any:
        return handle.get(timeout)

    def map(self, pool: Any, fn: Callable[..., Any], items: Iterable[Any], chunk: int) -> list[Any]:
        return list(pool.map(fn, items, chunk_size=chunk or None))

    def submit_timeout(self, pool: Any, seconds: float, fn: Callable[..., Any], *args: Any) -> Any:
        return pool.apply_async(fn, args=args, task_timeout=seconds)


class Joblib(System):
    name = "joblib"
    package = "joblib"
    submit_api = False  # Parallel(...)(iterable) only: no per-task future
    chunk_knob = "batch_size"

    def open(self, workers: int, tuned: bool = False) -> Any:
        return workers  # a Parallel object per call; its worker processes are reused

    def close(self, pool: Any) -> None:
        # joblib keeps its workers in loky's reusable executor (a module global) between
        # calls; shutting it down gives the next figure a fresh pool, as for the others.
        from joblib.externals.loky import reusable_executor

        executor = reusable_executor._executor
        if executor is not None:
            executor.shutdown(wait=True)

    def map(self, pool: Any, fn: Callable[..., Any], items: Iterable[Any], chunk: int) -> list[Any]:
        import joblib

        parallel = joblib.Parallel(n_jobs=pool, batch_size=chunk or "auto")
        return list(parallel(joblib.delayed(fn)(x) for x in items))

    def first_code(self) -> str:
        return (
            "import time\nt0 = time.perf_counter()\nimport joblib\n"
            "joblib.Parallel(n_jobs=2)([joblib.delayed(abs)(-1)])\n"
            "print(time.perf_counter() - t0)\n"
        )

    def short_code(self) -> str:
        # Shut down explicitly, as the other systems do, rather than at interpreter exit.
        return (
            "import time\nt0 = time.perf_counter()\nimport joblib\n"
            "r = joblib.Parallel(n_jobs=2)(joblib.delayed(abs)(-i) for i in range(100))\n"
            "assert sum(r) == 4950\n"
            "from joblib.externals.loky import get_reusable_executor\n"
            "get_reusable_executor().shutdown(wait=True)\n"
            "print(time.perf_counter() - t0)\n"
        )


class Deadpool(System):
    name = "deadpool"
    package = "deadpool-executor"
    chunk_knob = ""  # concurrent.futures.Executor.map: one task per item
    cancel_api = True
    timeout_api = True
    imp = "import deadpool"
    make = "deadpool.Deadpool(2)"
    close_code = "p.shutdown(); p.runner_thread.join()"

    def open(self, workers: int, tuned: bool = False) -> Any:
        import deadpool

        return deadpool.Deadpool(max_workers=workers)

    def close(self, pool: Any) -> None:
        pool.shutdown(wait=True)
        pool.runner_thread.join()  # what its __exit__ does after shutdown()

    def map(self, pool: Any, fn: Callable[..., Any], items: Iterable[Any], chunk: int) -> list[Any]:
        return list(pool.map(fn, items))

    def cancel_running(self, handle: Any) -> None:
        handle.cancel_and_kill_if_running()

    def submit_timeout(self, pool: Any, seconds: float, fn: Callable[..., Any], *args: Any) -> Any:
        return pool.submit(fn, *args, deadpool_timeout=seconds)


def all_systems() -> list[System]:
    return [
        Corral(),
        Stdlib(None),
        Stdlib("forkserver"),
        MpPool(),
        Loky(),
        Pebble(),
        Mpire(),
        Joblib(),
        Deadpool(),
    ]


# ------------------------------------------------------------------------- figures


@dataclass
class Cell:
    value: float | None  # None: n/a or failed, ``note`` says which
    note: str = ""


@dataclass
class Figure:
    key: str
    title: str
    unit: str  # "tasks/s", "µs", "ms", "x"
    higher_better: bool
    stat: str  # "best" or "median" of the rounds
    cells: dict[str, Cell] = field(default_factory=dict)
    load: str = ""
    extra: str = ""  # a line for the notes under the table
    floors: dict[str, float] = field(default_factory=dict)  # arrays: one copy, in ``unit``
    labels: dict[str, str] = field(default_factory=dict)  # a system's name in the chart


@dataclass
class Config:
    rounds: int
    slow: float
    noop_n: int
    roundtrip_n: int
    map_n: int
    chunks: list[int]
    arrays: int
    cpu_tasks: int
    asyncio_n: int
    idle_wait: float
    start_rounds: int
    start_warmup: bool  # a first, untimed fresh-interpreter run per system


def wait_idle(limit: float, threshold: float = 25.0) -> str:
    """Wait (at most ``limit`` s) until the machine is mostly idle; say what was measured.

    A short cpu_percent sample, not the 1-minute load average: that one still counts the
    figure this run has just finished and would always look busy.
    """
    deadline = time.monotonic() + limit
    while True:
        busy = psutil.cpu_percent(interval=0.5)
        if busy < threshold or time.monotonic() > deadline:
            break
    load1 = os.getloadavg()[0]
    waited = "" if busy < threshold else " (still busy)"
    return f"CPU {busy:.0f}%, load {load1:.2f}{waited}"


def reduce(samples: list[float], stat: str, higher_better: bool) -> float:
    if stat == "median":
        return statistics.median(samples)
    return max(samples) if higher_better else min(samples)


def short_error(exc: BaseException) -> str:
    return f"error: {type(exc).__name__}: {str(exc).splitlines()[0][:60] if str(exc) else ''}"


def interleave(
    runs: Mapping[str, Callable[..., float]], rounds: int, slow: float, label: str
) -> tuple[dict[str, list[float]], dict[str, str]]:
    """Each run once per round, in turn; a run over ``slow`` seconds is not repeated and
    a run that fails is reported, not retried.

    Each round starts one place further along the list: in a fixed order, a system
    always ran right after the same other one (corral after the serial run of the cpu
    figure, say) and took the after-effects of that run every time."""
    samples: dict[str, list[float]] = {name: [] for name in runs}
    notes: dict[str, str] = {}
    names = list(runs)
    for r in range(rounds):
        shift = r % len(names) if names else 0
        for name in names[shift:] + names[:shift]:
            run = runs[name]
            if name in notes and (r or notes[name].startswith("error")):
                continue
            begin = time.perf_counter()
            try:
                samples[name].append(run())
            except Exception as exc:
                print(f"  {label}: {name} failed", file=sys.stderr)
                traceback.print_exc()
                notes[name] = short_error(exc)
                continue
            if time.perf_counter() - begin > slow:
                notes[name] = "1 run"
    return samples, notes


class Pools:
    """One open, warmed pool per system for one figure; all closed at the end."""

    def __init__(
        self,
        systems: list[System],
        workers: int,
        warm: Callable[[System, Any], None],
        tuned: bool = False,
    ) -> None:
        self.pools: dict[str, tuple[System, Any]] = {}
        self.failed: dict[str, str] = {}
        for system in systems:
            try:
                pool = system.open(workers, tuned)
            except Exception as exc:
                self.failed[system.name] = short_error(exc)
                continue
            self.pools[system.name] = (system, pool)
            try:
                warm(system, pool)
            except Exception as exc:
                traceback.print_exc()
                self.failed[system.name] = short_error(exc)

    def __enter__(self) -> Pools:
        return self

    def __exit__(self, *exc: object) -> None:
        for system, pool in self.pools.values():
            try:
                system.close(pool)
            except Exception:
                traceback.print_exc()

    def ready(self) -> dict[str, tuple[System, Any]]:
        return {n: sp for n, sp in self.pools.items() if n not in self.failed}


def warm_submit(system: System, pool: Any) -> None:
    """Both workers started (pools that start workers on demand too), then warm paths."""
    sleeps = [system.submit(pool, time.sleep, 0.05) for _ in range(WORKERS)]
    for h in sleeps:
        system.result(h)
    for h in [system.submit(pool, noop) for _ in range(100)]:
        system.result(h)


def warm_map(system: System, pool: Any) -> None:
    # map only: an mpire pool that ran apply_async refuses map (its workers keep the
    # apply mode), so a map figure's pool never sees a submit.
    system.map(pool, time.sleep, [0.05] * WORKERS, 1)
    system.map(pool, small, range(1000), 0)


def collect(
    fig: Figure,
    systems: list[System],
    samples: dict[str, list[float]],
    notes: dict[str, str],
    convert: Callable[[float], float] = lambda v: v,
) -> None:
    for s in systems:
        got = samples.get(s.name, [])
        note = notes.get(s.name, "")
        if got:
            fig.cells[s.name] = Cell(convert(reduce(got, fig.stat, fig.higher_better)), note)
        else:  # keep an "n/a (why)" set before the runs
            fig.cells.setdefault(s.name, Cell(None, note or "n/a"))


def fig_noop(systems: list[System], cfg: Config) -> list[Figure]:
    fig = Figure("noop", f"no-op submit+result ({cfg.noop_n:,} tasks)", "tasks/s", True, "best")
    fig.load = wait_idle(cfg.idle_wait)
    n = cfg.noop_n
    usable = [s for s in systems if s.submit_api]
    for s in systems:
        if not s.submit_api:
            fig.cells[s.name] = Cell(None, "n/a (no submit)")
    with Pools(usable, WORKERS, warm_submit) as pools:

        def run(system: System, pool: Any) -> float:
            begin = time.perf_counter()
            for h in [system.submit(pool, noop) for _ in range(n)]:
                system.result(h)
            return time.perf_counter() - begin

        runs = {name: partial(run, s, p) for name, (s, p) in pools.ready().items()}
        samples, notes = interleave(runs, cfg.rounds, cfg.slow, "noop")
        notes.update(pools.failed)
    collect(fig, systems, samples, notes, lambda t: n / t)
    return [fig]


def fig_roundtrip(systems: list[System], cfg: Config) -> list[Figure]:
    fig = Figure("roundtrip", "one-at-a-time round trip", "µs", False, "best")
    fig.load = wait_idle(cfg.idle_wait)
    n = cfg.roundtrip_n
    usable = [s for s in systems if s.submit_api]
    for s in systems:
        if not s.submit_api:
            fig.cells[s.name] = Cell(None, "n/a (no submit)")
    with Pools(usable, WORKERS, warm_submit) as pools:

        def run(system: System, pool: Any) -> float:
            begin = time.perf_counter()
            for _ in range(n):
                system.result(system.submit(pool, noop))
            return (time.perf_counter() - begin) / n

        runs = {name: partial(run, s, p) for name, (s, p) in pools.ready().items()}
        samples, notes = interleave(runs, cfg.rounds, cfg.slow, "roundtrip")
        notes.update(pools.failed)
    collect(fig, systems, samples, notes, lambda t: t * 1e6)
    return [fig]


def _map_run(system: System, pool: Any, n: int, chunk: int) -> float:
    begin = time.perf_counter()
    out = system.map(pool, small, range(n), chunk)
    elapsed = time.perf_counter() - begin
    if len(out) != n or out[-1] != 2 * (n - 1):
        raise RuntimeError(f"{system.name}: map returned a wrong result")
    return elapsed


def fig_map(systems: list[System], cfg: Config) -> list[Figure]:
    n = cfg.map_n
    plain = Figure("map", f"map {n:,} tiny items, default args", "ms", False, "best")
    plain.load = wait_idle(cfg.idle_wait)
    with Pools(systems, WORKERS, warm_map) as pools:
        runs = {name: partial(_map_run, s, p, n, 0) for name, (s, p) in pools.ready().items()}
        samples, notes = interleave(runs, cfg.rounds, cfg.slow, "map")
        notes.update(pools.failed)
    collect(plain, systems, samples, notes, lambda t: t * 1000)

    tuned = Figure("map_best", f"map {n:,} tiny items, best chunk size", "ms", False, "best")
    tuned.load = wait_idle(cfg.idle_wait)
    usable = [s for s in systems if s.chunk_knob]
    for s in systems:
        if not s.chunk_knob:
            tuned.cells[s.name] = Cell(None, "n/a (no chunk size)")
    with Pools(usable, WORKERS, warm_map, tuned=True) as pools:
        # One pass over the candidate sizes picks each system's size, then the rounds.
        chosen: dict[str, int] = {}
        for name, (s, p) in pools.ready().items():
            trial = {}
            for chunk in cfg.chunks:
                try:
                    trial[chunk] = _map_run(s, p, n, chunk)
                except Exception as exc:
                    pools.failed[name] = short_error(exc)
                    break
            if trial:
                chosen[name] = min(trial, key=trial.__getitem__)
        runs = {
            name: partial(_map_run, s, p, n, chosen[name])
            for name, (s, p) in pools.ready().items()
            if name in chosen
        }
        samples, notes = interleave(runs, cfg.rounds, cfg.slow, "map best")
        notes.update(pools.failed)
    for name, chunk in chosen.items():
        knob = next(s.chunk_knob for s in systems if s.name == name)
        extra = ", keep_alive" if name == "mpire" else ""
        notes[name] = f"{knob}={chunk}{extra}" + (f", {notes[name]}" if name in notes else "")
    collect(tuned, systems, samples, notes, lambda t: t * 1000)
    tuned.extra = f"chunk sizes tried: {', '.join(map(str, cfg.chunks))}"
    return [plain, tuned]


def fig_arrays(systems: list[System], cfg: Config) -> list[Figure]:
    import mmap

    import numpy as np

    count, mb = cfg.arrays, 16
    fig = Figure("arrays", f"{count} x {mb} MB arrays in and out", "ms", False, "best")
    fig.load = wait_idle(cfg.idle_wait)
    arrays = [np.ones(mb * 1024 * 1024 // 8) for _ in range(count)]

    def copy_fresh() -> float:
        # Into fresh anonymous pages, as a process that receives into new memory gets
        # them: a page fault per 4 KB page, often more than the copying itself.
        maps = [mmap.mmap(-1, a.nbytes) for a in arrays]
        begin = time.perf_counter()
        for a, m in zip(arrays, maps, strict=True):
            np.copyto(np.frombuffer(m, dtype=a.dtype), a)
        elapsed = time.perf_counter() - begin
        for m in maps:
            m.close()
        return elapsed

    reused = [np.zeros_like(a) for a in arrays]  # written once: no faults when timed

    def copy_reused() -> float:
        # Into memory written before: the floor for a transport that keeps and reuses
        # its buffers (shared segments kept mapped between tasks).
        begin = time.perf_counter()
        for a, dst in zip(arrays, reused, strict=True):
            np.copyto(dst, a)
        return time.perf_counter() - begin

    usable = [s for s in systems if s.submit_api or s.name == "joblib"]

    def warm(system: System, pool: Any) -> None:
        if system.submit_api:
            warm_submit(system, pool)
        run(system, pool, arrays[:2])

    def run(system: System, pool: Any, batch: list[Any]) -> float:
        begin = time.perf_counter()
        if system.submit_api:
            out = [system.result(h) for h in [system.submit(pool, touch_any, a) for a in batch]]
        else:  # joblib: Parallel over the arrays
            out = system.map(pool, touch_any, batch, 0)
        elapsed = time.perf_counter() - begin
        if len(out) != len(batch) or out[-1][0] != batch[-1][0] + 1:
            raise RuntimeError(f"{system.name}: wrong arrays back")
        return elapsed

    with Pools(usable, WORKERS, warm) as pools:
        runs: dict[str, Callable[[], float]] = {"fresh": copy_fresh, "reused": copy_reused}
        runs.update({name: partial(run, s, p, arrays) for name, (s, p) in pools.ready().items()})
        samples, notes = interleave(runs, cfg.rounds, cfg.slow, "arrays")
        notes.update(pools.failed)
    collect(fig, systems, samples, notes, lambda t: t * 1000)
    fig.floors = {
        "one copy, fresh pages": min(samples["fresh"]) * 1000,
        "one copy, memory reused": min(samples["reused"]) * 1000,
    }
    return [fig]


def fig_start(systems: list[System], cfg: Config) -> list[Figure]:
    first = Figure("first", "pool start to first result (fresh interpreter)", "ms", False, "median")
    short = Figure("short", "short-lived pool: create, 100 tasks, shutdown", "ms", False, "median")
    for fig, kind in ((first, "first_code"), (short, "short_code")):
        fig.load = wait_idle(cfg.idle_wait)
        # (bench_start.run_python: a fresh `python -c`, .pyc files allowed, as installed)
        runs = {s.name: partial(run_python, getattr(s, kind)()) for s in systems}
        for name, run in runs.items() if cfg.start_warmup else ():
            try:  # one warm-up run each: .pyc files, page cache
                run()
            except Exception:
                print(f"  warm-up of {name} failed", file=sys.stderr)
        samples, notes = interleave(runs, cfg.start_rounds, cfg.slow, fig.key)
        collect(fig, systems, samples, notes, lambda t: t * 1000)
    return [first, short]


def _wait_pid(path: str, limit: float = 30.0) -> int:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            with open(path) as f:
                return int(f.read())
        except (FileNotFoundError, ValueError):
            time.sleep(0.0005)
    raise TimeoutError("the task never started")


def _wait_gone(pid: int, limit: float = 30.0) -> None:
    deadline = time.monotonic() + limit
    while not _gone(pid):
        if time.monotonic() > deadline:
            raise TimeoutError(f"worker {pid} still alive {limit} s later")
        time.sleep(0.0005)


def fig_cancel(systems: list[System], cfg: Config) -> list[Figure]:
    gone_fig = Figure("cancel_gone", "cancel running → worker gone", "ms", False, "median")
    served_fig = Figure(
        "cancel_served", "cancel running → replacement served a task", "ms", False, "median"
    )
    gone_fig.load = served_fig.load = wait_idle(cfg.idle_wait)
    usable = [s for s in systems if s.cancel_api]
    for s in systems:
        if not s.cancel_api:
            gone_fig.cells[s.name] = served_fig.cells[s.name] = Cell(None, "n/a (no cancel)")
    gone: dict[str, list[float]] = {s.name: [] for s in usable}
    tmp = tempfile.mkdtemp(prefix="peers-")

    def run(system: System, pool: Any) -> float:
        path = os.path.join(tmp, f"{system.name}-{time.monotonic_ns()}")
        handle = system.submit(pool, hang_report, path)
        pid = _wait_pid(path)
        begin = time.perf_counter()
        system.cancel_running(handle)
        nxt = system.submit(pool, getpid)
        _wait_gone(pid)
        gone[system.name].append(time.perf_counter() - begin)
        new_pid = system.result(nxt, 30)
        served = time.perf_counter() - begin
        if new_pid == pid:
            raise RuntimeError(f"{system.name}: the cancelled task's worker served the next")
        return served

    # One worker: the next task can only run on the replacement.
    with Pools(usable, 1, lambda s, p: s.result(s.submit(p, noop))) as pools:
        runs = {name: partial(run, s, p) for name, (s, p) in pools.ready().items()}
        samples, notes = interleave(runs, cfg.rounds, cfg.slow, "cancel")
        notes.update(pools.failed)
    collect(served_fig, systems, samples, notes, lambda t: t * 1000)
    collect(gone_fig, systems, gone, notes, lambda t: t * 1000)
    return [gone_fig, served_fig]


def fig_timeout(systems: list[System], cfg: Config, limit: float = 0.2) -> list[Figure]:
    failed_fig = Figure(
        "timeout_failed",
        f"task timeout ({limit} s) → future failed, past the deadline",
        "ms",
        False,
        "median",
    )
    stopped_fig = Figure(
        "timeout_stopped", "task timeout → worker stopped, past the deadline", "ms", False, "median"
    )
    failed_fig.load = stopped_fig.load = wait_idle(cfg.idle_wait)
    usable = [s for s in systems if s.timeout_api]
    for s in systems:
        if not s.timeout_api:
            failed_fig.cells[s.name] = stopped_fig.cells[s.name] = Cell(None, "n/a (no timeout)")
        elif not s.timeout_stops_worker:
            stopped_fig.cells[s.name] = Cell(None, "n/a (task interrupted, worker kept)")
    stopped: dict[str, list[float]] = {s.name: [] for s in usable}
    tmp = tempfile.mkdtemp(prefix="peers-")

    def run(system: System, pool: Any) -> float:
        path = os.path.join(tmp, f"{system.name}-{time.monotonic_ns()}")
        begin = time.perf_counter()  # the deadline counts from here at the earliest
        handle = system.submit_timeout(pool, limit, hang_report, path)
        try:
            system.result(handle, 30)
        except Exception as exc:  # each peer has its own timeout error
            # result(30) itself timing out would be a hang, not the task's timeout
            if time.perf_counter() - begin > 29:
                raise RuntimeError(f"{system.name}: no timeout after 30 s") from exc
        else:
            raise RuntimeError(f"{system.name}: a task that hangs returned")
        failed = time.perf_counter() - begin - limit
        if system.timeout_stops_worker:
            _wait_gone(_wait_pid(path))
            stopped[system.name].append(time.perf_counter() - begin - limit)
        return failed

    with Pools(usable, 1, lambda s, p: s.result(s.submit(p, noop))) as pools:
        runs = {name: partial(run, s, p) for name, (s, p) in pools.ready().items()}
        samples, notes = interleave(runs, cfg.rounds, cfg.slow, "timeout")
        notes.update(pools.failed)
    collect(failed_fig, systems, samples, notes, lambda t: t * 1000)
    collect(stopped_fig, systems, stopped, notes, lambda t: t * 1000)
    return [failed_fig, stopped_fig]


def calibrate_spin(seconds: float) -> int:
    n = 100_000
    while True:
        begin = time.perf_counter()
        spin(n)
        took = time.perf_counter() - begin
        if took > 0.02:
            return int(n * seconds / took)
        n *= 2


def fig_cpu(systems: list[System], cfg: Config) -> list[Figure]:
    count = cfg.cpu_tasks
    fig = Figure("cpu", f"{count} CPU tasks of 50 ms, speedup (ideal {WORKERS})", "x", True, "best")
    fig.load = wait_idle(cfg.idle_wait)
    n = calibrate_spin(0.05)
    items = [n] * count

    def serial() -> float:
        begin = time.perf_counter()
        for x in items:
            spin(x)
        return time.perf_counter() - begin

    def run(system: System, pool: Any) -> float:
        begin = time.perf_counter()
        system.map(pool, spin, items, 0)
        return time.perf_counter() - begin

    with Pools(systems, WORKERS, warm_map) as pools:
        runs: dict[str, Callable[[], float]] = {"serial": serial}
        runs.update({name: partial(run, s, p) for name, (s, p) in pools.ready().items()})
        samples, notes = interleave(runs, cfg.rounds, cfg.slow, "cpu")
        notes.update(pools.failed)
    base = min(samples["serial"])
    collect(fig, systems, samples, notes, lambda t: base / t)
    fig.extra = f"serial: {base * 1000:.0f} ms in process (best of the rounds)"
    return [fig]


def fig_asyncio(systems: list[System], cfg: Config) -> list[Figure]:
    n = cfg.asyncio_n
    fig = Figure("asyncio", f"asyncio.gather of {n:,} thread-pool futures", "ms", False, "best")
    fig.load = wait_idle(cfg.idle_wait)
    stdlib = next(s.name for s in systems if isinstance(s, Stdlib) and s.method is None)
    pairs: dict[str, tuple[Any, Any]] = {}
    if any(s.name == "corral" for s in systems):
        pairs["corral"] = (corral.ThreadPoolExecutor(WORKERS), corral_gather)
    if any(s.name == stdlib for s in systems):
        pairs[stdlib] = (concurrent.futures.ThreadPoolExecutor(WORKERS), stdlib_gather)
    for s in systems:
        if s.name not in pairs:
            fig.cells[s.name] = Cell(None, "n/a (process pool)")
    try:
        for ex, coro in pairs.values():
            asyncio.run(coro(ex, 100))  # warm the threads up

        def run(ex: Any, coro: Any) -> float:
            begin = time.perf_counter()
            asyncio.run(coro(ex, n))
            return time.perf_counter() - begin

        runs = {name: partial(run, e, c) for name, (e, c) in pairs.items()}
        samples, notes = interleave(runs, cfg.rounds, cfg.slow, "asyncio")
    finally:
        for ex, _ in pairs.values():
            ex.shutdown(wait=True)
    collect(fig, systems, samples, notes, lambda t: t * 1000)
    fig.labels = {"corral": "corral threads", stdlib: "stdlib threads"}
    fig.extra = (
        f"the {stdlib} column: the stdlib ThreadPoolExecutor through loop.run_in_executor; "
        "corral: its ThreadPoolExecutor's futures gathered (2 threads each)"
    )
    return [fig]


FIGURES: dict[str, Callable[[list[System], Config], list[Figure]]] = {
    "noop": fig_noop,
    "roundtrip": fig_roundtrip,
    "map": fig_map,
    "arrays": fig_arrays,
    "start": fig_start,
    "cancel": fig_cancel,
    "timeout": fig_timeout,
    "cpu": fig_cpu,
    "asyncio": fig_asyncio,
}


# -------------------------------------------------------------------------- output


def fmt(value: float, unit: str) -> str:
    if unit == "tasks/s":
        return f"{value:,.0f}"
    if unit == "x":
        return f"{value:.2f}"
    if value >= 100:
        return f"{value:,.0f} {unit}"
    if value >= 10:
        return f"{value:.1f} {unit}"
    return f"{value:.2f} {unit}"


def best_peer(fig: Figure) -> tuple[str, float] | None:
    peers = [(n, c.value) for n, c in fig.cells.items() if n != "corral" and c.value is not None]
    if not peers:
        return None
    pick = max if fig.higher_better else min
    return pick(peers, key=lambda nv: nv[1])


def ratio(fig: Figure) -> str:
    peer = best_peer(fig)
    mine = fig.cells.get("corral", Cell(None)).value
    if peer is None or mine is None:
        return "n/a"
    theirs = peer[1]
    if mine == theirs:
        return "level"
    ahead = mine > theirs if fig.higher_better else mine < theirs
    factor = max(mine, theirs) / min(mine, theirs) if min(mine, theirs) > 0 else float("inf")
    return f"{factor:.2f}x {'ahead' if ahead else 'behind'}"


def table(figures: list[Figure], systems: list[System]) -> str:
    names = [s.name for s in systems]
    head = ["figure", *names, "best peer", "corral / best peer", "of rounds", "load"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for fig in figures:
        row = [f"{fig.title} [{fig.unit}, {'higher' if fig.higher_better else 'lower'} is better]"]
        for name in names:
            cell = fig.cells.get(name, Cell(None, "n/a"))
            if cell.value is None:
                row.append(cell.note or "n/a")
            else:
                row.append(fmt(cell.value, fig.unit) + (f" ({cell.note})" if cell.note else ""))
        peer = best_peer(fig)
        row.append(f"{peer[0]} {fmt(peer[1], fig.unit)}" if peer else "n/a")
        row.append(ratio(fig))
        row.append(fig.stat)
        row.append(fig.load)
        lines.append("| " + " | ".join(row) + " |")
    notes = []
    for fig in figures:
        mine = fig.cells.get("corral", Cell(None)).value
        peer = best_peer(fig)
        for label, floor in fig.floors.items():
            parts = [f"{label} (in process) {fmt(floor, 'ms')}"]
            if mine is not None:
                parts.append(f"corral {mine / floor:.1f}x that")
            if peer:
                parts.append(f"best peer ({peer[0]}) {peer[1] / floor:.1f}x")
            notes.append(f"- {fig.title}: " + "; ".join(parts))
        if fig.extra:
            notes.append(f"- {fig.title}: {fig.extra}")
    return "\n".join(lines) + ("\n\n" + "\n".join(notes) if notes else "") + "\n"


def chart(figures: list[Figure], systems: list[System], path: Path, header: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    matplotlib.rcParams["svg.hashsalt"] = "corral-peers"  # stable ids: diffable SVG
    matplotlib.rcParams["svg.fonttype"] = "none"  # text stays text: a small, greppable file
    import matplotlib.pyplot as plt

    cols = 3
    rows = -(-len(figures) // cols)
    fig_, axes = plt.subplots(rows, cols, figsize=(15, 3.1 * rows), squeeze=False)
    names = [s.name for s in systems]
    for ax, fig in zip(axes.flat, figures, strict=False):  # (spare panels stay empty)
        peer = best_peer(fig)
        rows_: list[tuple[str, float | None, str, str]] = []  # label, ratio, text, colour
        for name in names:
            cell = fig.cells.get(name, Cell(None))
            label = fig.labels.get(name, name)
            if cell.value is None or peer is None:
                rows_.append((label, None, "n/a", ""))
            else:
                colour = "#d62728" if name == "corral" else "#7f7f7f"
                rows_.append((label, cell.value / peer[1], fmt(cell.value, fig.unit), colour))
        if peer is not None:
            for label, floor in fig.floors.items():
                rows_.append((label, floor / peer[1], fmt(floor, fig.unit), "#1f77b4"))
        shown = [r for r in rows_ if r[1] is not None]
        ratios = [r[1] for r in shown if r[1]]
        # A log axis when the spread is wide (deadpool's map is hundreds of times the
        # best): on a linear one every other bar would be a sliver.
        log = bool(ratios) and max(ratios) / min(ratios) > 20
        base = min(ratios) / 2 if log else 0.0
        for i, (_, ratio_, text, colour) in enumerate(rows_):
            if ratio_ is None:
                ax.text(0.01, i, text, va="center", fontsize=7, color="#555555",
                        transform=ax.get_yaxis_transform())  # fmt: skip
                continue
            ax.barh(i, ratio_ - base, left=base, color=colour)
            ax.text(ratio_, i, f" {text}", va="center", fontsize=7)
        if log:
            ax.set_xscale("log")
        ax.set_xlim(right=(max(ratios) * (4 if log else 1.3)) if ratios else 1.5)
        ax.set_yticks(range(len(rows_)), [r[0] for r in rows_], fontsize=8)
        ax.set_ylim(len(rows_) - 0.5, -0.5)  # first system on top
        ax.axvline(1.0, color="black", linewidth=0.8)
        better = "higher" if fig.higher_better else "lower"
        scale = ", log scale" if log else ""
        ax.set_title(f"{fig.title}\n(best peer = 1, {better} is better{scale})", fontsize=9)
        ax.tick_params(axis="x", labelsize=7)
    for ax in list(axes.flat)[len(figures) :]:
        ax.axis("off")
    fig_.suptitle(header, fontsize=10)
    fig_.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    # (a .png path gives a PNG, for a quick look; the SVG carries no date: same run, same file)
    fig_.savefig(path, metadata={"Date": None} if path.suffix == ".svg" else None)
    plt.close(fig_)


def versions(systems: list[System]) -> str:
    out = []
    for s in systems:
        if s.package:
            try:
                out.append(f"{s.name} {importlib.metadata.version(s.package)}")
            except importlib.metadata.PackageNotFoundError:
                out.append(f"{s.name} (version unknown)")
    return ", ".join(out)


def leftover_children() -> list[str]:
    """Child processes still here after every pool was shut down, bar multiprocessing's
    own helpers (the forkserver and resource tracker live until this process exits)."""
    helpers = ("forkserver import main", "resource_tracker import main")
    out = []
    for child in psutil.Process().children(recursive=True):
        try:
            cmd = " ".join(child.cmdline())
            if child.status() == psutil.STATUS_ZOMBIE or any(h in cmd for h in helpers):
                continue
            out.append(f"{child.pid} {cmd[:100]}")
        except psutil.NoSuchProcess:
            continue
    return out


def main() -> None:
    global WORKERS
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 round, small sizes")
    parser.add_argument("--only", default=",".join(FIGURES), help="figures, comma-separated")
    parser.add_argument("--systems", default="", help="systems, comma-separated (default all)")
    parser.add_argument("--out", type=Path, help="write the markdown table here")
    parser.add_argument("--svg", type=Path, help="the chart (default docs/peers.svg, not --quick)")
    parser.add_argument("--slow", type=float, default=5.0, help="run only once above (s)")
    parser.add_argument("--idle-wait", type=float, default=60.0, help="max wait for idle (s)")
    parser.add_argument(
        "--workers", type=int, default=WORKERS, help="workers per pool (the many-core figures)"
    )
    parser.add_argument("--cpu-tasks", type=int, help="tasks of the cpu figure (default 32)")
    args = parser.parse_args()
    WORKERS = args.workers
    unknown = set(args.only.split(",")) - set(FIGURES)
    if unknown:
        parser.error(f"unknown figures {sorted(unknown)}; known: {', '.join(FIGURES)}")
    systems = all_systems()
    if args.systems:
        wanted = args.systems.split(",")
        systems = [s for s in systems if s.name in wanted]
    if args.quick:
        cfg = Config(
            rounds=1, slow=args.slow, noop_n=1000, roundtrip_n=100, map_n=2000,
            chunks=[256], arrays=4, cpu_tasks=8, asyncio_n=1000,
            idle_wait=min(args.idle_wait, 1.0), start_rounds=1, start_warmup=False,
        )  # fmt: skip
    else:
        cfg = Config(
            rounds=args.rounds, slow=args.slow, noop_n=20_000, roundtrip_n=1000,
            map_n=200_000, chunks=[64, 256, 1024, 4096, 16384], arrays=16, cpu_tasks=32,
            asyncio_n=10_000, idle_wait=args.idle_wait, start_rounds=args.rounds,
            start_warmup=True,
        )  # fmt: skip
    if args.cpu_tasks:
        cfg.cpu_tasks = args.cpu_tasks
    svg = args.svg or (None if args.quick else ROOT / "docs" / "peers.svg")

    started = time.perf_counter()
    header = (
        f"Python {platform.python_version()}, {os.cpu_count()} CPUs, {WORKERS} workers, "
        f"{cfg.rounds} rounds; {versions(systems)}"
    )
    print(header)
    print(f"corral from {Path(corral.__file__).parent}")
    figures: list[Figure] = []
    for key in args.only.split(","):
        print(f"\n[{key}] ...", flush=True)
        for fig in FIGURES[key](systems, cfg):
            # the load average once the figure is done: others' work during it shows here
            fig.load += f"; load after {os.getloadavg()[0]:.2f}"
            figures.append(fig)
            values = {n: c.value for n, c in fig.cells.items() if c.value is not None}
            shown = ", ".join(f"{n} {fmt(v, fig.unit)}" for n, v in values.items())
            print(f"  {fig.title}: {shown}  [{fig.load}]", flush=True)
    took = time.perf_counter() - started
    text = (
        f"{header}\n\n{table(figures, systems)}\n"
        f"Run took {took:.0f} s; load after: {os.getloadavg()[0]:.2f}.\n"
    )
    print("\n" + text)
    if args.out:
        args.out.write_text(text)
    if svg:
        chart(figures, systems, svg, header)
        print(f"chart: {svg}")
    left = leftover_children()
    if left:
        print("child processes left after the run:\n  " + "\n  ".join(left))


if __name__ == "__main__":
    main()
