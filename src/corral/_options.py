"""Per-task settings (``task_timeout``, ``retries``, ``retry_on``, ``priority``,
``name``): their checks, their defaults, and the retry backoff."""

from __future__ import annotations

from collections.abc import Callable

from ._checks import check_count, check_timeout
from ._errors import TaskTimeout, WorkerCrashed
from ._record import Record

TYPE_CHECKING = False  # (typing is not imported at run time: docs/design.md §5.7)
if TYPE_CHECKING:
    from typing import Any

#: Exceptions a task is retried on when ``retries`` > 0 and ``retry_on`` is not given.
DEFAULT_RETRY_ON: tuple[type[BaseException], ...] = (WorkerCrashed,)

#: First backoff before a retry, and the cap; each retry doubles it, with jitter.
RETRY_BACKOFF = 0.05
RETRY_BACKOFF_MAX = 5.0


def _check_task_timeout(value: object) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and not value > 0:
        raise ValueError(  # (NaN too) before check_timeout, whose ">= 0" would mislead
            f"task_timeout must be > 0 seconds, got {value!r}; pass None for no limit"
        )
    seconds = check_timeout("task_timeout", value)
    if seconds == 0:
        raise ValueError(
            "task_timeout must be > 0 seconds (0 would stop every task as it starts); "
            "pass None for no limit"
        )
    return seconds


class TaskOptions(Record):
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

    task_timeout: float | None
    retries: int
    retry_on: tuple[type[BaseException], ...]
    priority: int
    name: str | None

    __slots__ = ("name", "priority", "retries", "retry_on", "task_timeout")
    _fields = ("task_timeout", "retries", "retry_on", "priority", "name")

    def __init__(
        self,
        task_timeout: float | None = None,
        retries: int = 0,
        retry_on: tuple[type[BaseException], ...] = DEFAULT_RETRY_ON,
        priority: int = 0,
        name: str | None = None,
    ) -> None:
        self._set(
            task_timeout=task_timeout,
            retries=retries,
            retry_on=retry_on,
            priority=priority,
            name=name,
        )

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
        result: TaskOptions = self._replace(**checked)
        return result

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
    import random  # (here: retries are rare, and random imports hashlib)

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
