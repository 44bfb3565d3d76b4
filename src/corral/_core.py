"""The pool's core: its queue, the life of each task, retries, timeouts and statistics,
and the seam between the executor front and its backend.

Three objects make a pool::

    user --> executor (the front: _executor.py and the public classes)
                 |  holds
                 v
             Core (this module) <------------------+
                 |  holds, calls through Backend    | holds, calls through the
                 v                                  | handle methods below
             backend (_backends/: threads, processes, Dask)

Nothing inside corral holds the front: worker and manager threads, futures, timers and
map iterators hold the core (or the backend). So a pool the user drops is collected as
soon as its last reference goes, and a finalizer winds it down as
``shutdown(wait=False)`` would (docs/design.md, "A dropped pool").

What the core calls on its backend (``Backend``)::

    work_available_locked(shutdown)   a task was queued: wake or start a worker (lock held)
    stop_running_locked(task, run, why)   a run was cancelled or timed out: stop it
    shutdown(wait)                    stop the workers once work is done; wait if asked
    counts()                          live workers and idle workers, for statistics()
    broken_error()                    the error for work the broken pool will never run
    signal_workers(signum)            signal every worker process group (signal handlers)

and what a backend may call on the core, its handle (``lock`` held where named so)::

    pop_locked()                      next task to start, marked RUNNING, or None
    hand_ahead_locked(run) / run_began_locked(run)   a run waits at a busy worker, then runs
    unstart_locked(task)              put back a task a worker never started
    finished_locked(task, exc)        a run ended: ENDED, or BACKOFF for a retry
    arm_timeout_locked(task)          start the task_timeout clock of a starting run
    break_locked(message)             the pool is broken: end every queued task
    task_started / task_ended / worker_event     raise hooks' events
    lock, pending, running, backoff, draining, broken, counts, hooks, ...   (read;
                                      a backend adds to ``counts["crashed"]``, and the
                                      Dask backend sets ``max_workers``, under the lock,
                                      to the cluster's threads as they change)

A run's outcome is the current one only while ``task.is_current(run)``: the task is
still RUNNING and that run is its latest (a cancel, a timeout or a retry since then
make it stale, and the backend drops it).

(Longer than corral's usual 500 lines: the life of a task, from submit through its runs,
retries and timeouts to its end, reads best in one place, under one lock.)
"""

from __future__ import annotations

import collections
import functools
import itertools
import os
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterable

from . import _interrupt as interrupt
from ._checks import (
    callable_name,
    check_bool,
    check_callable,
    check_count,
    check_iterables,
    check_timeout,
)
from ._clock import SYSTEM_CLOCK, Clock, now
from ._errors import QueueFull
from ._future import Future
from ._options import TaskOptions, retry_delay
from ._queue import TaskQueue
from ._task import BACKOFF, ENDED, QUEUED, RUNNING, Run, Task, task_name

TYPE_CHECKING = False  # (typing is not imported at run time: docs/design.md §5.7)
if TYPE_CHECKING:
    from typing import Any, Protocol

    from ._map import MapIterator, Units
    from ._observe.hooks import Dispatch
    from ._observe.progress import Progress
    from ._stats import Statistics
else:
    Protocol = object  # Backend is for type checkers: nothing checks it at run time

#: Set when the interpreter's exit began to shut the pools down.
_exit_started = False

#: Every pool alive (their cores); interpreter exit walks it. A forked child inherits none.
live_cores: weakref.WeakSet[Core] = weakref.WeakSet()
os.register_at_fork(after_in_child=live_cores.clear)


