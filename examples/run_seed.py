"""Runs an example of examples/seeds with small workloads: for the tests and the demo.

    .venv/bin/python examples/run_seed.py seed003_map_sum
    .venv/bin/python examples/run_seed.py --list

The examples keep the seeds' workloads (sums up to 1e8, sleeps of up to 10 s), so run
directly (``python examples/seeds/NAME.py``) some take a few seconds, and the asyncio
one about twenty. This runner runs each one as ``__main__``, as ``python NAME.py``
would, with its own ``if __name__ == "__main__":`` block (or top-level code), and:

* an example whose work sizes are module-level constants (``WORK_LIST``, ``PRIMES``)
  runs from a temporary copy in which only those assignments are rewritten with small
  values (on the same line, so line numbers stay the same). Worker processes then see
  the small values however they get the code: by value from ``__main__`` (cloudpickle),
  or by importing the main script again (forkserver and spawn);
* an example whose work is ``time.sleep(...)`` gets ``time.sleep`` scaled down, in this
  process and in its worker processes (see _scaled_sleep.py); the one that stops only on
  Ctrl+C gets a real SIGINT after a moment.
"""

from __future__ import annotations

import argparse
import ast
import multiprocessing
import os
import runpy
import signal
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SEEDS = HERE / "seeds"
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import _scaled_sleep  # noqa: E402  (needs HERE on sys.path when imported as a module)


@dataclass(frozen=True)
class Small:
    """How to run one example small.

    Attributes:
        constants: module-level names whose assignment is rewritten with these values.
        sleep_scale: factor applied to every ``time.sleep`` (1: unchanged).
        interrupt_after: seconds after which the process gets SIGINT (a Ctrl+C), or None.
    """

    constants: dict[str, Any] = field(default_factory=dict)
    sleep_scale: float = 1.0
    interrupt_after: float | None = None


EXAMPLES: dict[str, Small] = {
    "seed000_quit_flag": Small(sleep_scale=0.1, interrupt_after=0.35),
    "seed000_download_many": Small(),
    # The seeds' sums, divided by 1000.
    "seed000_wait": Small({"WORK_LIST": [10, 100, 1000, 10000]}),
    "seed000_as_completed": Small({"WORK_LIST": [100, 1000, 10000, 100000]}),
    "seed001_as_completed_errors": Small(sleep_scale=0.05),
    "seed001_done_callbacks": Small(sleep_scale=0.05),
    "seed001_asyncio": Small(sleep_scale=0.02),
    "seed002_map_timeout": Small(),
    "seed002_as_completed_urls": Small(),
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
        }
    ),
    "seed003_map_sum": Small({"WORK_LIST": [100, 1000, 10000, 100000]}),
    "seed003_wait_as_completed": Small({"WORK_LIST": [100, 1000, 10000, 100000]}),
}


def rewrite_constants(source: str, constants: dict[str, Any]) -> str:
    """``source`` with each top-level ``NAME = ...`` of ``constants`` assigning the new value.

    The new assignment takes the first line of the old one and blank lines the rest, so
    every other line keeps its number.

    Raises:
        ValueError: a name has no top-level assignment (the example changed).
    """
    lines = source.splitlines(keepends=True)
    found = set()
    for node in ast.parse(source).body:
        if not (isinstance(node, ast.Assign) and len(node.targets) == 1):
            continue
        target = node.targets[0]
        if not (isinstance(target, ast.Name) and target.id in constants):
            continue
        assert node.end_lineno is not None
        first, last = node.lineno - 1, node.end_lineno - 1
        lines[first] = f"{target.id} = {constants[target.id]!r}\n"
        for i in range(first + 1, last + 1):
            lines[i] = "\n"
        found.add(target.id)
    missing = set(constants) - found
    if missing:
        raise ValueError(f"no top-level assignment of {sorted(missing)} to rewrite")
    return "".join(lines)


@contextmanager
def small_copy(name: str, constants: dict[str, Any]) -> Iterator[Path]:
    """The path of examples/seeds/NAME.py, or of a temporary copy with ``constants``."""
    path = SEEDS / f"{name}.py"
    if not constants:
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="corral-seed-") as folder:
        copy = Path(folder) / path.name
        copy.write_text(rewrite_constants(path.read_text(encoding="utf-8"), constants))
        yield copy


def run(name: str) -> None:
    small = EXAMPLES[name]
    if small.sleep_scale != 1.0 or small.interrupt_after is not None:
        _scale_sleep(small.sleep_scale, small.interrupt_after)
    if str(SEEDS) not in sys.path:
        sys.path.insert(0, str(SEEDS))  # for `import flags`
    with small_copy(name, small.constants) as path:
        runpy.run_path(str(path), run_name="__main__")


def _scale_sleep(scale: float, interrupt_after: float | None) -> None:
    """Scales ``time.sleep`` by ``scale`` here and in worker processes; sends SIGINT.

    With ``interrupt_after``, the SIGINT comes that many seconds after the first sleep
    in a thread other than the main one: by then the example is surely running its tasks.
    """
    # Workers forked from this process inherit the patch below. Those that the
    # forkserver starts import _scaled_sleep first, which reads the factor from the
    # environment (and finds the module through PYTHONPATH: the forkserver of
    # Python < 3.13 does not get this process's sys.path).
    os.environ[_scaled_sleep.ENV] = repr(scale)
    os.environ["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(HERE), os.environ.get("PYTHONPATH")) if p
    )
    multiprocessing.set_forkserver_preload([_scaled_sleep.__name__])

    before: Callable[[], None] | None = None
    if interrupt_after is not None:
        main_thread = threading.main_thread()
        armed = threading.Lock()

        def before() -> None:
            worker = threading.current_thread() is not main_thread
            if worker and armed.acquire(blocking=False):  # the first one only
                timer = threading.Timer(interrupt_after, os.kill, (os.getpid(), signal.SIGINT))
                timer.daemon = True
                timer.start()

    _scaled_sleep.install(scale, before)


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
