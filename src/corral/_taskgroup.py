"""``corral.TaskGroup``: structured, fail-fast groups of tasks on any executor.

Leaving the ``with`` block waits for every task of the group. The first task that fails
cancels all its siblings (running process tasks are killed, thread tasks see
``corral.cancelled()``), and the block raises an ExceptionGroup of the failures. An
exception in the body itself (KeyboardInterrupt, asyncio cancellation included) cancels
the group's work too before it propagates.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any, ParamSpec, Protocol, TypeVar

from . import _stdlib
from ._future import Future
from ._observe.progress import Progress, count_future, make_progress

if TYPE_CHECKING:
    import asyncio

if sys.version_info < (3, 11):  # pragma: no cover - exercised on 3.10 only
    from exceptiongroup import BaseExceptionGroup

P = ParamSpec("P")
T = TypeVar("T")


class _Submitter(Protocol):
    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]: ...


class TaskGroup:
    """Runs tasks as a group on ``executor`` (or on ``executor.options(...)``).

    Example::

        with corral.TaskGroup(ex) as group:
            a = group.submit(fetch, url1)
            b = group.submit(fetch, url2)
        # here both are done, or the block raised ExceptionGroup

    ``progress=True`` draws a bar of the group's tasks (``corral.Progress`` chooses
    how), closed when the block ends.

    Leaving the block waits without a time limit; Ctrl+C while waiting cancels the
    group's work and raises KeyboardInterrupt. Groups nest: a failing inner group
    raises its ExceptionGroup into the outer block, which cancels the outer group.
    """

    def __init__(self, executor: _Submitter, *, progress: bool | Progress = False) -> None:
        if not callable(getattr(executor, "submit", None)):
            raise TypeError(f"TaskGroup needs an executor, got {type(executor).__name__}")
        self.progress = make_progress(progress, "TaskGroup")  # (checks it first)
        self._executor = executor
        self._lock = threading.Lock()
        self._futures: list[Future[Any]] = []
        self._failures: list[BaseException] = []
        self._closed = False

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        """Submits ``fn(*args, **kwargs)`` as a member of the group.

        Raises:
            RuntimeError: the group has already failed or its block has ended.
        """
        with self._lock:
            if self._closed:
                raise RuntimeError("this TaskGroup's block has ended; open a new group")
            if self._failures:
                raise RuntimeError(
                    "this TaskGroup is cancelling after a failure; no new tasks are accepted"
                )
        fut = self._executor.submit(fn, *args, **kwargs)
        with self._lock:
            self._futures.append(fut)
        if self.progress is not None:
            self.progress.add_total(1)
            count_future(self.progress, fut)
        fut.add_done_callback(self._on_done)
        return fut

    def _on_done(self, fut: Future[Any]) -> None:
        if fut.cancelled():
            return
        exc = fut.exception()
        if exc is None:
            return
        with self._lock:
            self._failures.append(exc)
        self._cancel_all()

    def _cancel_all(self) -> None:
        with self._lock:
            futures = list(self._futures)
        for fut in futures:
            fut.cancel()

    def _finish(self, exc: BaseException | None) -> None:
        with self._lock:
            self._closed = True
            failures = list(self._failures)
        if self.progress is not None:
            self.progress.close()
        if isinstance(exc, Exception):
            failures.insert(0, exc)
        elif exc is not None:
            return  # KeyboardInterrupt, SystemExit, CancelledError: propagate as they are
        if failures:
            raise BaseExceptionGroup("unhandled errors in a TaskGroup", failures)

    def __enter__(self) -> TaskGroup:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is not None:
            self._cancel_all()
        try:
            _stdlib.wait(list(self._futures))
        except BaseException:
            self._cancel_all()
            raise
        self._finish(exc)

    async def __aenter__(self) -> TaskGroup:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is not None:
            self._cancel_all()
        import asyncio  # here: only async code needs it

        loop = asyncio.get_running_loop()
        while True:
            with self._lock:
                futures = [f for f in self._futures if not f.done()]
            if not futures:
                break
            waiters = [asyncio.wrap_future(f, loop=loop) for f in futures]
            for waiter in waiters:
                waiter.add_done_callback(_consume)
            try:
                await asyncio.wait(waiters)
            except asyncio.CancelledError:
                self._cancel_all()
                raise
        self._finish(exc)


def _consume(waiter: asyncio.Future[Any]) -> None:
    """Marks an asyncio wrapper's outcome as seen (the group reports it instead)."""
    if not waiter.cancelled():
        waiter.exception()