class Backend(Protocol):
    """What the core calls on a backend (see the module docstring)."""

    #: Seconds a stopped worker process gets between SIGTERM and SIGKILL.
    kill_grace: float

    @property
    def prepare(self) -> Callable[[Task], BaseException | None] | None:
        """Turns a new task into what the backend sends (process: pickles the call); an
        exception it returns fails that future only. None: nothing to prepare."""

    @property
    def inline_helper(self) -> Callable[[Future[Any]], None] | None:
        """Runs a queued task in the thread that waits for its result, or None."""

    def work_available_locked(self, shutdown: bool = False) -> Callable[[], None] | None:
        """A task was queued (or, with ``shutdown``, the pool winds down). Lock held:
        returns what to call once the lock is released, if anything."""

    def stop_running_locked(self, task: Task, run: Run, why: str) -> Callable[[], None] | None:
        """Stops ``run`` of ``task``, which the core has just ended ("cancelled",
        "timeout"), in the same hold of the lock: returns what to call once it is
        released (signals, messages), if anything."""

    def shutdown(self, wait: bool) -> None:
        """The pool winds down: workers leave once the work is done (joined if ``wait``)."""

    def counts(self) -> tuple[int, int]:
        """Live workers and idle workers."""
        ...

    def broken_error(self) -> BaseException:
        """The error of work that a broken pool will never run."""
        ...

    def signal_workers(self, signum: int) -> list[int]:
        """Sends ``signum`` to every worker process group, from a signal handler (no
        locks); returns their pids. A pool without processes has none."""
        ...

    def map_units(
        self, opts: TaskOptions, fn: Callable[..., Any], chunksize: int, eager: bool
    ) -> Units | None:
        """How map() submits its items, or None for one task per item."""
        ...

    @property
    def run_ended_locked(self) -> Callable[[Task], None] | None:
        """Told (lock held) whenever a run of a task ends, for any reason; or None."""


