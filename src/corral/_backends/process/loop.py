"""The process manager thread's event loop: what wakes it and when.

One thread (the manager's) waits in ``select`` over:

* a wake pipe: other threads (submit, cancel, the timer, shutdown) write one byte to
  it; at most one byte is pending at a time (``wake_locked``), so a burst of submits
  costs one write;
* the pipe and the exit fd of each worker, registered with the callback that reads
  them;
* a heap of deadlines (kill escalation, a retired worker overdue): ``select`` returns
  at the first one.

Commands that only the manager thread may carry out (stop this run, shut down) are
queued here by other threads, then the loop is woken. Everything else about the pool
is the manager's (``manager.py``).
"""

from __future__ import annotations

import heapq
import itertools
import os
import selectors
import threading
from collections import deque
from collections.abc import Callable

from ..._clock import now

TYPE_CHECKING = False  # (typing is not imported at run time: docs/design.md §5.7)
if TYPE_CHECKING:
    from typing import Any

#: The longest single wait (epoll refuses waits of 25 days and more; waking early is
#: harmless).
MAX_WAIT = 86400.0


class Loop:
    """The selector, the wake pipe, the deadlines and the commands of one manager."""

    def __init__(self, lock: threading.Lock) -> None:
        #: The pool's lock (its core's), which ``wake_locked`` callers hold.
        self._lock = lock
        self._deadlines: list[tuple[float, int, Callable[[], None]]] = []
        self._deadline_seq = itertools.count()
        self.commands: deque[tuple[Any, ...]] = deque()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._wake_pending = False
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._wake_r, selectors.EVENT_READ, self._on_wake)

    # ------------------------------------------------------------------ other threads

    def wake_locked(self) -> Callable[[], None] | None:
        """With the pool's lock held: the call that wakes the loop, to make once the
        lock is released; None when a wake is already on its way."""
        if self._wake_pending:
            return None
        self._wake_pending = True
        return self._wake

    def _wake(self) -> None:
        with self._lock:
            if self._wake_w < 0:
                return  # the loop has been closed
            try:
                os.write(self._wake_w, b"\0")
            except BlockingIOError:
                pass  # already signalled

    def command(self, *command: Any) -> None:
        """Queues a command for the loop's thread and wakes it."""
        self.commands.append(command)
        with self._lock:
            wake = self.wake_locked()
        if wake is not None:
            wake()

    # ------------------------------------------------------------------ the loop's thread

    def register(self, fileobj: Any, callback: Callable[[Any], None]) -> None:
        """Calls ``callback(fileobj)`` whenever ``fileobj`` is readable."""
        self._selector.register(fileobj, selectors.EVENT_READ, callback)

    def unregister(self, fileobj: Any) -> None:
        self._selector.unregister(fileobj)

    def call_at(self, when: float, callback: Callable[[], None]) -> None:
        """Calls ``callback()`` once ``now()`` reaches ``when``."""
        heapq.heappush(self._deadlines, (when, next(self._deadline_seq), callback))

    def next_deadline(self) -> float | None:
        return self._deadlines[0][0] if self._deadlines else None

    def wait(self, until: float | None) -> None:
        """Waits until something is readable or ``until`` (None: no limit) comes, runs
        the callbacks of what is readable, then those of the deadlines that came."""
        timeout = None if until is None else min(max(0.0, until - now()), MAX_WAIT)
        for key, _ in self._selector.select(timeout):
            key.data(key.fileobj)
        current = now()
        while self._deadlines and self._deadlines[0][0] <= current:
            heapq.heappop(self._deadlines)[2]()

    def _on_wake(self, fd: Any) -> None:
        # one read drains it: a byte is written only when no wake was pending (a byte
        # left over would cost one spurious wake, nothing more). The flag is the pool
        # lock's (see wake_locked); clearing it after the read cannot lose a wake,
        # since the loop looks for work after this callback.
        try:
            os.read(self._wake_r, 4096)
        except BlockingIOError:
            pass
        self._wake_pending = False

    def close(self) -> None:
        """Closes the selector and the wake pipe; later wakes do nothing."""
        self._selector.close()
        with self._lock:
            os.close(self._wake_r)
            os.close(self._wake_w)
            self._wake_r = self._wake_w = -1
