"""Runs an example of examples/seeds with small workloads: for the tests and the demo.

    .venv/bin/python examples/run_seed.py seed003_map_sum
    .venv/bin/python examples/run_seed.py --list

The examples keep the seeds' workloads (sums up to 1e8, sleeps of up to 10 s), so run
directly (``python examples/seeds/NAME.py``) some take a few seconds, and the asyncio
one about twenty. This runner changes no line of them:

* an example whose work sizes are module-level constants is loaded without running its
  ``__main__`` block, its constants are replaced with small ones, and the runner calls
  what that block calls;
* an example whose work is ``time.sleep(...)`` (top-level code, or a loop that ends on
  Ctrl+C) runs as ``__main__`` with ``time.sleep`` scaled down; the one that stops only
  on Ctrl+C gets a real SIGINT after a moment.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import runpy
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

SEEDS = Path(__file__).resolve().parent / "seeds"


@dataclass(frozen=True)
class Small:
    """How to run one example small.

    Attributes:
        constants: module-level names to replace before calling ``entry``.
        entry: what the example's ``__main__`` block calls, given the loaded module;
            None runs the file as ``__main__`` instead.
        sleep_scale: factor applied to every ``time.sleep`` (1: unchanged).
        interrupt_after: seconds after which the process gets SIGINT (a Ctrl+C), or None.
    """

    constants: dict[str, Any] = field(default_factory=dict)
    entry: Callable[[ModuleType], object] | None = None
    sleep_scale: float = 1.0
    interrupt_after: float | None = None


EXAMPLES: dict[str, Small] = {
    "seed000_quit_flag": Small(sleep_scale=0.1, interrupt_after=0.35),
    "seed000_download_many": Small(entry=lambda m: m.main(m.download_many)),
    # The seeds' sums, divided by 1000.
    "seed000_wait": Small({"WORK_LIST": [10, 100, 1000, 10000]}, lambda m: m.main()),
    "seed000_as_completed": Small({"WORK_LIST": [100, 1000, 10000, 100000]}, lambda m: m.main()),
    "seed001_as_completed_errors": Small(sleep_scale=0.05),
    "seed001_done_callbacks": Small(sleep_scale=0.05),
    "seed001_asyncio": Small(sleep_scale=0.02),
    "seed002_map_timeout": Small(entry=lambda m: m.main()),
    "seed002_as_completed_urls": Small(entry=lambda m: m.main()),
    # Primes near 1e9 instead of 1e14 (and a product of two primes near 1e6 last).
    "seed002_is_prime": Small(
        {
            "PRIMES": [
                999999937,
                1000000007,
                999999937,
                1000000009,
                1000003,
                1000003 * 1000033,
            ]
        },
        lambda m: m.main(),
    ),
    "seed003_map_sum": Small({"WORK_LIST": [100, 1000, 10000, 100000]}, lambda m: m.main1()),
    "seed003_wait_as_completed": Small(
        {"WORK_LIST": [100, 1000, 10000, 100000]}, lambda m: m.main()
    ),
}


def load(name: str) -> ModuleType:
    """Imports examples/seeds/NAME.py as module NAME without running its ``__main__`` block."""
    if str(SEEDS) not in sys.path:
        sys.path.insert(0, str(SEEDS))  # for `import flags`
    spec = importlib.util.spec_from_file_location(name, SEEDS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def run(name: str) -> None:
    small = EXAMPLES[name]
    if small.sleep_scale != 1.0 or small.interrupt_after is not None:
        _patch_sleep(small.sleep_scale, small.interrupt_after)
    if small.entry is None:
        path = str(SEEDS / f"{name}.py")
        sys.argv = [path]
        sys.path.insert(0, str(SEEDS))
        runpy.run_path(path, run_name="__main__")
    else:
        module = load(name)
        for key, value in small.constants.items():
            setattr(module, key, value)
        small.entry(module)


def _patch_sleep(scale: float, interrupt_after: float | None) -> None:
    """Scales ``time.sleep`` by ``scale``; and with ``interrupt_after``, sends SIGINT.

    The SIGINT comes ``interrupt_after`` seconds after the first sleep in a thread other
    than the main one: by then the example is surely running its tasks.
    """
    real_sleep = time.sleep
    main_thread = threading.main_thread()
    armed = threading.Lock() if interrupt_after is not None else None

    def sleep(seconds: float) -> None:
        worker = threading.current_thread() is not main_thread
        if armed is not None and worker and armed.acquire(blocking=False):  # the first only
            args = (os.getpid(), signal.SIGINT)
            timer = threading.Timer(interrupt_after or 0.0, os.kill, args)
            timer.daemon = True
            timer.start()
        real_sleep(seconds * scale)

    time.sleep = sleep


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name", nargs="?", help="an example, e.g. seed003_map_sum")
    parser.add_argument("--list", action="store_true", help="list the examples")
    args = parser.parse_args()
    if args.list or not args.name:
        for name in EXAMPLES:
            print(name)
        return
    name = Path(args.name).stem
    if name not in EXAMPLES:
        parser.error(f"unknown example {args.name!r}; --list shows them")
    run(name)


if __name__ == "__main__":
    main()
