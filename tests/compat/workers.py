"""Worker functions for the compat corpus, importable by spawn and forkserver workers."""

from __future__ import annotations

import contextvars
import logging
import logging.handlers
import os
from typing import Any

REQUEST_ID: contextvars.ContextVar[str] = contextvars.ContextVar("REQUEST_ID", default="unset")


def square(x: int) -> int:
    return x * x


def add(x: int, y: int) -> int:
    return x + y


def pid_and_square(x: int) -> tuple[int, int]:
    return os.getpid(), x * x


def read_request_id(x: int) -> tuple[int, str]:
    """The caller's context variable, as the task sees it (dask's ContextAware pattern)."""
    return x, REQUEST_ID.get()


def install_queue_handler(queue: Any) -> None:
    """The logging cookbook's worker_configurer: the worker's root logger -> the queue."""
    root = logging.getLogger()
    root.addHandler(logging.handlers.QueueHandler(queue))
    root.setLevel(logging.DEBUG)


def log_task(n: int) -> int:
    """A task that logs one record, as the cookbook's worker_process does."""
    logging.getLogger("compat.task").info("task %d done in %d", n, os.getpid())
    return n
