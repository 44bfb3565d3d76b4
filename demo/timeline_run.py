"""A timeline of the seeds' workloads on a process pool, with a crash, a timeout and a cancel.

    .venv/bin/python demo/timeline_run.py [OUT_DIR]     # default: demo/out/

writes OUT_DIR/timeline.html (a Gantt chart: open it in a browser), OUT_DIR/timeline.svg
(the same chart; docs/timeline.svg is this file) and OUT_DIR/trace.json (open it in
https://ui.perfetto.dev or chrome://tracing). ``make demo`` runs it.

The work: seed 002's ``is_prime`` over its PRIMES and seed 003's ``sum_generator`` over
the first three sizes of its WORK_LIST (examples/seeds, imported as they are), on 3
workers, next to three tasks that go wrong on purpose:

* "crash (retried)": its worker dies (``os._exit``) after 0.3 s; ``retries=1`` runs it
  again on a replacement worker, where it completes;
* "overruns task_timeout": sleeps 30 s under ``task_timeout=0.5``: killed at 0.5 s;
* "cancelled": sleeps 30 s; ``cancel()`` 0.4 s after it started kills it.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import corral
from corral import testing

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "examples" / "seeds"))

from seed002_is_prime import PRIMES, is_prime  # noqa: E402
from seed003_map_sum import WORK_LIST, sum_generator  # noqa: E402


def crash_first_time(marker: str) -> str:
    """Works 0.3 s, then kills its own process, unless ``marker`` exists (a retry)."""
    time.sleep(0.3)
    if not os.path.exists(marker):
        with open(marker, "w"):
            pass
        os._exit(3)
    return "completed on the retry"


def nap(seconds: float, started: testing.Gate | None = None) -> None:
    if started is not None:
        started.open()
    time.sleep(seconds)


def run(out_dir: Path) -> corral.Timeline:
    """Runs the work under a Timeline and writes its three files into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    timeline = corral.Timeline()
    with (
        tempfile.TemporaryDirectory() as tmp,
        testing.Gate() as started,
        corral.ProcessPoolExecutor(3, hooks=timeline) as ex,
    ):
        ex.submit(testing.noop).result()  # the workers' start is not part of the picture
        primes = ex.map(is_prime, PRIMES)
        sums = ex.map(sum_generator, WORK_LIST[:3])
        crash = ex.options(name="crash (retried)", retries=1).submit(
            crash_first_time, os.path.join(tmp, "crashed")
        )
        slow = ex.options(name="overruns task_timeout", task_timeout=0.5).submit(nap, 30)
        doomed = ex.options(name="cancelled").submit(nap, 30, started)
        started.wait(30)
        time.sleep(0.4)  # let it run a while, then stop it
        doomed.cancel()
        list(primes)
        list(sums)
        corral.wait([crash, slow])
    timeline.write_html(out_dir / "timeline.html", "corral: seeds' workloads, 3 workers")
    timeline.write_svg(out_dir / "timeline.svg", "corral: seeds' workloads, 3 workers")
    timeline.write_chrome_trace(out_dir / "trace.json")
    return timeline


if __name__ == "__main__":
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "demo" / "out"
    recorded = run(out)
    counts: dict[str, int] = {}
    for record in recorded.runs:
        counts[record.outcome or "?"] = counts.get(record.outcome or "?", 0) + 1
    print(f"{len(recorded.runs)} runs on {len(recorded.workers)} workers: {counts}")
    print(f"wrote {out}/timeline.html, timeline.svg and trace.json")
