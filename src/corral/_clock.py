"""The one clock and the one timer thread of a process.

Every deadline in corral (task_timeout of thread tasks, retry backoff, idle reaping)
is a point on ``time.monotonic()`` read through :func:`now`. The timer thread sleeps
until the earliest deadline of a heap; it starts on demand and ends as soon as the heap
is empty, so an idle program has no timer thread (and tests see none left behind).
The process pool's manager thread keeps its own heap, on the same clock.

A pool's core reads time and sets timers through a ``Clock`` (``SYSTEM_CLOCK``: this
module's ``now`` and timer), so that tests can drive the core with a clock of their own.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections.abc import Callable

TYPE_CHECKING = False  # (typing is not imported at run time: docs/design.md §5.7)
if TYPE_CHECKING:
    from typing import Protocol
else:
    Protocol = object  # the protocols are for type checkers: nothing checks them at run time

now = time.monotonic


class Cancellable(Protocol):
    def cancel(self) -> None: ...


class Clock(Protocol):
    """Time as a pool's core sees it: a monotonic reading and one-shot timers."""

    def now(self) -> float: ...

    def call_later(self, delay: float, callback: Callable[[], object]) -> Cancellable: ...


class TimerHandle:
    """A scheduled call; ``cancel()`` stops it from running if it has not yet."""

    __slots__ = ("callback", "when")

    def __init__(self, when: float, callback: Callable[[], object]) -> None:
        self.when = when
        self.callback: Callable[[], object] | None = callback

    def cancel(self) -> None:
        if self.callback is not None:
            self.callback = None
            timer._forget()


class _Timer:
    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._heap: list[tuple[float, int, TimerHandle]] = []
        self._seq = itertools.count()
        self._thread: threading.Thread | None = None
        self._live = 0  # entries not cancelled; at 0 the thread may end at once

    def _forget(self) -> None:
        with self._cond:
            self._live -= 1
            if self._live <= 0:
                self._cond.notify()

    def call_at(self, when: float, callback: Callable[[], object]) -> TimerHandle:
        handle = TimerHandle(when, callback)
        with self._cond:
            heapq.heappush(self._heap, (when, next(self._seq), handle))
            self._live += 1
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="corral-timer", daemon=True)
                self._thread.start()
            elif self._heap[0][2] is handle:
                self._cond.notify()
        return handle

    def call_later(self, delay: float, callback: Callable[[], object]) -> TimerHandle:
        return self.call_at(now() + delay, callback)

    def _run(self) -> None:
        while True:
            with self._cond:
                while True:
                    while self._heap and self._heap[0][2].callback is None:
                        heapq.heappop(self._heap)
                    if not self._heap:
                        self._thread = None
                        return
                    delay = self._heap[0][0] - now()
                    if delay <= 0:
                        handle = heapq.heappop(self._heap)[2]
                        self._live -= 1
                        break
                    self._cond.wait(delay)
            callback, handle.callback = handle.callback, None
            if callback is not None:
                try:
                    callback()
                except BaseException:  # pragma: no cover - a bug in corral
                    import logging

                    logging.getLogger("corral").exception("timer callback failed")


timer = _Timer()


class _SystemClock:
    """``time.monotonic`` and the process's timer thread."""

    @staticmethod
    def now() -> float:
        return now()

    @staticmethod
    def call_later(delay: float, callback: Callable[[], object]) -> TimerHandle:
        return timer.call_later(delay, callback)


SYSTEM_CLOCK: Clock = _SystemClock()
