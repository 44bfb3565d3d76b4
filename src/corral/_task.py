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
from typing import TYPE_CHECKING, Any

from ._checks import callable_name

if TYPE_CHECKING:
    from ._clock import TimerHandle
    from ._future import Future
    from ._options import TaskOptions


class TaskState(enum.Enum):
    """Where a task stands (see the module docstring)."""

    QUEUED = "queued"  # waiting for a worker (or a tombstone, once cancelled)
    RUNNING = "running"  # a worker has it (prefetched or started)
    BACKOFF = "backoff"  # failed, waiting out its retry delay
    ENDED = "ended"  # its future has (or is about to have) its outcome


QUEUED, RUNNING, BACKOFF, ENDED = TaskState


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
        "seq",
        "started",
        "state",
        "submitted",
        "tid",
        "timer",
        "token",
        "where",
        "worker",
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
        self.timer: TimerHandle | None = None
        self.token: Any = None
        self.worker: Any = None
        self.payload: Any = None  # what a backend prepared to send (process: pickled call)
        self.tid = 0  # a backend's id for the current run
        # for hooks only (set when the pool has some)
        self.ident = 0
        self.label = ""  # task_name(), taken once at submit
        self.submitted = self.started = 0.0
        self.where = ""  # the worker of the current run, once its start was announced


def task_name(task: Task) -> str:
    """The name events and logs give a task: ``options(name=)``, else its function's."""
    return task.opts.name or callable_name(task.fn)
