"""A subclass that overrides ``submit``: dask's ``ContextAwareThreadPoolExecutor``.

dask (``dask.local``/``distributed``) and others subclass ``ThreadPoolExecutor`` and
override only ``submit`` to run each task in a copy of the caller's context
(``contextvars.copy_context().run``). ``Executor.map`` in the stdlib calls
``self.submit`` for every item, so ``map`` gets the context too, and any per-item hook
of the subclass runs once per item.
"""

from __future__ import annotations

import contextvars
import multiprocessing
import threading
from collections.abc import Callable
from typing import Any

import pytest

from tests.compat import workers
from tests.compat.conftest import Impl

N = 10


def _context_aware(base: type[Any]) -> type[Any]:
    class ContextAwareExecutor(base):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.submitted = 0
            self._count_lock = threading.Lock()

        def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
            with self._count_lock:
                self.submitted += 1
            return super().submit(contextvars.copy_context().run, fn, *args, **kwargs)

    return ContextAwareExecutor


def _run(impl: Impl, pool: str, **kwargs: Any) -> None:
    cls = _context_aware(getattr(impl.futures, pool))
    token = workers.REQUEST_ID.set("caller-ctx")
    try:
        with cls(max_workers=2, **kwargs) as ex:
            mapped = list(ex.map(workers.read_request_id, range(N), timeout=60))
            assert ex.submitted == N
            one = ex.submit(workers.read_request_id, -1).result(timeout=60)
            assert ex.submitted == N + 1
    finally:
        workers.REQUEST_ID.reset(token)
    assert mapped == [(i, "caller-ctx") for i in range(N)]
    assert one == (-1, "caller-ctx")


def test_thread_subclass_submit_carries_context(impl: Impl) -> None:
    _run(impl, "ThreadPoolExecutor")


@pytest.mark.parametrize("method", ["fork", "forkserver"])
def test_process_subclass_map_goes_through_submit(impl: Impl, method: str) -> None:
    # contextvars.Context does not pickle: the process variant only counts the submits
    class Counting(impl.futures.ProcessPoolExecutor):  # type: ignore[misc, name-defined]
        submitted = 0

        def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
            type(self).submitted += 1
            return super().submit(fn, *args, **kwargs)

    with Counting(max_workers=2, mp_context=multiprocessing.get_context(method)) as ex:
        assert list(ex.map(workers.square, range(N), timeout=60)) == [i * i for i in range(N)]
    assert Counting.submitted == N
