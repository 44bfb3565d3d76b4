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

import sys

TYPE_CHECKING = False  # (typing is not imported: worker processes load this package)
if TYPE_CHECKING:
    from typing import Any

# Names are imported when first used (PEP 562), so ``import corral`` costs little and a
# worker process, which imports the package to reach its own module, loads only what
# it runs (not the Dask backend, asyncio, timelines or progress bars).
_LAZY: dict[str, tuple[str, str]] = {
    "cancelled": ("._context", "cancelled"),
    "check_cancelled": ("._context", "check_cancelled"),
    "DaskExecutor": ("._backends.dask.executor", "DaskExecutor"),
    "BrokenExecutor": ("._errors", "BrokenExecutor"),
    "BrokenProcessPool": ("._errors", "BrokenProcessPool"),
    "BrokenThreadPool": ("._errors", "BrokenThreadPool"),
    "CancelledError": ("._errors", "CancelledError"),
    "CorralError": ("._errors", "CorralError"),
    "InvalidStateError": ("._errors", "InvalidStateError"),
    "QueueFull": ("._errors", "QueueFull"),
    "RemoteError": ("._errors", "RemoteError"),
    "SerializationError": ("._errors", "SerializationError"),
    "TaskTimeout": ("._errors", "TaskTimeout"),
    "WorkerCrashed": ("._errors", "WorkerCrashed"),
    "WorkerTraceback": ("._errors", "WorkerTraceback"),
    "TimeoutError": ("._errors", "StdTimeoutError"),
    "Executor": ("._executor", "BaseExecutor"),
    "Future": ("._future", "Future"),
    "Installed": ("._install", "Installed"),
    "install": ("._install", "install"),
    "Hooks": ("._observe.hooks", "Hooks"),
    "TaskEvent": ("._observe.hooks", "TaskEvent"),
    "WorkerEvent": ("._observe.hooks", "WorkerEvent"),
    "TaskOptions": ("._options", "TaskOptions"),
    "ProcessPoolExecutor": ("._backends.process.executor", "ProcessPoolExecutor"),
    "Progress": ("._observe.progress", "Progress"),
    "Statistics": ("._stats", "Statistics"),
    "ALL_COMPLETED": ("._stdlib", "ALL_COMPLETED"),
    "FIRST_COMPLETED": ("._stdlib", "FIRST_COMPLETED"),
    "FIRST_EXCEPTION": ("._stdlib", "FIRST_EXCEPTION"),
    "TaskGroup": ("._taskgroup", "TaskGroup"),
    "ThreadPoolExecutor": ("._backends.thread", "ThreadPoolExecutor"),
    "Timeline": ("._observe.timeline", "Timeline"),
    "as_completed": ("._waiting", "as_completed"),
    "wait": ("._waiting", "wait"),
}

if TYPE_CHECKING:  # what type checkers and IDEs see: the same names, eagerly
    from ._backends.dask.executor import DaskExecutor
    from ._backends.process.executor import ProcessPoolExecutor
    from ._backends.thread import ThreadPoolExecutor
    from ._context import cancelled, check_cancelled
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
    from ._observe.hooks import Hooks, TaskEvent, WorkerEvent
    from ._observe.progress import Progress
    from ._observe.timeline import Timeline
    from ._options import TaskOptions
    from ._stats import Statistics
    from ._stdlib import ALL_COMPLETED, FIRST_COMPLETED, FIRST_EXCEPTION
    from ._taskgroup import TaskGroup
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


def __getattr__(name: str) -> Any:
    """Imports a public name on first use and keeps it here."""
    if name in ("InterpreterPoolExecutor", "BrokenInterpreterPool"):
        # Python 3.14+, built with subinterpreters: the stdlib's own, re-exported
        try:
            from concurrent.futures import (  # type: ignore[attr-defined]
                InterpreterPoolExecutor,
            )
            from concurrent.futures.interpreter import (  # type: ignore[import-not-found]
                BrokenInterpreterPool,
            )
        except ImportError:
            raise AttributeError(f"module 'corral' has no attribute {name!r}") from None
        globals().update(
            InterpreterPoolExecutor=InterpreterPoolExecutor,
            BrokenInterpreterPool=BrokenInterpreterPool,
        )
        return globals()[name]
    try:
        module, attr = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'corral' has no attribute {name!r}") from None
    # (__import__, not importlib.import_module: importlib is not imported otherwise)
    value = getattr(__import__(module[1:], globals(), None, [attr], 1), attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if sys.version_info >= (3, 14):  # pragma: no cover - where the stdlib has them
    try:
        import concurrent.futures.interpreter  # noqa: F401
    except ImportError:
        pass
    else:
        __all__ += ["BrokenInterpreterPool", "InterpreterPoolExecutor"]
