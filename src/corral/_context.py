"""What a running task can ask about itself: ``corral.cancelled()`` and ``check_cancelled()``.

Each worker (a thread of a thread pool, or a worker process) records the task it is
running in a thread-local slot. The slot holds a ``CancelToken`` that the executor
flips when the task's future is cancelled or times out. Reading it is one attribute
load, so a task may poll it in a tight loop.
"""

from __future__ import annotations

import threading

from ._errors import CancelledError, TaskTimeout


class CancelToken:
    """A flag the executor raises to ask a running task to stop.

    Attributes:
        cancelled: True once the task should stop.
        reason: ``"cancelled"`` or ``"timeout"``, or None while not cancelled.
        timeout: the task_timeout that expired, when the reason is ``"timeout"``.
    """

    __slots__ = ("cancelled", "reason", "timeout")

    def __init__(self) -> None:
        self.cancelled = False
        self.reason: str | None = None
        self.timeout: float | None = None

    def cancel(self, reason: str = "cancelled", timeout: float | None = None) -> None:
        if not self.cancelled:
            self.reason = reason
            self.timeout = timeout
            self.cancelled = True


class _Current(threading.local):
    token: CancelToken | None = None


#: This thread's slot (the worker loops set ``current.token`` themselves: no call per task).
current = _current = _Current()


def current_token() -> CancelToken | None:
    """The token of the task running in this thread, or None outside a task."""
    return _current.token


def set_current_token(token: CancelToken | None) -> None:
    _current.token = token


def cancelled() -> bool:
    """Tells a running task whether it has been asked to stop.

    True once the task's future was cancelled or the task overran its
    ``task_timeout`` (``shutdown(kill=True)`` and a with-block left by an exception
    cancel running tasks too). The future has
    already been resolved by then: whatever the task returns afterwards is dropped,
    so it should return promptly. Outside a corral task this returns False.

    Returns:
        Whether the task running in the calling thread should stop.
    """
    token = _current.token
    return token is not None and token.cancelled


def check_cancelled() -> None:
    """Raises if the running task has been asked to stop; does nothing otherwise.

    Raises:
        TaskTimeout: the task overran its ``task_timeout``.
        CancelledError: the task's future was cancelled (or the pool is stopping).
    """
    token = _current.token
    if token is not None and token.cancelled:
        if token.reason == "timeout":
            raise TaskTimeout(
                f"task overran its task_timeout of {token.timeout}s and was asked to stop",
                token.timeout,
            )
        raise CancelledError("the task's future was cancelled")
