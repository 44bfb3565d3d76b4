"""Per-task settings (``task_timeout``, ``retries``, ``priority``, ...) and their checks.

Every public entry point checks its arguments here, at the call site, so that bad input
fails before any work is queued and the message says what to pass instead.
"""

from __future__ import annotations

import math
import os
import random
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from ._errors import TaskTimeout, WorkerCrashed

#: Exceptions a task is retried on when ``retries`` > 0 and ``retry_on`` is not given.
DEFAULT_RETRY_ON: tuple[type[BaseException], ...] = (WorkerCrashed,)

#: First backoff before a retry, and the cap; each retry doubles it, with jitter.
RETRY_BACKOFF = 0.05
RETRY_BACKOFF_MAX = 5.0


def callable_name(fn: object) -> str:
    """A readable name for a callable, without calling its ``__repr__`` (which may be
    slow, or raise): ``qualname``, through ``functools.partial``, else its type's."""
    for _ in range(8):
        inner = getattr(fn, "func", None)  # functools.partial and the like
        if inner is None or inner is fn:
            break
        fn = inner
    name = getattr(fn, "__qualname__", None)
    if isinstance(name, str):
        return name
    return f"{type(fn).__qualname__} instance"


#: Seconds from which a time limit means "forever" (about 115 days): larger values,
#: ``math.inf`` included, are taken as no limit (or, where None is not allowed, as this),
#: since the waits that would carry them (locks, epoll) refuse them.
FOREVER = 1e7


def check_timeout(name: str, value: object, *, allow_none: bool = True) -> float | None:
    """Returns ``value`` as a float after checking that it is a valid number of seconds.

    ``FOREVER`` seconds or more (``math.inf`` too) mean no limit: None where None is
    allowed, else ``FOREVER``.

    Raises:
        TypeError: not a number (or None where None is not allowed).
        ValueError: negative or NaN.
    """
    if value is None:
        if allow_none:
            return None
        raise TypeError(f"{name} must be a number of seconds, not None")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number of seconds or None, not {type(value).__name__}")
    if math.isnan(value) or value < 0:
        raise ValueError(
            f"{name} must be >= 0 seconds, got {value!r}; pass None to wait without a limit"
        )
    if value >= FOREVER:
        return None if allow_none else FOREVER
    return float(value)


def _check_task_timeout(value: object) -> float | None:
    seconds = check_timeout("task_timeout", value)
    if seconds == 0:
        raise ValueError(
            "task_timeout must be > 0 seconds (0 would stop every task as it starts); "
            "pass None for no limit"
        )
    return seconds


def check_count(name: str, value: object, *, minimum: int, allow_none: bool = False) -> int | None:
    """Checks that ``value`` is an int >= ``minimum`` (or None where allowed)."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def cpu_count() -> int:
    """CPUs this process may use (``os.process_cpu_count`` where Python has it)."""
    return getattr(os, "process_cpu_count", os.cpu_count)() or 1


def check_initializer(initializer: object) -> None:
    if initializer is not None and not callable(initializer):
        raise TypeError(f"initializer must be a callable, got {type(initializer).__name__}")


def check_callable(fn: object, what: str = "fn") -> None:
    if not callable(fn):
        raise TypeError(
            f"{what} must be callable, got {type(fn).__name__} {fn!r:.80}; "
            "pass the function itself, e.g. submit(work, x), not submit(work(x))"
        )
    check_not_coroutine_function(fn, what)


_CO_COROUTINE = 0x80 | 0x100  # inspect.CO_COROUTINE | CO_ITERABLE_COROUTINE (no import)
_CO_ASYNC_GENERATOR = 0x200


def check_not_coroutine_function(fn: object, what: str = "fn") -> None:
    """Refuses an ``async def`` function: calling it only makes a coroutine, which a
    worker would return un-run (and which does not pickle)."""
    for _ in range(8):  # through functools.partial and the like
        inner = getattr(fn, "func", None)
        if inner is None or inner is fn:
            break
        fn = inner
    code = getattr(fn, "__code__", None)
    flags = getattr(code, "co_flags", 0)
    if isinstance(flags, int) and flags & (_CO_COROUTINE | _CO_ASYNC_GENERATOR):
        raise TypeError(
            f"{what} {callable_name(fn)} is an async function: calling it only creates a "
            "coroutine, which nothing here would run. Await it in your event loop, or "
            "submit a plain function that runs it (asyncio.run(...))"
        )


@dataclass(frozen=True)
class TaskOptions:
    """Settings for one task; executors hold defaults and ``options()`` overrides them.

    Attributes:
        task_timeout: seconds a task may run before it is stopped and fails with
            TaskTimeout; None for no limit.
        retries: how many times a failed task is run again on a retryable error.
        retry_on: exception types that are retried (WorkerCrashed by default; add
            TaskTimeout or your own).
        priority: pending tasks with a higher priority start first (FIFO among equals).
        name: a label for statistics, logs and errors.
    """

    task_timeout: float | None = None
    retries: int = 0
    retry_on: tuple[type[BaseException], ...] = DEFAULT_RETRY_ON
    priority: int = 0
    name: str | None = None

    def merged(self, **overrides: Any) -> TaskOptions:
        """Returns a copy with ``overrides`` checked and applied."""
        unknown = set(overrides) - set(OPTION_NAMES)
        if unknown:
            raise TypeError(
                f"unknown option(s) {', '.join(sorted(unknown))}; "
                f"valid options are {', '.join(OPTION_NAMES)}"
            )
        checked: dict[str, Any] = {}
        for key, value in overrides.items():
            checked[key] = _CHECKS[key](value)
        return replace(self, **checked)

    def is_retryable(self, exc: BaseException, attempts: int) -> bool:
        return attempts <= self.retries and isinstance(exc, self.retry_on)

    def timeout_error(self) -> TaskTimeout:
        return TaskTimeout(
            f"task {self.name + ' ' if self.name else ''}overran its task_timeout of "
            f"{self.task_timeout:g}s and was stopped; raise task_timeout (executor argument "
            "or options(task_timeout=...)) if it needs longer",
            self.task_timeout,
        )


def retry_delay(attempt: int) -> float:
    """Backoff before run number ``attempt + 1``: exponential, drawn from [cap/2, cap]."""
    cap = min(RETRY_BACKOFF_MAX, RETRY_BACKOFF * (2 ** max(0, attempt - 1)))
    return random.uniform(cap / 2, cap)


def _check_retry_on(value: object) -> tuple[type[BaseException], ...]:
    items = value if isinstance(value, tuple) else (value,)
    for item in items:
        if not (isinstance(item, type) and issubclass(item, BaseException)):
            raise TypeError(f"retry_on must be exception classes, got {item!r}")
    return items


def _check_name(value: object) -> str | None:
    if value is not None and not isinstance(value, str):
        raise TypeError(f"name must be a str or None, not {type(value).__name__}")
    return value


def _check_priority(value: object) -> int:
    result = check_count("priority", value, minimum=-(2**62))
    assert result is not None
    return result


_CHECKS: dict[str, Callable[[Any], Any]] = {
    "task_timeout": _check_task_timeout,
    "retries": lambda v: check_count("retries", v, minimum=0),
    "retry_on": _check_retry_on,
    "priority": _check_priority,
    "name": _check_name,
}
OPTION_NAMES = tuple(_CHECKS)
