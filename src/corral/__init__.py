"""corral: concurrent.futures without the walls.

The same model and names as ``concurrent.futures`` (executors, futures, ``submit``,
``map``, ``wait``, ``as_completed``), so code moves over by changing one import, plus
what the stdlib cannot do: cancel running work, timeouts that stop the task, crash
isolation, bounded queues, elastic workers and awaitable futures.

Errors (each subclasses the stdlib type existing code already catches)::

    CorralError(Exception)
      TaskTimeout(CorralError, TimeoutError)      the task overran task_timeout and was stopped
      WorkerCrashed(CorralError)                  .exitcode .signal .pid
      QueueFull(CorralError)                      submit_nowait() on a full queue
      BrokenExecutor(CorralError, concurrent.futures.BrokenExecutor)
    CancelledError is concurrent.futures.CancelledError
"""

from __future__ import annotations

from ._context import cancelled, check_cancelled
from ._dask import DaskExecutor
from ._errors import (
    BrokenExecutor,
    BrokenProcessPool,
    BrokenThreadPool,
    CancelledError,
    CorralError,
    InvalidStateError,
    QueueFull,
    RemoteError,
    SerializationError,
    TaskTimeout,
    WorkerCrashed,
    WorkerTraceback,
)
from ._errors import StdTimeoutError as TimeoutError
from ._executor import BaseExecutor as Executor
from ._future import Future
from ._install import Installed, install
from ._observe import Hooks, TaskEvent, WorkerEvent
from ._options import TaskOptions
from ._process import ProcessPoolExecutor
from ._progress import Progress
from ._stats import Statistics
from ._stdlib import ALL_COMPLETED, FIRST_COMPLETED, FIRST_EXCEPTION
from ._taskgroup import TaskGroup
from ._thread import ThreadPoolExecutor
from ._timeline import Timeline
from ._waiting import as_completed, wait

__version__ = "0.1.0"

__all__ = [  # InterpreterPoolExecutor, BrokenInterpreterPool: added below where present
    "ALL_COMPLETED",
    "FIRST_COMPLETED",
    "FIRST_EXCEPTION",
    "BrokenExecutor",
    "BrokenProcessPool",
    "BrokenThreadPool",
    "CancelledError",
    "CorralError",
    "DaskExecutor",
    "Executor",
    "Future",
    "Hooks",
    "Installed",
    "InvalidStateError",
    "ProcessPoolExecutor",
    "Progress",
    "QueueFull",
    "RemoteError",
    "SerializationError",
    "Statistics",
    "TaskEvent",
    "TaskGroup",
    "TaskOptions",
    "TaskTimeout",
    "ThreadPoolExecutor",
    "TimeoutError",
    "Timeline",
    "WorkerCrashed",
    "WorkerEvent",
    "WorkerTraceback",
    "as_completed",
    "cancelled",
    "check_cancelled",
    "install",
    "wait",
]
try:  # Python 3.14+, built with subinterpreters: the stdlib's own, re-exported
    from concurrent.futures import InterpreterPoolExecutor  # type: ignore[attr-defined]
    from concurrent.futures.interpreter import (  # type: ignore[import-not-found]
        BrokenInterpreterPool,
    )
except ImportError:
    pass
else:
    __all__ += ["BrokenInterpreterPool", "InterpreterPoolExecutor"]
