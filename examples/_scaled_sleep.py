"""Scales ``time.sleep`` for examples/run_seed.py, in its process and in worker processes.

run_seed.py calls :func:`install` in its own process. Worker processes started with
fork inherit that. Worker processes started by the forkserver (corral's default for a
script with an ``if __name__ == "__main__":`` guard) do not: run_seed.py asks the
forkserver to import this module first (``multiprocessing.set_forkserver_preload``),
and the import installs the factor found in the environment variable ``ENV``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

#: The environment variable that carries the factor to the forkserver's workers.
ENV = "CORRAL_SEED_SLEEP_SCALE"

_real_sleep = time.sleep


def install(scale: float, before: Callable[[], None] | None = None) -> None:
    """Makes ``time.sleep(s)`` sleep ``s * scale``; ``before()`` runs first on each call."""

    def sleep(seconds: float) -> None:
        if before is not None:
            before()
        _real_sleep(seconds * scale)

    time.sleep = sleep


if os.environ.get(ENV):
    install(float(os.environ[ENV]))
