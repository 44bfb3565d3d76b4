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

from concurrent.futures import ALL_COMPLETED, FIRST_COMPLETED, FIRST_EXCEPTION

from ._context import cancelled, check_cancelled
from ._dask import DaskExecutor
from ._errors import (
    BrokenExecutor,
    CancelledError,
    CorralError,
    QueueFull,
    TaskTimeout,
    WorkerCrashed,
)
from ._executor import BaseExecutor as Executor
from ._future import Future
from ._observe import Hooks, TaskEvent, WorkerEvent
from ._options import TaskOptions
from ._process import ProcessPoolExecutor
from ._progress import Progress
from ._stats import Statistics
from ._taskgroup import TaskGroup
from ._thread import BrokenThreadPool, ThreadPoolExecutor
from ._timeline import Timeline
from ._waiting import as_completed, wait

__version__ = "0.1.0"

__all__ = [
    "ALL_COMPLETED",
    "FIRST_COMPLETED",
    "FIRST_EXCEPTION",
    "BrokenExecutor",
    "BrokenThreadPool",
    "CancelledError",
    "CorralError",
    "DaskExecutor",
    "Executor",
    "Future",
    "Hooks",
    "ProcessPoolExecutor",
    "Progress",
    "QueueFull",
    "Statistics",
    "TaskEvent",
    "TaskGroup",
    "TaskOptions",
    "TaskTimeout",
    "ThreadPoolExecutor",
    "Timeline",
    "WorkerCrashed",
    "WorkerEvent",
    "as_completed",
    "cancelled",
    "check_cancelled",
    "wait",
]
