"""corral.Future: a concurrent.futures.Future whose cancel() reaches running work.

A corral future is a real ``concurrent.futures.Future`` (the stdlib's ``wait``,
``as_completed`` and ``asyncio.wrap_future`` accept it) with three changes:

* ``cancel()`` also works on a *running* future when an executor made it: the future
  resolves as cancelled at once and the executor is told to stop the work (a process
  worker is killed; a thread task sees ``corral.cancelled()``).
* A cancelled future is at once seen as done by ``wait`` and ``as_completed`` (the
  stdlib only tells them when a worker later picks the item up).
* It is awaitable: ``await fut`` from any running asyncio loop; cancelling the awaiting
  asyncio task cancels the future, and so the work.

A future makes its ``threading.Condition`` only when something needs one: a thread
that waits for it unfinished, ``wait``/``as_completed``, any stdlib code that reads
``_condition``. Most futures of a busy pool are finished before anyone looks, and
their states change under one process-wide lock instead (creating a Condition costs
more than the rest of a thread pool's submit). The rule that keeps it right: a
Condition is created, and a state changes without one, only under that lock, so a
state change either sees the Condition (and notifies its waiters) or happens before it
exists (and its creator sees the new state). A done callback needs no Condition: it is
added under the same lock as the state changes (the Condition, or that global lock),
so it is either added before the future ends, and called then, or sees it ended and
is called at once.

Awaiting (``__await__``) returns at once from a future already done, as an asyncio
future does; otherwise the awaiting task waits on a plain future of its loop, woken by
a done callback through ``call_soon_threadsafe``. A corral future is deliberately not
an asyncio future (no ``_asyncio_future_blocking``, no ``get_loop``): asyncio would then
take it as one, ``asyncio.wrap_future`` and ``run_in_executor`` would hand it out
unwrapped, and asyncio code would expect its done callbacks to run in the loop,
which the stdlib's callers do not.

State machine (the stdlib's states; corral adds the RUNNING -> CANCELLED edge)::

    PENDING --start--> RUNNING --result/exception--> FINISHED
       |                  |
       +---cancel()-------+---cancel()---> CANCELLED_AND_NOTIFIED
"""

from __future__ import annotations

import functools
import sys
import threading
from collections.abc import Callable, Generator
from concurrent.futures._base import (  # the states: constants, safe to bind
    CANCELLED,
    CANCELLED_AND_NOTIFIED,
    FINISHED,
    PENDING,
    RUNNING,
)

from . import _stdlib
from ._checks import check_wait_timeout
from ._errors import WaitTimeout

TYPE_CHECKING = False  # (typing is not imported at run time: docs/design.md §5.7)
if TYPE_CHECKING:
    from typing import Any, TypeVar

    T = TypeVar("T")
else:
    T = "T"  # the stdlib's Future[...] takes any parameter at run time

_ENDED = (CANCELLED, CANCELLED_AND_NOTIFIED, FINISHED)

#: Guards the creation of a future's Condition and the state changes of futures that
#: have none (see the module docstring).
_NO_CONDITION = threading.Lock()

#: The waiters and done callbacks of a future that has none yet (an empty list that
#: nothing may add to: a future makes its own list before it adds one).
_NONE_YET: list[Any] = ()  # type: ignore[assignment]

#: Called (outside the future's lock) when cancel() succeeds on a future that an
#: executor owns; the bool says whether the future was running.
StopHook = Callable[["Future[Any]", bool], None]


