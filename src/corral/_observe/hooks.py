"""Event hooks: what a pool tells observers (user hooks, ``corral.Timeline``) and how.

Four events, each a method an observer may define (any subset)::

    on_task_start(TaskEvent)     a run of a task begins on a worker
    on_task_end(TaskEvent)       that run ended: completed, failed, timed_out, crashed,
                                 cancelled or requeued (``retrying``: it runs again)
    on_worker_start(WorkerEvent) a worker (thread or process) is ready for work
    on_worker_exit(WorkerEvent)  it is gone, and why (idle, retired, killed, crashed...)

Where hooks run, and why there. Events happen under the executor's lock or in the
process pool's manager thread; a user's hook there could deadlock the pool (it calls
``submit``) or slow every dispatch (it writes a file). So events are put on a queue
(``SimpleQueue.put``, a C call) and one thread per pool, "corral-hooks", calls the
observers in event order (so no hook runs under a pool's lock or in its workers or
manager thread). While events flow it takes them in batches, at most
``BATCH_SECONDS`` (5 ms) after they happen: waking a thread per event cost more than
the hooks (measured: a thread pool's no-op tasks 1.38x slower with a Timeline, 1.19x
with batching). ``shutdown(wait=True)`` (and ``with``/``async with``) waits until every event of the
pool has been delivered; after ``shutdown(wait=False)`` the thread delivers the events
still to come (workers leaving) and then ends. A hook that raises is logged on the
"corral" logger and the pool carries on. The queue is unbounded: a hook slower than
the pool's events makes it grow.

Rejected: calling hooks inline outside the lock (every call site would collect events
and flush them after unlocking, and a slow hook would still stall the manager thread);
asyncio-style callbacks on the futures (no start event, no worker events).

Cost when unused: an executor without hooks has ``_hooks = None`` and each event site
is one attribute test.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

from .._errors import TaskTimeout, WorkerCrashed

LOGGER = logging.getLogger("corral")

#: How long the hooks thread lets events gather after a batch (the most it delays one).
BATCH_SECONDS = 0.005

EVENTS = ("on_task_start", "on_task_end", "on_worker_start", "on_worker_exit")

#: Outcomes of a task's run, as ``TaskEvent.outcome`` names them.
OUTCOMES = ("completed", "failed", "timed_out", "crashed", "cancelled", "requeued")


class TaskEvent(NamedTuple):
    """One run of a task, as ``on_task_start`` and ``on_task_end`` see it (a named tuple).

    Times are seconds on ``time.monotonic()``, the clock of every corral deadline.

    Attributes:
        task: the task's number in its pool (1, 2, ...; the same for each retry).
        name: ``options(name=...)``, or the function's qualified name.
        attempt: which run this is (1 for the first, 2 for the first retry...).
        worker: the worker running it: its thread's name, or ``"process <pid>"``;
            ``"caller <thread name>"`` when the waiting thread ran it (thread pool).
        submitted: when ``submit`` (or ``map``) queued the task.
        started: when this run began.
        ended: when it ended (None in ``on_task_start``).
        outcome: None in ``on_task_start``; then one of "completed", "failed",
            "timed_out", "crashed", "cancelled", or "requeued" (its worker was
            stopped for another reason before the run ended; the task runs again).
        error: the exception of a run that did not complete, else None.
        retrying: the run failed and the task will run again (``retries``).
    """

    task: int
    name: str
    attempt: int
    worker: str
    submitted: float
    started: float
    ended: float | None = None
    outcome: str | None = None
    error: BaseException | None = None
    retrying: bool = False


class WorkerEvent(NamedTuple):
    """A worker starting or leaving, as ``on_worker_start``/``on_worker_exit`` see it.

    Attributes:
        worker: the worker's name, as in ``TaskEvent.worker``.
        pid: its process id (the pool's own pid for a thread).
        time: when it happened (``time.monotonic()``).
        reason: on exit, why: "idle" (idle_timeout), "max_tasks_per_child",
            "max_memory_per_child", "killed" (a cancel or timeout stopped its task),
            "crashed" (it died on its own), "init_failed" (its initializer raised;
            no ``on_worker_start`` came before), "shutdown", or "exited". None on
            start.
        exitcode: a process's exit code (negative: the signal), else None.
    """

    worker: str
    pid: int
    time: float
    reason: str | None = None
    exitcode: int | None = None


class Hooks:
    """Plain functions as hooks: ``ProcessPoolExecutor(hooks=corral.Hooks(on_task_end=f))``.

    Any object with some of the methods ``on_task_start``, ``on_task_end``,
    ``on_worker_start`` and ``on_worker_exit`` can be passed as a hook; this class
    turns functions into one.
    """

    def __init__(
        self,
        *,
        on_task_start: Callable[[TaskEvent], object] | None = None,
        on_task_end: Callable[[TaskEvent], object] | None = None,
        on_worker_start: Callable[[WorkerEvent], object] | None = None,
        on_worker_exit: Callable[[WorkerEvent], object] | None = None,
    ) -> None:
        for name, fn in zip(
            EVENTS, (on_task_start, on_task_end, on_worker_start, on_worker_exit), strict=True
        ):
            if fn is not None:
                if not callable(fn):
                    raise TypeError(f"{name} must be callable, got {type(fn).__name__}")
                setattr(self, name, fn)


class Dispatch:
    """Delivers one pool's events to its observers, in order, in the "corral-hooks" thread.

    The thread ends after ``finish()``, which the backend calls once it has raised its
    last event (the process pool when its manager thread ends, the thread pool when its
    last worker thread leaves after shutdown), so no event is ever dropped and none is
    ever delivered anywhere else.
    """

    def __init__(self, observers: list[object]) -> None:
        self._handlers: dict[str, list[Callable[[Any], object]]] = {
            name: [getattr(o, name) for o in observers if callable(getattr(o, name, None))]
            for name in EVENTS
        }
        self._queue: queue.SimpleQueue[tuple[str, Any] | None] = queue.SimpleQueue()
        self._finished = False
        self._thread = threading.Thread(target=self._run, name="corral-hooks", daemon=True)
        self._thread.start()

    def wants(self, name: str) -> bool:
        return bool(self._handlers[name])

    def emit(self, name: str, event: Any) -> None:
        self._queue.put((name, event))

    def finish(self) -> None:
        """No more events will come: the thread ends once it has delivered the rest."""
        if not self._finished:
            self._finished = True
            self._queue.put(None)

    def join(self) -> None:
        """Waits until every event is delivered, if the backend has finished."""
        if self._finished and self._thread is not threading.current_thread():
            self._thread.join()

    def _run(self) -> None:
        get, get_nowait = self._queue.get, self._queue.get_nowait
        while True:
            item = get()  # idle: blocks without a timeout
            while True:
                if item is None:
                    return
                self._call(*item)
                try:
                    item = get_nowait()
                except queue.Empty:
                    break
            # Busy: let events gather for a moment, then take them in one go. A wakeup
            # per event (a thread switch each) costs more than the hooks themselves.
            time.sleep(BATCH_SECONDS)

    def _call(self, name: str, event: Any) -> None:
        for handler in self._handlers[name]:
            try:
                handler(event)
            except BaseException:  # this thread must go on: every later event depends on it
                LOGGER.exception("corral: the %s hook %r raised; ignored", name, handler)


def make_dispatch(hooks: object | Iterable[object] | None) -> Dispatch | None:
    """Checks the ``hooks`` argument of an executor; None when there is nothing to call."""
    if hooks is None:
        return None
    observers = list(hooks) if isinstance(hooks, (list, tuple)) else [hooks]
    for observer in observers:
        if not any(callable(getattr(observer, name, None)) for name in EVENTS):
            raise TypeError(
                f"hooks: {observer!r} has none of the methods {', '.join(EVENTS)}; pass an "
                "object that has some of them, e.g. corral.Hooks(on_task_end=my_function)"
            )
    return Dispatch(observers) if observers else None


def outcome_of(exc: BaseException | None) -> str:
    """The outcome name of a run that ended with ``exc`` (None: it returned)."""
    if exc is None:
        return "completed"
    if isinstance(exc, TaskTimeout):
        return "timed_out"
    if isinstance(exc, WorkerCrashed):
        return "crashed"
    return "failed"
