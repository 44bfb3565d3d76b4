"""The Python logging cookbook, "Logging to a single file from multiple processes".

A ``multiprocessing.Queue`` goes to the workers through ``initargs``; the initializer
installs a ``logging.handlers.QueueHandler`` on the worker's root logger; the parent
drains the queue with a ``QueueListener``. Written with the constructor arguments the
stdlib takes, so the same code runs on both. (corral also forwards worker records to
the parent by default; the assertion is on what came through the queue.)
"""

from __future__ import annotations

import gc
import logging
import logging.handlers
import multiprocessing

import pytest

from tests.compat import workers
from tests.compat.conftest import Impl

N = 6


@pytest.mark.slow
@pytest.mark.parametrize("method", ["fork", "forkserver", "spawn"])
def test_queue_handler_through_initargs(impl: Impl, method: str) -> None:
    ctx = multiprocessing.get_context(method)
    queue = ctx.Queue()
    seen: list[logging.LogRecord] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record)

    listener = logging.handlers.QueueListener(queue, Collect())
    listener.start()
    try:
        with impl.futures.ProcessPoolExecutor(
            max_workers=2,
            mp_context=ctx,
            initializer=workers.install_queue_handler,
            initargs=(queue,),
        ) as ex:
            futures = [ex.submit(workers.log_task, n) for n in range(N)]
            assert [f.result(timeout=60) for f in futures] == list(range(N))
    finally:
        listener.stop()  # drains what the workers put before their exit
        queue.close()
        queue.join_thread()
        gc.collect()
    messages = sorted(r.getMessage() for r in seen if r.name == "compat.task")
    tasks = sorted(int(m.split()[1]) for m in messages)
    assert tasks == list(range(N)), messages
