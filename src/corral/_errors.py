"""The exception tree of corral.

Every corral error subclasses the standard exception that code written for
``concurrent.futures`` already catches, so existing ``except`` clauses keep working::

    Exception
     └── CorralError
          ├── TaskTimeout        (also TimeoutError)   the task overran task_timeout and was stopped
          ├── WorkerCrashed                            the worker died while running this task
          ├── QueueFull                                submit_nowait() on a full queue
          ├── SerializationError (also pickle.PicklingError)
          │                      a call or its result could not cross to or from a worker
          ├── RemoteError                              a worker's exception that could not come back
          └── BrokenExecutor     (also concurrent.futures.BrokenExecutor)
               │                 the pool cannot go on
               ├── BrokenThreadPool   (also the stdlib's)   a thread initializer failed
               └── BrokenProcessPool  (also the stdlib's)   worker processes cannot start
    WorkerTraceback                     the __cause__ of a worker's exception: its traceback
    concurrent.futures.CancelledError   (corral.CancelledError is the same class)
    concurrent.futures.InvalidStateError  (corral.InvalidStateError is the same class)
    TimeoutError                        a wait that gave up (result, wait, as_completed, map);
                                        corral.TimeoutError is the stdlib's name for it
"""

from __future__ import annotations

import pickle
import signal as _signal
import sys

from . import _stdlib

TYPE_CHECKING = False  # (typing is not imported: worker processes load this module)
if TYPE_CHECKING:
    from typing import Any

CancelledError = _stdlib.CancelledError
InvalidStateError = _stdlib.InvalidStateError
#: ``concurrent.futures.TimeoutError``: the builtin TimeoutError on 3.11+.
StdTimeoutError = _stdlib.TimeoutError

if sys.version_info >= (3, 11):
    #: What a wait that gives up raises: the builtin TimeoutError, as the stdlib (3.11+).
    WaitTimeout = TimeoutError
else:  # pragma: no cover - Python 3.10

    class WaitTimeout(_stdlib.TimeoutError, TimeoutError):
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


class BrokenExecutor(CorralError, _stdlib.BrokenExecutor):
    """The executor cannot run work any more (for example its workers cannot start)."""


def _broken_thread_pool() -> type[BrokenExecutor]:
    class BrokenThreadPool(BrokenExecutor, _stdlib.BrokenThreadPool):
        """A thread initializer failed; the pool cannot run work (stdlib: BrokenThreadPool)."""

    BrokenThreadPool.__module__ = __name__
    BrokenThreadPool.__qualname__ = "BrokenThreadPool"
    return BrokenThreadPool


def _broken_process_pool() -> type[BrokenExecutor]:
    class BrokenProcessPool(BrokenExecutor, _stdlib.BrokenProcessPool):
        """Workers cannot start (stdlib: BrokenProcessPool); pending tasks fail with it."""

    BrokenProcessPool.__module__ = __name__
    BrokenProcessPool.__qualname__ = "BrokenProcessPool"
    return BrokenProcessPool


# Made on first use (they subclass the stdlib's, whose modules a worker never needs).
if TYPE_CHECKING:

    class BrokenThreadPool(BrokenExecutor, _stdlib.BrokenThreadPool):
        """A thread initializer failed; the pool cannot run work (stdlib: BrokenThreadPool)."""

    class BrokenProcessPool(BrokenExecutor, _stdlib.BrokenProcessPool):
        """Workers cannot start (stdlib: BrokenProcessPool); pending tasks fail with it."""

else:
    _MAKERS = {"BrokenThreadPool": _broken_thread_pool, "BrokenProcessPool": _broken_process_pool}

    import threading

    _making = threading.Lock()  # one class per name, whichever thread asks first

    def __getattr__(name: str) -> object:
        if name not in _MAKERS:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        with _making:
            made = globals().get(name)
            if made is None:
                made = globals()[name] = _MAKERS[name]()
        return made


class RemoteError(CorralError):
    """Stand-in for an exception raised in a worker that could not be sent back.

    Attributes:
        type_name: the qualified name of the original exception's class.
        remote_traceback: the worker's traceback, as text.
    """

    def __init__(self, message: str, type_name: str = "", remote_traceback: str = "") -> None:
        super().__init__(message)
        self.type_name = type_name
        self.remote_traceback = remote_traceback

    def __reduce__(self) -> Any:
        return (type(self), (str(self), self.type_name, self.remote_traceback))


class SerializationError(CorralError, pickle.PicklingError):
    """A call's function, arguments or result could not cross to or from the worker."""


class WorkerTraceback(Exception):
    """The ``__cause__`` of an exception from a worker: the worker's own traceback."""

    def __str__(self) -> str:
        return f'\n"""\n{self.args[0]}"""' if self.args else ""

    @property
    def tb(self) -> str:
        """The traceback text (the stdlib's ``_RemoteTraceback.tb``)."""
        return str(self.args[0]) if self.args else ""


def signal_name(signum: int) -> str:
    """Returns ``"SIGSEGV"`` for 11, or ``"signal 99"`` for a number with no name."""
    try:
        return _signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"
