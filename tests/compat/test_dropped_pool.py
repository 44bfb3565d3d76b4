"""A pool dropped without ``shutdown()``: scripts and libraries that forget the with-block.

``ex = ProcessPoolExecutor(); fut = ex.submit(...); del ex`` (or the pool simply goes
out of scope in a function): the stdlib holds the executor only weakly from its
worker/manager threads, so the executor is collected, the pending future still gets
its result, and the workers end once the queue is empty. Run in a subprocess so
nothing of it outlives the test.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.compat.conftest import Impl

SCRIPT = textwrap.dedent(
    """
    import gc, sys, threading, time, weakref
    import psutil

    def helpers():
        # multiprocessing's own long-lived helpers, not the pool's
        from multiprocessing import forkserver, resource_tracker
        return {
            getattr(forkserver._forkserver, "_forkserver_pid", None),
            getattr(resource_tracker._resource_tracker, "_pid", None),
        }

    def leftovers():
        threads = [t.name for t in threading.enumerate() if t is not threading.main_thread()]
        kids = []
        for p in psutil.Process().children(recursive=True):
            try:
                if p.pid not in helpers():
                    p.status()  # (raises for a process that has just gone)
                    kids.append(p.pid)
            except psutil.NoSuchProcess:  # it ended while we looked: not left over
                pass
        return threads, kids

    def start():
        ex = getattr(futures, sys.argv[1])(max_workers=2)
        slow = ex.submit(time.sleep, 0.3)
        fut = ex.submit(pow, 2, 10)
        return weakref.ref(ex), slow, fut

    ref, slow, fut = start()  # the pool is dropped here, its future kept
    gc.collect()
    assert ref() is None, "the executor was not collected: " + repr(gc.get_referrers(ref()))
    assert fut.result(timeout=30) == 1024
    assert slow.result(timeout=30) is None
    deadline = time.monotonic() + 10
    while leftovers() != ([], []):
        assert time.monotonic() < deadline, "the pool did not end: %r" % (leftovers(),)
        time.sleep(0.02)  # polling for an end we cannot be told of
    print("OK")
    """
)


@pytest.mark.slow
@pytest.mark.parametrize("pool", ["ThreadPoolExecutor", "ProcessPoolExecutor"])
def test_dropped_pool_is_collected(impl: Impl, pool: str, tmp_path: Path) -> None:
    script = impl.script_import() + "\n" + SCRIPT
    proc = subprocess.run(
        [sys.executable, "-c", script, pool],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "OK", (proc.stdout, proc.stderr)