class Core:
    """One pool's state and the handle its backend gets (see the module docstring)."""

    backend: Backend

    def __init__(
        self,
        *,
        kind: str,
        max_workers: int,
        min_workers: int,
        idle_timeout: float | None,
        max_pending: int | None,
        task_timeout: float | None,
        retries: int,
        hooks: object | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        if isinstance(max_workers, int) and not isinstance(max_workers, bool) and max_workers < 1:
            raise ValueError(f"max_workers must be greater than 0, got {max_workers}")
        max_workers = check_count("max_workers", max_workers, minimum=1)
        min_workers = check_count("min_workers", min_workers, minimum=0)
        if min_workers > max_workers:
            raise ValueError(
                f"min_workers ({min_workers}) must not exceed max_workers ({max_workers})"
            )
        self.kind = kind
        self.max_workers = max_workers
        self.min_workers = min_workers
        self.idle_timeout = check_timeout("idle_timeout", idle_timeout)
        self.max_pending = check_count("max_pending", max_pending, minimum=1, allow_none=True)
        self.defaults = TaskOptions().merged(task_timeout=task_timeout, retries=retries)
        self.clock = clock
        self.lock = threading.Lock()
        self.not_full = threading.Condition(self.lock)
        self.queue = TaskQueue()
        self.pending = 0  # tasks QUEUED (tombstones of cancelled ones excluded)
        self.waiting = 0  # runs handed to a busy worker, not started: max_pending counts them
        self.backoff: set[Task] = set()  # tasks waiting out a retry backoff
        # retries whose backoff is over but that wait for room under max_pending (still
        # in ``backoff``): they hold their place ahead of new submits, which wait for them
        self.due: collections.deque[Task] = collections.deque()
        self._admitting = False  # an _admit_due is on the clock
        self.running: set[Task] = set()
        self.closed = False  # shutdown() was called: no new work from users
        self.draining = False  # ... and the feeders are done: the backend winds down
        self.at_exit = False  # interpreter exit shuts it down: abandoned threads not waited
        self._shutdown_pending = False  # shutdown(wait=False) waits for the feeders
        self._feeds: set[MapIterator[Any]] = set()  # maps whose feeder still submits
        self.broken: str | None = None
        self.counts = dict.fromkeys(
            ("completed", "failed", "cancelled", "timed_out", "crashed", "retried"), 0
        )
        self._ids = itertools.count(1)
        self._stop_hook = self.on_cancel  # (bound once: every future gets it)
        self._run_ended_hook: Callable[[Task], None] | None = None
        self.hooks: Dispatch | None = None
        if hooks is not None:  # (the hooks module is imported only by pools that have some)
            from ._observe.hooks import make_dispatch

            self.hooks = make_dispatch(hooks)  # last: starts the hooks thread

    def attach(self, backend: Backend, register: bool = True) -> None:
        """The backend is built: interpreter exit and Ctrl+C now see this pool (one
        that failed to build never reaches them). ``register=False`` leaves them out
        (a test's fake backend)."""
        self.backend = backend
        self._run_ended_hook = backend.run_ended_locked
        if register:
            live_cores.add(self)
            interrupt.install(_live_cores)

    @property
    def kill_grace(self) -> float:
        return self.backend.kill_grace

    # ------------------------------------------------------------------ front calls

    def submit(
        self,
        opts: TaskOptions,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        block: bool,
    ) -> Future[Any]:
        """submit() and submit_nowait(), with these task settings."""
        check_callable(fn)
        if self.closed:
            self._check_open()
        fut: Future[Any] = Future()
        task = Task(fut, fn, args, kwargs, opts)
        fut._task = task
        if self.hooks is not None:
            task.ident = next(self._ids)
            task.label = task_name(task)
            task.submitted = self.clock.now()
        backend = self.backend
        if backend.inline_helper is not None and opts.task_timeout is None and opts.retries == 0:
            fut._helper = backend.inline_helper
        if backend.prepare is not None:
            error = backend.prepare(task)
            if error is not None:
                with self.lock:
                    self.counts["failed"] += 1
                fut._resolve(exception=error)
                return fut
        lock = self.lock
        try:
            if not lock.acquire(False):  # (not ``with``: see acquire_contended)
                acquire_contended(lock)
            try:
                if (
                    self.max_pending is not None
                    and self.unstarted() + len(self.due) >= self.max_pending
                ):
                    self._wait_for_room_locked(block)
                if self.closed:
                    self._check_open()
                if self.broken is not None:
                    raise backend.broken_error()
                fut._stop_hook = self._stop_hook
                self._push_locked(task)
                wake = backend.work_available_locked()
            finally:
                lock.release()
        except BaseException:
            fut.cancel()  # never queued: releases what prepare made (done callbacks)
            raise
        if wake is not None:
            wake()
        return fut

    def map(
        self,
        opts: TaskOptions,
        fn: Callable[..., Any],
        iterables: tuple[Iterable[Any], ...],
        timeout: float | None,
        chunksize: int,
        buffersize: int | None,
        ordered: bool,
        progress: bool | Progress = False,
        submit: Callable[..., Future[Any]] | None = None,
    ) -> MapIterator[Any]:
        """map() and options().map(). ``submit``: a subclass or a wrapper replaced
        submit(); then every item goes through it, as the stdlib's map does (one item per
        call, no chunks), in the calling thread, so that what that submit() reads there
        (context variables, thread-locals) is the caller's: with buffersize=None all
        the input is submitted before map() returns, as in the stdlib."""
        check_callable(fn)
        check_iterables(iterables)
        timeout = check_timeout("timeout", timeout)
        chunksize = check_count("chunksize", chunksize, minimum=1)
        buffersize = check_count("buffersize", buffersize, minimum=1, allow_none=True)
        check_bool("ordered", ordered)
        # (here: a program that never maps never loads the map iterator nor progress bars)
        from ._map import MapIterator, Units
        from ._observe.progress import make_progress

        if self.closed:
            raise RuntimeError(f"cannot map on a {self.kind} after shutdown()")
        deadline = None if timeout is None else now() + timeout  # real time: the iterator waits
        if submit is not None:
            via = submit
            units = Units(lambda args: via(fn, *args))
        else:
            units = self.backend.map_units(opts, fn, chunksize, buffersize is None) or Units(
                functools.partial(self._submit_item, opts, fn)
            )
        bar = make_progress(progress, opts.name or callable_name(fn), iterables)
        it: MapIterator[Any] = MapIterator(
            units, units.prepare(iterables), deadline, buffersize, ordered, bar
        )
        if submit is not None:
            if buffersize is None:
                it.feed_all()
        elif buffersize is None:
            with self.lock:
                if self.closed:
                    raise RuntimeError(f"cannot map on a {self.kind} after shutdown()")
                self._feeds.add(it)
            it.start_feeding(self._feed_ended)
        return it

    def _submit_item(
        self, opts: TaskOptions, fn: Callable[..., Any], args: tuple[Any, ...]
    ) -> Future[Any]:
        return self.submit(opts, fn, args, {}, block=True)

    def shutdown(self, wait: bool = True, cancel_futures: bool = False, kill: bool = False) -> None:
        """executor.shutdown() (see BaseExecutor.shutdown)."""
        stop = cancel_futures or kill
        with self.lock:
            self.closed = True
            self.not_full.notify_all()
            feeds = list(self._feeds)
        if stop:
            self._cancel_work(running=kill)
        elif feeds:  # maps still submitting their input: as the stdlib, all of it
            if wait:
                with interrupt.stopping():
                    for feed in feeds:
                        feed.join_feeder()
            else:
                with self.lock:  # a feeder ending now reads the flag under the lock
                    deferred = self._shutdown_pending = bool(self._feeds)
                if deferred:
                    interrupt.release()
                    return  # the last feeder to end finishes the shutdown
        self._finish_shutdown(wait)

    def _finish_shutdown(self, wait: bool) -> None:
        """The backend's part of shutdown, once no map is submitting any more."""
        with self.lock:
            self.draining = True
            self.not_full.notify_all()
            wake = self.backend.work_available_locked(shutdown=True)
        if wake is not None:
            wake()
        if wait and not interrupt.forced():
            with interrupt.stopping():
                self.backend.shutdown(True)
        else:
            self.backend.shutdown(False)
        if self.hooks is not None and wait and not interrupt.forced():
            with interrupt.stopping():
                self.hooks.join()
        interrupt.release()

    def wait_for_backend(self) -> None:
        """After shutdown(wait=False): waits for the workers, and for the hooks."""
        self.backend.shutdown(True)
        if self.hooks is not None:
            self.hooks.join()

    def _feed_ended(self, feed: MapIterator[Any]) -> None:
        with self.lock:
            self._feeds.discard(feed)
            finish = self._shutdown_pending and not self._feeds
            if finish:
                self._shutdown_pending = False
        if finish:
            self._finish_shutdown(False)

    def _cancel_work(self, running: bool) -> None:
        """Stops the maps' feeders and cancels the pending (and running) work."""
        with self.lock:
            doomed = [t.fut for t in (*self.queue.queued(), *self.backoff)]
            if running:
                doomed += [t.fut for t in self.running]
            feeds = list(self._feeds)
        for feed in feeds:
            feed.stop_feeding()
        for fut in doomed:
            fut.cancel()

    def interrupt(self) -> None:
        """Ctrl+C (see _interrupt.py): cancels all work, pending and running."""
        self._cancel_work(running=True)

    def signal_workers(self, signum: int) -> list[int]:
        """Called from a signal handler (see _interrupt.py): no locks."""
        return self.backend.signal_workers(signum)

    def unstarted(self) -> int:
        """Tasks submitted and not started: queued, or waiting at a busy worker (what
        ``max_pending`` bounds and ``statistics().pending`` counts)."""
        return self.pending + self.waiting

    def statistics(self) -> Statistics:
        from . import _stats  # (here: most programs never ask)

        workers, idle = self.backend.counts()
        with self.lock:
            return _stats.Statistics(
                workers=workers,
                idle=idle,
                pending=self.unstarted(),
                running=len(self.running) - self.waiting,
                max_pending=self.max_pending,
                **self.counts,
                retrying=len(self.backoff),
            )

    def _check_open(self) -> None:
        """Raises unless the pool takes work: open, or shutting down after this feeder."""
        from ._map import in_feeder  # (only a closed pool gets here)

        if self.draining or not in_feeder():
            if _exit_started:  # the stdlib's words (code and tests match on them)
                raise RuntimeError("cannot schedule new futures after interpreter shutdown")
            raise RuntimeError(f"cannot submit to a {self.kind} after shutdown()")

    def _wait_for_room_locked(self, block: bool) -> None:
        assert self.max_pending is not None
        while self.unstarted() + len(self.due) >= self.max_pending and not self.draining:
            if self.closed:
                self._check_open()
            if not block:
                due = f", and {len(self.due)} retries wait for room" if self.due else ""
                raise QueueFull(
                    f"{self.unstarted()} tasks are already waiting to start{due} "
                    f"(max_pending={self.max_pending}); use submit() to wait for room, "
                    "or raise max_pending"
                )
            self.not_full.wait()

    def _room_locked(self) -> None:
        """A place under ``max_pending`` came free. A retry that waits for room takes
        it first (a retry is work already accepted): the clock's thread queues it, which
        can wake a worker once the lock is released. Else a blocked submit takes it."""
        if self.due:
            if not self._admitting:
                self._admitting = True
                self.clock.call_later(0, self._admit_due)
        else:
            self.not_full.notify()

    def _admit_due(self) -> None:
        """Queues the retries waiting for room, as far as there is room."""
        wakes = []
        with self.lock:
            self._admitting = False
            assert self.max_pending is not None
            while self.due and self.unstarted() < self.max_pending:
                task = self.due.popleft()
                self.backoff.discard(task)
                self._push_locked(task)
                wakes.append(self._backoff_left_locked())
            if not self.due and self.unstarted() < self.max_pending:
                self.not_full.notify_all()  # room left over: the submits may have it
        for wake in wakes:
            if wake is not None:
                wake()

    # ------------------------------------------------------------------ task life

    def _push_locked(self, task: Task, front: bool = False) -> None:
        task.state = QUEUED
        self.pending += 1
        self.queue.push(task, front)

    def pop_locked(self) -> Task | None:
        """Takes the next task to run and marks it running (a new run); None if none."""
        while True:
            task = self.queue.pop()
            if task is None:
                return None
            if self.start_locked(task):
                return task

    def start_locked(self, task: Task) -> bool:
        """QUEUED -> RUNNING with a new ``task.run``; False if the future was cancelled
        meanwhile."""
        self.pending -= 1
        if self.max_pending is not None:
            self._room_locked()
        if not task.fut.set_running_or_notify_cancel():
            # cancel() won the race and its hook has not booked it yet: book it here
            # (the hook then finds the task ENDED and counts nothing)
            task.state = ENDED
            self.counts["cancelled"] += 1
            return False
        task.state = RUNNING
        task.run = Run(task)
        task.fut.attempts += 1
        self.running.add(task)
        return True

    def unstart_locked(self, task: Task) -> None:
        """Puts back a task that was handed to a worker which never started it."""
        if task.state is not RUNNING or not task.fut._restart():
            return
        self.running.discard(task)
        self._run_ended_locked(task)
        if task.where:  # its start was announced: that run ends here, unfinished
            self.task_ended(task, None, "requeued", retrying=True)
        task.fut.attempts -= 1
        self._push_locked(task, front=True)

    def hand_ahead_locked(self, run: Run) -> None:
        """A backend handed ``run`` to a worker busy with another: it waits there, and
        counts as not started (``max_pending``, statistics) until ``run_began_locked``."""
        run.waiting = True
        self.waiting += 1

    def run_began_locked(self, run: Run) -> None:
        """A run handed ahead reached the front of its worker: it runs now."""
        if run.waiting:
            run.waiting = False
            self.waiting -= 1
            if self.max_pending is not None:
                self._room_locked()

    def _run_ended_locked(self, task: Task) -> None:
        """Whatever ended the current run: its timer goes, the backend hears of it."""
        run = task.run
        if run is not None and run.waiting:
            self.run_began_locked(run)  # one that never began no longer waits either
        task.run = None
        if task.timer is not None:
            task.timer.cancel()
            task.timer = None
        if self._run_ended_hook is not None:
            self._run_ended_hook(task)

    def finished_locked(self, task: Task, exc: BaseException | None) -> None:
        """Books the end of a run: ENDED, or BACKOFF when the error is retried."""
        self.running.discard(task)
        self._run_ended_locked(task)
        if exc is None:
            task.state = ENDED
            self.counts["completed"] += 1
        elif task.opts.is_retryable(exc, task.fut.attempts) and task.fut._restart():
            task.state = BACKOFF
            self.backoff.add(task)
            self.counts["retried"] += 1
            task.timer = self.clock.call_later(
                retry_delay(task.fut.attempts), functools.partial(self._requeue, task)
            )
        else:
            task.state = ENDED
            self.counts["failed"] += 1
        if self.hooks is not None:
            from ._observe.hooks import outcome_of

            self.task_ended(task, exc, outcome_of(exc))

    def _requeue(self, task: Task) -> None:
        """The backoff of a retry is over: it is queued, or, when the queue holds
        ``max_pending`` tasks, waits for room (as a submit would, but ahead of new
        submits) and counts as retrying meanwhile: ``statistics().pending`` never
        exceeds ``max_pending``. Shutdown does not wait on it any differently: the
        workers stay while a retry is left, and they make the room as they take work."""
        with self.lock:
            if task.state is not BACKOFF:
                return
            task.timer = None
            if self.broken is not None:  # no worker will ever take it
                self.backoff.discard(task)
                task.state = ENDED
                broken = self.backend.broken_error()
            elif self.max_pending is not None and (
                self.due or self.unstarted() >= self.max_pending
            ):
                self.due.append(task)  # behind the retries already waiting
                return
            else:
                self.backoff.discard(task)
                broken = None
                self._push_locked(task)
                wake = self._backoff_left_locked()
        if broken is not None:
            task.fut._resolve(exception=broken)
        elif wake is not None:
            wake()

    def _backoff_left_locked(self) -> Callable[[], None] | None:
        """A task left its retry backoff (requeued or cancelled). Workers of a pool that
        is shutting down stay for retries: once none is left, all of them look again
        (and leave); otherwise the work available is announced as usual."""
        return self.backend.work_available_locked(shutdown=self.draining and not self.backoff)

    def on_cancel(self, fut: Future[Any], was_running: bool) -> None:
        """Stop hook of every future this pool made (called by Future.cancel)."""
        task: Task = fut._task
        with self.lock:
            state = task.state
            if state is ENDED:
                return  # it finished just before the cancel: counted as such
            self.counts["cancelled"] += 1
            if state is QUEUED:
                task.state = ENDED
                self.pending -= 1
                if self.max_pending is not None:
                    self._room_locked()
                return
            if state is BACKOFF:
                task.state = ENDED
                self.backoff.discard(task)
                if task.timer is not None:
                    task.timer.cancel()
                    task.timer = None
                elif task in self.due:  # it waited for room: the submits behind it may not
                    self.due.remove(task)
                    self.not_full.notify_all()
                wake = self._backoff_left_locked()
            else:
                self.running.discard(task)
                task.state = ENDED
                run = task.run
                self._run_ended_locked(task)
                if self.hooks is not None:
                    self.task_ended(task, None, "cancelled")
                assert run is not None
                wake = self.backend.stop_running_locked(task, run, "cancelled")
        if wake is not None:
            wake()

    def arm_timeout_locked(self, task: Task) -> None:
        """Starts the task_timeout clock of a task that is starting now."""
        if task.opts.task_timeout is not None:
            assert task.run is not None
            task.timer = self.clock.call_later(
                task.opts.task_timeout, functools.partial(self._on_timeout, task, task.run)
            )

    def _on_timeout(self, task: Task, run: Run) -> None:
        """Called by the timer when a run reaches its task_timeout."""
        exc = task.opts.timeout_error()
        with self.lock:
            if not task.is_current(run):
                return
            task.timer = None
            self.counts["timed_out"] += 1
            self.finished_locked(task, exc)
            retrying = task.state is BACKOFF
            stop = self.backend.stop_running_locked(task, run, "timeout")
        if stop is not None:
            stop()
        if not retrying:
            task.fut._resolve(exception=exc)

    def break_locked(self, message: str) -> list[Future[Any]]:
        """The backend can run nothing more: the pool is broken (the first message
        stays) and every queued or retrying task ends; returns their futures, for the
        backend to fail with its error once the lock is released."""
        if self.broken is None:
            self.broken = message
        return self.fail_queued_locked()

    def fail_queued_locked(self) -> list[Future[Any]]:
        """Ends every queued (or retrying) task; returns their futures to fail unlocked."""
        futs = []
        for task in self.queue.queued():
            task.state = ENDED
            futs.append(task.fut)
        for task in self.backoff:  # retries that would never find a worker
            task.state = ENDED
            if task.timer is not None:
                task.timer.cancel()
            futs.append(task.fut)
        self.backoff.clear()
        self.due.clear()
        self.queue.clear()
        self.pending = 0
        self.not_full.notify_all()
        return futs

    def fail_running(self, error_of: Callable[[Task], BaseException]) -> None:
        """Ends every running task with ``error_of(task)``, not retried: the backend is
        stopping its workers under them, and its reports of these runs are now stale."""
        with self.lock:
            running = list(self.running)
            errors = [error_of(task) for task in running]
            for task, error in zip(running, errors, strict=True):
                self.running.discard(task)
                task.state = ENDED
                self.counts["failed"] += 1
                self._run_ended_locked(task)
                if self.hooks is not None:
                    self.task_ended(task, error, "failed")
        for task, error in zip(running, errors, strict=True):
            task.fut._resolve(exception=error)

    # ------------------------------------------------------------------ hooks' events

    def task_started(self, task: Task, worker: str, started: float | None = None) -> None:
        """A backend (whose pool has hooks) says a run of ``task`` begins on ``worker``
        (now, or at ``started``)."""
        task.started = self.clock.now() if started is None else started
        task.where = worker
        hooks = self.hooks
        if hooks is not None and hooks.wants("on_task_start"):
            from ._observe.hooks import TaskEvent

            hooks.emit(
                "on_task_start",
                TaskEvent(
                    task.ident,
                    task.label,
                    task.fut.attempts,
                    worker,
                    task.submitted,
                    task.started,
                ),
            )

    def task_ended(
        self,
        task: Task,
        exc: BaseException | None,
        outcome: str,
        retrying: bool | None = None,
    ) -> None:
        """Raises on_task_end for the announced run of ``task`` (lock held); ``retrying``
        defaults to whether the task waits out a retry backoff."""
        hooks = self.hooks
        if hooks is None or not task.where:
            return  # its start was never announced (ended before a worker took it)
        from ._observe.hooks import TaskEvent

        event = TaskEvent(
            task.ident,
            task.label,
            task.fut.attempts,
            task.where,
            task.submitted,
            task.started,
            self.clock.now(),
            outcome,
            exc,
            task.state is BACKOFF if retrying is None else retrying,
        )
        task.where = ""
        hooks.emit("on_task_end", event)

    def worker_event(self, name: str, worker: str, pid: int, **details: Any) -> None:
        """A backend (whose pool has hooks) says a worker started or left."""
        hooks = self.hooks
        if hooks is not None and hooks.wants(name):
            from ._observe.hooks import WorkerEvent

            hooks.emit(name, WorkerEvent(worker, pid, self.clock.now(), **details))


def acquire_contended(lock: threading.Lock) -> None:
    """Takes ``lock``, which a first ``acquire(False)`` found taken: gives the GIL away
    once before it blocks on it.

    Why: a thread blocked in ``acquire`` sleeps in the OS, and is handed the lock as
    soon as its holder releases it. Where a core is free it wakes at once, owns the
    lock, and then waits (up to the switch interval) for the GIL, which the releasing
    thread still holds; that thread, needing the lock again for its next task, blocks
    in turn, and so on. Every acquisition becomes a hand-off between sleeping threads
    (a lock convoy), and a busy thread pool, whose submitter and workers take its lock
    once per task each, spent 2x the CPU per task on a machine with idle cores. The
    holder of a contended lock is most often a thread that lost the GIL inside its
    short critical section: one ``sleep(0)`` lets it finish and release. More yields
    measured worse with 4 and more workers (the yielders pass the GIL among
    themselves), so it then blocks as before.
    """
    time.sleep(0)  # releases the GIL, lets the holder run, takes the GIL back
    if not lock.acquire(False):
        lock.acquire()


def _live_cores() -> list[Core]:
    return list(live_cores)


def _exiting_through_error() -> bool:
    """True when the main script ended with an uncaught exception (Ctrl+C included).

    Python prints it (which sets ``sys.last_value``) before it finalizes. An
    interactive session keeps its last error there, so it does not count.
    """
    if hasattr(sys, "ps1") or sys.flags.interactive:
        return False
    return getattr(sys, "last_value", None) is not None


def _python_exit() -> None:
    """At interpreter exit: finish the work of pools left open, or stop it.

    A normal exit waits for queued and running work, as the stdlib does. An exit
    through an uncaught exception, or after Ctrl+C, stops it instead (cancels pending
    work, kills running process work); a second Ctrl+C stops the waiting altogether.
    Runs in ``threading._shutdown``, before non-daemon threads are joined and before
    atexit handlers (multiprocessing's among them), so worker processes are gone
    before multiprocessing would wait for them. See docs/design.md, "Interpreter exit".
    """
    global _exit_started
    _exit_started = True
    stop = interrupt.interrupted() or _exiting_through_error()
    pools = list(live_cores)
    while pools:
        pools[0].at_exit = True
        try:
            pools[0].shutdown(wait=True, cancel_futures=stop, kill=stop)
        except KeyboardInterrupt:
            stop = True  # Ctrl+C while exit waits: stop the work, then wait for that
            continue
        pools.pop(0)


threading._register_atexit(_python_exit)  # type: ignore[attr-defined]
