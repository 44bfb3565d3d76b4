"""The exception tree of corral.

Every corral error subclasses the standard exception that code written for
``concurrent.futures`` already catches, so existing ``except`` clauses keep working::

    Exception
     └── CorralError
          ├── TaskTimeout        (also TimeoutError)   the task overran task_timeout and was stopped
          ├── WorkerCrashed                            the worker died while running this task
          ├── QueueFull                                submit_nowait() on a full queue
          └── BrokenExecutor     (also concurrent.futures.BrokenExecutor)
                                 the pool cannot go on
    concurrent.futures.CancelledError   (corral.CancelledError is the same class)
    TimeoutError                        a wait that gave up (result, wait, as_completed, map)
"""

from __future__ import annotations

import concurrent.futures
import signal as _signal
import sys

CancelledError = concurrent.futures.CancelledError

if sys.version_info >= (3, 11):
    #: What a wait that gives up raises: the builtin TimeoutError, as the stdlib (3.11+).
    WaitTimeout = TimeoutError
else:  # pragma: no cover - Python 3.10

    class WaitTimeout(concurrent.futures.TimeoutError, TimeoutError):
        """A wait gave up: both the builtin TimeoutError and the stdlib's (3.10)."""


class CorralError(Exception):
    """Base class of every error that corral raises itself."""


class TaskTimeout(CorralError, TimeoutError):
    """The task ran longer than its ``task_timeout`` and was stopped.

    Attributes:
        timeout: the limit, in seconds, that the task overran.
    """

    def __init__(self, message: str, timeout: float | None = None) -> None:
        super().__init__(message)
        self.timeout = timeout

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (str(self), self.timeout))


class WorkerCrashed(CorralError):
    """The worker process died while it was running this task.

    Only the task that the dead worker was running fails with this error; the pool
    replaces the worker and carries on.

    Attributes:
        exitcode: the worker's exit status (negative: killed by that signal), or None.
        signal: the name of the signal that killed it (``"SIGSEGV"``), or None.
        pid: the worker's process id.
    """

    def __init__(
        self,
        message: str,
        exitcode: int | None = None,
        signal: str | None = None,
        pid: int | None = None,
    ) -> None:
        super().__init__(message)
        self.exitcode = exitcode
        self.signal = signal
        self.pid = pid

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (str(self), self.exitcode, self.signal, self.pid))


class QueueFull(CorralError):
    """``submit_nowait()`` found ``max_pending`` tasks already waiting to start."""


class BrokenExecutor(CorralError, concurrent.futures.BrokenExecutor):
    """The executor cannot run work any more (for example its workers cannot start)."""


def signal_name(signum: int) -> str:
    """Returns ``"SIGSEGV"`` for 11, or ``"signal 99"`` for a number with no name."""
    try:
        return _signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"
