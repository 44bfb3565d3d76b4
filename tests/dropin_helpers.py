"""Functions the drop-in tests send to worker processes (importable by every start method)."""

from __future__ import annotations

import contextvars
import os
from typing import Any

SHARED: dict[str, Any] = {}
REQUEST: contextvars.ContextVar[str] = contextvars.ContextVar("REQUEST", default="unset")


def keep(*objects: Any) -> None:
    """An initializer: keeps what it was given for the tasks of this worker."""
    SHARED["objects"] = objects


def use_mp_objects(x: int) -> int:
    """Uses the lock, queue, value, array, event and semaphore the initializer kept."""
    lock, rlock, queue, value, array, event, semaphore = SHARED["objects"]
    with lock, rlock, semaphore:
        queue.put(x)
        with value.get_lock():
            value.value += 1
        array[x] = x * 10
    event.set()
    return os.getpid()


def request_id(_: object = None) -> str:
    return REQUEST.get()


class Made:
    """An object a task returns (tests check that nothing keeps it once yielded)."""


def make_object(_: int) -> Made:
    return Made()


def kept_count(_: object = None) -> int:
    """How many objects the initializer ``keep`` was given in this worker."""
    return len(SHARED["objects"])
