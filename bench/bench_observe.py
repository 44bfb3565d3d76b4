"""What watching a pool costs: progress bars and the timeline, on and off, in one run.

1. ``map`` over 200k tiny items on the process pool (default arguments): plain, with
   ``progress=`` (text and tqdm, drawn into a StringIO so the terminal does not set
   the pace), with ``hooks=corral.Timeline()``, and with both.
2. 200k ``submit`` + ``result`` of a no-op, on the process pool and on the thread
   pool, plain and with a Timeline: the per-task cost of hooks (a map batches items
   into chunks, so it raises few events; single submits raise two per task).
3. ``as_completed`` over 200k futures of the thread pool, with and without a progress
   bar: the per-future cost of counting (a done callback each).

Each variant runs ``--repeat`` times (9 for the maps, which take about 40 ms, so that
one slow run does not decide; 3 for the rest), interleaved so that drift hits all
alike; the median is reported with its ratio to the plain run (1.03: 3 % slower).

Run: ``.venv/bin/python bench/bench_observe.py [--items 200000] [--submits 200000]``
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import statistics
import time
from collections.abc import Callable

import corral
from corral import testing

WORKERS = 2


def map_run(items: int, progress: str | None, timeline: bool) -> Callable[[], None]:
    def run() -> None:
        hooks = corral.Timeline() if timeline else None
        bar = False if progress is None else corral.Progress(file=io.StringIO(), style=progress)
        with corral.ProcessPoolExecutor(WORKERS, hooks=hooks) as ex:
            ex.submit(testing.noop).result()  # workers up: the pool start is not measured
            begin = time.perf_counter()
            for _ in ex.map(testing.square, range(items), progress=bar):
                pass
            run.seconds = time.perf_counter() - begin  # type: ignore[attr-defined]

    return run


def submit_run(kind: str, tasks: int, timeline: bool) -> Callable[[], None]:
    def run() -> None:
        hooks = corral.Timeline() if timeline else None
        cls = corral.ProcessPoolExecutor if kind == "process" else corral.ThreadPoolExecutor
        with cls(WORKERS, hooks=hooks) as ex:
            ex.submit(testing.noop).result()
            begin = time.perf_counter()
            futures = [ex.submit(testing.noop) for _ in range(tasks)]
            for fut in futures:
                fut.result()
            run.seconds = time.perf_counter() - begin  # type: ignore[attr-defined]

    return run


def as_completed_run(tasks: int, progress: bool) -> Callable[[], None]:
    def run() -> None:
        with corral.ThreadPoolExecutor(WORKERS) as ex:
            ex.submit(testing.noop).result()
            begin = time.perf_counter()
            futures = [ex.submit(testing.noop) for _ in range(tasks)]
            bar = corral.Progress(file=io.StringIO(), style="text") if progress else False
            for _ in corral.as_completed(futures, progress=bar):
                pass
            run.seconds = time.perf_counter() - begin  # type: ignore[attr-defined]

    return run


def measure(variants: dict[str, Callable[[], None]], repeat: int) -> dict[str, float]:
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(repeat):
        for name, run in variants.items():
            run()
            times[name].append(run.seconds)  # type: ignore[attr-defined]
    return {name: statistics.median(values) for name, values in times.items()}


def report(title: str, medians: dict[str, float]) -> None:
    base = next(iter(medians.values()))
    print(f"\n{title}")
    for name, seconds in medians.items():
        print(f"  {name:<34} {seconds:8.3f} s   {seconds / base:5.2f}x plain")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--items", type=int, default=200_000)
    parser.add_argument("--submits", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=9, help="runs of each map variant")
    parser.add_argument("--repeat-submits", type=int, default=3, help="runs of the others")
    args = parser.parse_args()
    has_tqdm = importlib.util.find_spec("tqdm") is not None

    variants = {
        "plain": map_run(args.items, None, False),
        "progress (text)": map_run(args.items, "text", False),
    }
    if has_tqdm:
        variants["progress (tqdm)"] = map_run(args.items, "tqdm", False)
    variants["timeline"] = map_run(args.items, None, True)
    variants["progress (text) + timeline"] = map_run(args.items, "text", True)
    report(
        f"process pool, map over {args.items:,} tiny items, {WORKERS} workers "
        f"(median of {args.repeat})",
        measure(variants, args.repeat),
    )
    report(
        f"process pool, {args.submits:,} no-op submit+result (median of {args.repeat_submits})",
        measure(
            {
                "plain": submit_run("process", args.submits, False),
                "timeline": submit_run("process", args.submits, True),
            },
            args.repeat_submits,
        ),
    )
    report(
        f"thread pool, {args.submits:,} no-op submit+result (median of {args.repeat_submits})",
        measure(
            {
                "plain": submit_run("thread", args.submits, False),
                "timeline": submit_run("thread", args.submits, True),
            },
            args.repeat_submits,
        ),
    )
    report(
        f"thread pool, {args.submits:,} no-op submits, then as_completed "
        f"(median of {args.repeat_submits})",
        measure(
            {
                "plain": as_completed_run(args.submits, False),
                "progress (text)": as_completed_run(args.submits, True),
            },
            args.repeat_submits,
        ),
    )


if __name__ == "__main__":
    main()
