"""Ctrl+C on a busy pool: seconds from SIGINT to the program being gone.

Runs ``demo/busy_pool.py`` (two workers, each in a long task: an hour for corral's
process tasks, 60 s for the stdlib's and for thread tasks) in a session of its own,
sends SIGINT to its process group as a terminal does, and reports how long the program
took to exit, its exit status, how many tracebacks it printed and how many worker
processes (or workers' children) outlived it. The stdlib is given ``--cap`` seconds and
then killed. DESIGN.md §4: corral's process gone <= 1 s after SIGINT (stdlib: 60 s).

Run: ``.venv/bin/python bench/bench_interrupt.py [--repeat 5] [--cap 10]``
"""

from __future__ import annotations

import argparse
import signal
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "demo"))
import busy_pool  # demo/busy_pool.py: the program and its driver


def ctrl_c(backend: str, mode: str, cap: float, group: bool = True) -> dict[str, Any]:
    """One run: start, wait until busy, SIGINT (to the group, or the parent), measure."""
    with tempfile.TemporaryDirectory() as tmp:
        run = busy_pool.Run(backend, mode, Path(tmp))
        took, status, err = run.end(run.signal(signal.SIGINT, group=group), timeout=cap)
        return {
            "seconds": took,
            "status": status,
            "tracebacks": err.count("Traceback (most recent call last)"),
            "left": len(run.workers_left(timeout=0.5)),
        }


CASES = [
    ("corral ProcessPoolExecutor", "process"),
    ("stdlib ProcessPoolExecutor", "stdlib-process"),
    ("corral ThreadPoolExecutor", "thread"),
    ("stdlib ThreadPoolExecutor", "stdlib-thread"),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="runs of each corral case")
    parser.add_argument("--cap", type=float, default=10.0, help="seconds given to the stdlib")
    args = parser.parse_args()
    print(f"Python {sys.version.split()[0]}; 2 workers busy. SIGINT sent to the process")
    print("group (a terminal's Ctrl+C) or to the parent alone (kill -INT, an IDE, a supervisor)")
    print(
        f"{'pool':27} {'mode':5} {'to':6} {'SIGINT to exit':>22} {'status':>6} "
        f"{'tracebacks':>10} left"
    )
    for label, backend in CASES:
        for mode, to in (("with", "group"), ("with", "parent"), ("open", "parent")):
            repeat = args.repeat if backend in ("process", "thread") else 1
            runs = [ctrl_c(backend, mode, args.cap, to == "group") for _ in range(repeat)]
            times = [r["seconds"] for r in runs]
            if None in times:
                shown = f"> {args.cap:.0f} s (killed)"
            else:
                shown = f"{statistics.median(times):.3f} s (max {max(times):.3f})"
            last = runs[-1]
            print(
                f"{label:27} {mode:5} {to:6} {shown:>22} {last['status']:>6} "
                f"{last['tracebacks']:>10} {last['left']}"
            )


if __name__ == "__main__":
    main()