class Future(_stdlib.Future[T]):
    """The result of work submitted to a corral executor.

    Attributes:
        attempts: how many times the work was started (more than 1 after retries).
    """

    # The stdlib's fields and ours start as these class attributes: a new future sets
    # none of them (a thread pool's submit makes one per task). The two lists stay
    # _NONE_YET until something is added: wait's waiters, made with the Condition
    # (the stdlib adds them only under ``_condition``), and done callbacks, made by
    # ``_on_done`` (add_done_callback, an awaiting asyncio task: no Condition needed).
    _state = PENDING
    _result = None
    _exception: BaseException | None = None
    _waiters: list[Any] = _NONE_YET
    _done_callbacks: list[Callable[[Any], object]] = _NONE_YET
    attempts = 0
    _stop_hook: StopHook | None = None
    _task: Any = None
    _helper: Callable[[Future[Any]], None] | None = None
    _cond: threading.Condition | None = None  # ``_condition`` once made (read without it)

    def __init__(self) -> None:
        """A pending future (no Condition yet: see the module docstring)."""

    if not TYPE_CHECKING:  # (for type checkers, the stdlib's attribute is there)

        def __getattr__(self, name: str) -> Any:
            """Makes the Condition the first time anything asks for ``_condition``."""
            if name != "_condition":
                raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
            with _NO_CONDITION:
                cond = self._cond
                if cond is None:
                    self._waiters = []
                    if self._done_callbacks is _NONE_YET:  # (_on_done may have made it)
                        self._done_callbacks = []
                    cond = self._cond = self._condition = threading.Condition()
            return cond

    def _lock_or_none(self) -> threading.Condition | None:
        """The Condition if there is one, acquired; else None with ``_NO_CONDITION``
        held, and no Condition can appear until it is released."""
        cond = self._cond
        if cond is None:
            _NO_CONDITION.acquire()
            cond = self._cond
            if cond is None:
                return None
            _NO_CONDITION.release()
        cond.acquire()
        return cond

    def done(self) -> bool:
        return self._state in _ENDED

    def running(self) -> bool:
        return self._state == RUNNING

    def cancelled(self) -> bool:
        return self._state in (CANCELLED, CANCELLED_AND_NOTIFIED)

    def result(self, timeout: float | None = None) -> T:
        """Waits for the work and returns its value, as the stdlib's ``result()``.

        If the work has not started yet and the caller waits without a timeout, a
        thread pool may run it in the calling thread instead of leaving the caller
        idle (see docs/design.md, "Caller runs"). A timeout of 1e7 s or more (math.inf)
        waits without a limit, as None does. On timeout raises TimeoutError
        (the work goes on); a cancelled future raises CancelledError; Ctrl+C while
        waiting raises KeyboardInterrupt in the caller. A negative timeout does not
        wait (TimeoutError at once, as the stdlib).

        Raises:
            TypeError: ``timeout`` is not a number (checked before anything else).
            ValueError: ``timeout`` is NaN.
        """
        if timeout is not None:
            timeout = check_wait_timeout(timeout)  # (threading refuses the huge ones)
        helper = self._helper  # (once: the future may end, and drop it, meanwhile)
        if timeout is None and helper is not None and self._state == PENDING:
            helper(self)
        if self._state == FINISHED and self._exception is None:
            # ended: nothing to wait for (finished without an exception: _result is a T)
            return self._result  # type: ignore[return-value]
        if sys.version_info >= (3, 11):
            return super().result(timeout)
        try:  # pragma: no cover - Python 3.10: its TimeoutError is not the builtin one
            return super().result(timeout)
        except _stdlib.TimeoutError as exc:
            raise WaitTimeout(*exc.args) from None

    def exception(self, timeout: float | None = None) -> BaseException | None:
        """As ``result()``, but returns the work's exception (None if it succeeded)."""
        if timeout is not None:
            timeout = check_wait_timeout(timeout)
        helper = self._helper
        if timeout is None and helper is not None and self._state == PENDING:
            helper(self)
        if sys.version_info >= (3, 11):
            return super().exception(timeout)
        try:  # pragma: no cover - Python 3.10
            return super().exception(timeout)
        except _stdlib.TimeoutError as exc:
            raise WaitTimeout(*exc.args) from None

    def cancel(self) -> bool:
        """Cancels the work, even if it is already running.

        A pending future is cancelled as in the stdlib. A running future made by a
        corral executor is resolved as cancelled at once and its executor stops the
        work: a process task's worker is killed (with its process group) and
        replaced; a thread task sees ``corral.cancelled()`` become true (threads cannot
        be killed: see docs/design.md, "Cancelling a running thread task").

        Returns:
            False if the future had already finished (or is running and no corral
            executor owns it); True if it is now cancelled.
        """
        cond = self._lock_or_none()
        try:
            state = self._state
            if state == FINISHED:
                return False
            if state in (CANCELLED, CANCELLED_AND_NOTIFIED):
                return True
            hook = self._stop_hook
            was_running = state == RUNNING
            if was_running and hook is None:
                return False
            self._state = CANCELLED_AND_NOTIFIED
            if cond is not None:
                for waiter in self._waiters:
                    waiter.add_cancelled(self)
                cond.notify_all()
        finally:
            (_NO_CONDITION if cond is None else cond).release()
        if hook is not None:
            hook(self, was_running)
        self._release()
        if self._done_callbacks:  # (final: none is added once the future is done)
            self._invoke_callbacks()  # type: ignore[attr-defined]
        return True

    def _release(self) -> None:
        """Drops what an ended future no longer needs: its task (the call's function and
        arguments) and its executor's hooks. Nothing then keeps them alive through a
        finished future (CPython's test_no_stale_references), and a future kept by the
        user does not keep its executor from being collected."""
        self._task = self._stop_hook = self._helper = None

    def set_running_or_notify_cancel(self) -> bool:
        """Marks the future running; returns False if it was cancelled first."""
        cond = self._lock_or_none()
        try:
            state = self._state
            if state == PENDING:
                self._state = RUNNING
                return True
            if state in (CANCELLED, CANCELLED_AND_NOTIFIED):
                if state == CANCELLED:
                    self._state = CANCELLED_AND_NOTIFIED
                    for waiter in self._waiters:
                        waiter.add_cancelled(self)
                return False
        finally:
            (_NO_CONDITION if cond is None else cond).release()
        raise RuntimeError(f"Future {self!r} is already running or finished")

    def _resolve(self, result: Any = None, exception: BaseException | None = None) -> bool:
        """Sets the outcome unless the future already ended (cancelled, timed out).

        Executors call this instead of set_result/set_exception, which raise when a
        cancel raced the end of the work. Returns True if this call decided the outcome.
        """
        cond = self._lock_or_none()
        try:
            if self._state in _ENDED:
                return False
            if exception is None:
                self._result = result
                self._state = FINISHED
                if cond is not None:
                    for waiter in self._waiters:
                        waiter.add_result(self)
            else:
                self._exception = exception
                self._state = FINISHED
                if cond is not None:
                    for waiter in self._waiters:
                        waiter.add_exception(self)
            if cond is not None:
                cond.notify_all()
        finally:
            (_NO_CONDITION if cond is None else cond).release()
        self._release()
        if self._done_callbacks:  # (final: none is added once the future is done)
            self._invoke_callbacks()  # type: ignore[attr-defined]
        return True

    def _restart(self) -> bool:
        """Puts a running future back to PENDING for a retry; False if it ended."""
        cond = self._lock_or_none()
        try:
            if self._state != RUNNING:
                return False
            self._state = PENDING
            return True
        finally:
            (_NO_CONDITION if cond is None else cond).release()

    def _on_done(self, fn: Callable[[Future[Any]], object]) -> bool:
        """Adds a done callback, as ``add_done_callback`` does but without making a
        Condition; returns False, and calls nothing, if the future is already done."""
        cond = self._lock_or_none()
        try:
            if self._state in _ENDED:
                return False
            if self._done_callbacks is _NONE_YET:
                self._done_callbacks = []
            self._done_callbacks.append(fn)
            return True
        finally:
            (_NO_CONDITION if cond is None else cond).release()

    def add_done_callback(self, fn: Callable[[Future[T]], object]) -> None:
        """Calls ``fn(future)`` once the future is done, as the stdlib does: in the
        thread that ends it, or at once in this thread if it is done already (an
        exception ``fn`` raises is then logged on the "concurrent.futures" logger, as
        by the stdlib). Unlike the stdlib's, it makes no Condition."""
        if self._on_done(fn):
            return
        try:
            fn(self)
        except Exception:
            _stdlib.LOGGER.exception("exception calling callback for %r", self)

    def __await__(self) -> Generator[Any, None, T]:
        """Waits in the running asyncio loop; cancelling the awaiter cancels the work.

        A future already done returns (or raises) at once, without suspending, as an
        asyncio future does. Otherwise the awaiting task waits on a plain asyncio
        future of its loop, which the thread that ends this one wakes through
        ``call_soon_threadsafe``: no Condition, no chain of futures both ways (what
        ``asyncio.wrap_future`` sets up), and nothing copied (the outcome is read from
        this future once awake).
        """
        if self._state not in _ENDED:
            import asyncio  # here: a program that never awaits never imports it

            loop = asyncio.get_running_loop()
            waiter = loop.create_future()
            if self._on_done(functools.partial(_wake_soon, loop, waiter)):
                try:
                    yield from waiter
                except asyncio.CancelledError:
                    self.cancel()  # the awaiting task was cancelled: so is the work
                    raise
        if self._state != FINISHED:
            import asyncio

            raise asyncio.CancelledError
        return self.result()


def _wake_soon(loop: Any, waiter: Any, fut: Future[Any]) -> None:
    """Done callback of an awaited future (any thread): wakes its awaiter in its loop."""
    try:
        loop.call_soon_threadsafe(_wake, waiter)
    except RuntimeError:  # the loop is closed: no task is left to wake
        pass


def _wake(waiter: Any) -> None:
    if not waiter.done():  # (the awaiting task may have been cancelled meanwhile)
        waiter.set_result(None)
