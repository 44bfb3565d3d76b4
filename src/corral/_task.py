"""A task: one submitted call, its settings, and where it stands.

A task's life (``Task.state``)::

    QUEUED --pop--> RUNNING --ok/error--> ENDED
      |               |  \\--retryable error--> BACKOFF --timer--> QUEUED
      +--cancel-------+--cancel/timeout--> ENDED (the backend stops the work)

Every change of state happens under the pool's lock (``Core.lock``).
"""

from __future__ import annotations

import enum
from collections.abc import Callable

from ._checks import callable_name
from ._context import CancelToken

TYPE_CHECKING = False  # (typing is not imported at run time: docs/design.md §5.7)
if TYPE_CHECKING:
    from typing import Any

    from ._clock import Cancellable
    from ._future import Future
    from ._options import TaskOptions


class TaskState(enum.Enum):
    """Where a task stands (see the module docstring)."""

    QUEUED = "queued"  # waiting for a worker (or a tombstone, once cancelled)
    RUNNING = "running"  # a worker has it (prefetched or started)
    BACKOFF = "backoff"  # failed, waiting out its retry delay
    ENDED = "ended"  # its future has (or is about to have) its outcome


QUEUED, RUNNING, BACKOFF, ENDED = TaskState


class Run(CancelToken):
    """One attempt at running a task, from the moment a backend takes it until it ends.

    The core makes one each time a task starts (``Core.start_locked``) and lets go of it
    when the run ends, for any reason; a backend keeps the object it was given and
    checks ``task.is_current(run)`` before it books an outcome. Its fields are the
    backend's: what it needs to reach and stop that run.

    A run is also its own ``CancelToken``: a thread task's ``corral.cancelled()`` reads
    the run it belongs to, so a thread pool makes one object per run, not two.
    """

    __slots__ = ("id", "task", "token", "waiting", "worker")

    def __init__(self, task: Task) -> None:
        self.task = task
        self.id = 0  # the backend's id of the run (process: per pool; Dask: per task)
        self.token: Any = None  # Dask: the Dask key
        self.worker: Any = None  # thread: _Worker; process: Proc; Dask: the Dask future
        self.waiting = False  # handed to a busy worker, not started (Core.hand_ahead_locked)
        # CancelToken's fields, set here rather than through its __init__ (one call
        # fewer per task on a thread pool's hot path)
        self.cancelled = False
        self.reason = None
        self.timeout = None


class Task:
    """One submitted call and where it stands; owned by its pool's lock."""

    __slots__ = (
        "args",
        "fn",
        "fut",
        "ident",
        "kwargs",
        "label",
        "opts",
        "payload",
        "run",
        "seq",
        "started",
        "state",
        "submitted",
        "timer",
        "where",
    )

    def __init__(
        self,
        fut: Future[Any],
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        opts: TaskOptions,
    ) -> None:
        self.fut = fut
        self.fn = fn
        self.args = args
        self.kwargs = kwargs
        self.opts = opts
        self.seq = 0
        self.state = QUEUED
        self.timer: Cancellable | None = None
        self.run: Run | None = None  # the current run, while RUNNING
        self.payload: Any = None  # what a backend prepared to send (process: pickled call)
        # for hooks only (set when the pool has some)
        self.ident = 0
        self.label = ""  # task_name(), taken once at submit
        self.submitted = self.started = 0.0
        self.where = ""  # the worker of the current run, once its start was announced

    def is_current(self, run: Run | None) -> bool:
        """True while ``run`` is this task's run in progress: its outcome counts. A
        cancel, a timeout, a crash report or a retry since it began make it stale."""
        return self.run is run and run is not None and self.state is RUNNING


def task_name(task: Task) -> str:
    """The name events and logs give a task: ``options(name=)``, else its function's."""
    return task.opts.name or callable_name(task.fn)
