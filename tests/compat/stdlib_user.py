"""Code written for ``concurrent.futures`` that looks its names up at call time.

As libraries do (``concurrent.futures.ProcessPoolExecutor(...)``, ``cf.wait``,
``cf.as_completed``): with corral installed into concurrent.futures, it runs on corral
without a change.
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
from typing import Any

from tests.compat import workers


def crunch(n: int, method: str) -> dict[str, Any]:
    """Fans ``square`` out over a process pool and collects it three stdlib ways."""
    with concurrent.futures.ProcessPoolExecutor(
        max_workers=2, mp_context=multiprocessing.get_context(method)
    ) as pool:
        futures = [pool.submit(workers.square, i) for i in range(n)]
        done, not_done = concurrent.futures.wait(
            futures, timeout=60, return_when=concurrent.futures.ALL_COMPLETED
        )
        first_done, _ = concurrent.futures.wait(
            futures, timeout=60, return_when=concurrent.futures.FIRST_COMPLETED
        )
        completed = sorted(f.result() for f in concurrent.futures.as_completed(futures, timeout=60))
        mapped = list(pool.map(workers.add, range(n), range(n), timeout=60))
        return {
            "pool": type(pool),
            "done": len(done),
            "not_done": len(not_done),
            "first_done": len(first_done) >= 1,
            "completed": completed,
            "ordered": [f.result() for f in futures],
            "mapped": mapped,
        }
