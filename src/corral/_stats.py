"""``executor.statistics()``: one frozen snapshot of a pool."""

from __future__ import annotations

from ._record import Record


class Statistics(Record):
    """A snapshot of an executor, taken under its lock (all counts agree).

    Attributes:
        workers: live workers (threads or processes), idle ones included.
        idle: workers waiting for work.
        pending: tasks submitted and not yet started (what ``max_pending`` bounds).
        running: tasks running now.
        max_pending: the queue's capacity, or None when unbounded.
        completed: tasks that returned a value.
        failed: tasks that ended with an error (timeouts and crashes included).
        cancelled: futures cancelled (pending or running).
        timed_out: runs stopped by ``task_timeout``.
        crashed: runs whose worker died under them.
        retried: runs that failed and were scheduled again.
        retrying: tasks now waiting out a retry backoff.
    """

    workers: int
    idle: int
    pending: int
    running: int
    max_pending: int | None
    completed: int
    failed: int
    cancelled: int
    timed_out: int
    crashed: int
    retried: int
    retrying: int

    __slots__ = (
        "cancelled",
        "completed",
        "crashed",
        "failed",
        "idle",
        "max_pending",
        "pending",
        "retried",
        "retrying",
        "running",
        "timed_out",
        "workers",
    )
    _fields = (
        "workers",
        "idle",
        "pending",
        "running",
        "max_pending",
        "completed",
        "failed",
        "cancelled",
        "timed_out",
        "crashed",
        "retried",
        "retrying",
    )

    def __init__(
        self,
        workers: int,
        idle: int,
        pending: int,
        running: int,
        max_pending: int | None,
        completed: int,
        failed: int,
        cancelled: int,
        timed_out: int,
        crashed: int,
        retried: int,
        retrying: int,
    ) -> None:
        self._set(
            workers=workers,
            idle=idle,
            pending=pending,
            running=running,
            max_pending=max_pending,
            completed=completed,
            failed=failed,
            cancelled=cancelled,
            timed_out=timed_out,
            crashed=crashed,
            retried=retried,
            retrying=retrying,
        )

    @property
    def done(self) -> int:
        """Tasks that ended, whichever way."""
        return self.completed + self.failed + self.cancelled
