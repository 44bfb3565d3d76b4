"""The executor front: options, the bounded priority queue, futures, retries, statistics.

Every backend (threads, processes, Dask) sits behind this front. The front owns the
queue of tasks that were submitted but have not started, and the bookkeeping of each
task's life; a backend only starts tasks it takes from the queue and reports how they
ended. The seam, as methods a backend overrides::

    _work_available_locked()   a task was queued: wake or start a worker (lock held)
    _stop_running(task, why)   a running task's future was cancelled or timed out
    _backend_shutdown(...)     stop workers; wait for them if asked
    _backend_counts()          live workers and idle workers, for statistics()

and the front methods a backend calls, with ``self._lock`` held::

    _pop_locked()              next task to start (marks it running), or None
    _finished_locked(task, outcome)

A task's life (``Task.state``)::

    QUEUED --pop--> RUNNING --ok/error--> ENDED
      |               |  \\--retryable error--> BACKOFF --timer--> QUEUED
      +--cancel-------+--cancel/timeout--> ENDED (the backend stops the work)
"""

from __future__ import annotations

import functools
import heapq
import itertools
import os
import sys
import threading
import weakref
from collections import deque
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar, cast

from . import _interrupt as interrupt
from . import _stdlib
from ._checks import callable_name, check_callable, check_count, check_timeout
from ._clock import now, timer
from ._errors import BrokenExecutor, QueueFull
from ._future import Future
from ._map import MapIterator, Units, in_feeder
from ._observe.hooks import TaskEvent, WorkerEvent, make_dispatch, outcome_of
from ._observe.progress import Progress, make_progress
from ._options import TaskOptions, retry_delay
from ._stats import Statistics
from ._task import BACKOFF, ENDED, QUEUED, RUNNING, Task, task_name

if TYPE_CHECKING:
    from typing_extensions import Self

P = ParamSpec("P")
T = TypeVar("T")
E = TypeVar("E", bound="BaseExecutor")


#: Set when the interpreter's exit began to shut the pools down.
_exit_started = False

#: Every executor alive; interpreter exit walks it. A forked child inherits none.
live_executors: weakref.WeakSet[BaseExecutor] = weakref.WeakSet()
os.register_at_fork(after_in_child=live_executors.clear)


class BaseExecutor(_stdlib.Executor):
    """What every corral executor shares; see ThreadPoolExecutor for the full contract."""

    _kind = "executor"
    #: Set by the interpreter-exit hook: threads running cancelled tasks are not waited for.
    _at_exit = False
    #: Seconds a stopped worker process gets between SIGTERM and SIGKILL.
    _kill_grace = 0.0
    #: Runs a queued task in the thread that waits for it (see _backends/thread.py), or None.
    _inline_helper: Callable[[Future[Any]], None] | None = None
    #: Turns a new task into what the backend sends (process: pickles the call); an
    #: exception it returns fails that future only.
    _prepare: Callable[[Task], BaseException | None] | None = None

    def __init__(
        self,
        *,
        max_workers: int,
        min_workers: int,
        idle_timeout: float | None,
        max_pending: int | None,
        task_timeout: float | None,
        retries: int,
        hooks: object | None = None,
    ) -> None:
        if isinstance(max_workers, int) and not isinstance(max_workers, bool) and max_workers < 1:
            raise ValueError(f"max_workers must be greater than 0, got {max_workers}")
        check_count("max_workers", max_workers, minimum=1)
        check_count("min_workers", min_workers, minimum=0)
        if min_workers > max_workers:
            raise ValueError(
                f"min_workers ({min_workers}) must not exceed max_workers ({max_workers})"
            )
        self._max_workers = max_workers
        self._min_workers = min_workers
        self._idle_timeout = check_timeout("idle_timeout", idle_timeout)
        self._max_pending = check_count("max_pending", max_pending, minimum=1, allow_none=True)
        self._defaults = TaskOptions().merged(task_timeout=task_timeout, retries=retries)
        self._lock = threading.Lock()
        self._not_full = threading.Condition(self._lock)
        self._queue: deque[Task] = deque()  # priority 0, FIFO
        self._heap: list[tuple[int, int, Task]] = []  # other priorities: (-priority, seq)
        self._seq = itertools.count()
        self._pending = 0  # tasks QUEUED (tombstones of cancelled ones excluded)
        self._backoff: set[Task] = set()  # tasks waiting out a retry backoff
        self._running: set[Task] = set()
        self._closed = False  # shutdown() was called: no new work from users
        self._shutdown = False  # ... and the feeders are done: the backend winds down
        self._shutdown_pending = False  # shutdown(wait=False) waits for the feeders
        self._feeds: set[MapIterator[Any]] = set()  # maps whose feeder still submits
        self._broken: str | None = None
        self._counts = dict.fromkeys(
            ("completed", "failed", "cancelled", "timed_out", "crashed", "retried"), 0
        )
        self._ids = itertools.count(1)
        self._on_drop: weakref.finalize[Any, Any] | None = None
        # One state, two handles: the object the user holds (the front) and a core of
        # the same class sharing its __dict__, which everything inside corral holds
        # instead (threads, futures, map iterators, timers). So nothing inside keeps
        # the front alive, and a pool the user drops winds down as after
        # shutdown(wait=False): queued work still runs, then the workers exit, as the
        # stdlib does when it collects an executor (docs/design.md, "A dropped pool").
        # The core lives until its threads end. Code that stores a callback of this
        # pool binds it to ``self._core``, never to ``self``.
        core: Self = cast("Self", object.__new__(type(self)))
        core.__dict__ = self.__dict__
        self._core: Self = core
        self._hooks = make_dispatch(hooks)  # last: it starts the hooks thread

    def _register(self) -> None:
        """Called at the end of a backend's constructor: interpreter exit and Ctrl+C
        now see this pool (one that failed to build never reaches them)."""
        live_executors.add(self._core)
        interrupt.install(_live_pools)
        self._on_drop = weakref.finalize(self, _pool_dropped, self._core)
        self._on_drop.atexit = False  # at exit, _python_exit sees to every pool

    # ------------------------------------------------------------------ public API

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        """Schedules ``fn(*args, **kwargs)`` and returns its Future.

        Blocks while ``max_pending`` tasks are already waiting to start, until a task
        starts (or is cancelled) and makes room. Ctrl+C while blocked raises
        KeyboardInterrupt in the caller and queues nothing.

        Raises:
            TypeError: ``fn`` is not callable.
            RuntimeError: the executor was shut down.
            BrokenExecutor: the executor cannot run work any more.
        """
        return self._submit(self._defaults, fn, args, kwargs, block=True)

    def submit_nowait(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        """Like submit(), but raises QueueFull instead of blocking when the queue is full.

        Raises:
            QueueFull: ``max_pending`` tasks are already waiting to start.
        """
        return self._submit(self._defaults, fn, args, kwargs, block=False)

    def map(
        self,
        fn: Callable[..., T],
        *iterables: Iterable[Any],
        timeout: float | None = None,
        chunksize: int = 1,
        buffersize: int | None = None,
        ordered: bool = True,
        progress: bool | Progress = False,
    ) -> MapIterator[T]:
        """Runs ``fn`` over the items of ``iterables``, like the builtin map, concurrently.

        Args:
            fn: the function to call with one item of each iterable.
            timeout: seconds, counted from this call, after which the iterator raises
                TimeoutError for a result that is not ready (the rest are cancelled).
            chunksize: items sent to a process worker in one message (the thread
                pool ignores it, as the stdlib's does).
            buffersize: if given, at most this many results are held ahead of the
                consumer and the input is read only as results are consumed, so an
                infinite iterable works in bounded memory. If None, all the input is
                submitted even if no result is read (the stdlib's behaviour), by a
                feeder thread: map() returns at once, the input is read as the pool
                takes work, and shutdown() (a with-block) waits for the feeder. An
                error of the input itself is raised by the iterator after the items
                read before it.
            ordered: False yields results in completion order instead of input order.
            progress: True draws a progress bar of the items that finished (tqdm if
                installed, else text, on stderr); a ``corral.Progress`` chooses how.

        Returns:
            An iterator (and async iterator) over the results. It raises the first
            failing item's exception when it reaches that item. Closing it, or
            dropping it, cancels the work behind it that has not been yielded.
        """
        return self._map(
            self._defaults,
            fn,
            iterables,
            timeout,
            chunksize,
            buffersize,
            ordered,
            progress,
            via_submit=type(self).submit is not BaseExecutor.submit or "submit" in vars(self),
        )

    def options(self, **overrides: Any) -> Configured:
        """Returns a view of this executor whose submit/map use other task settings.

        ``ex.options(task_timeout=5, retries=2, priority=10, name="resize")
        .submit(fn, x)``. Valid names: task_timeout, retries, retry_on, priority, name.

        Raises:
            TypeError: an unknown option name or a value of the wrong type.
            ValueError: a value out of range (a negative timeout, say).
        """
        return Configured(self, self._defaults.merged(**overrides))

    def shutdown(
        self, wait: bool = True, *, cancel_futures: bool = False, kill: bool = False
    ) -> None:
        """Stops accepting work and releases the workers when their work is done.

        Args:
            wait: block until every worker has exited. A first Ctrl+C while waiting
                cancels and stops the work of every pool (docs/design.md §10) and
                raises KeyboardInterrupt here; a second one SIGKILLs the workers.
            cancel_futures: cancel the tasks that have not started.
            kill: also stop running tasks now (processes are killed; thread tasks
                see ``corral.cancelled()``). Implies cancel_futures.
        """
        stop = cancel_futures or kill
        if self._on_drop is not None:
            self._on_drop.detach()  # shut down by hand: nothing to do when dropped
        with self._lock:
            self._closed = True
            self._not_full.notify_all()
            feeds = list(self._feeds)
        if stop:
            self._cancel_work(running=kill)
        elif feeds:  # maps still submitting their input: as the stdlib, all of it
            if wait:
                with interrupt.stopping():
                    for feed in feeds:
                        feed.join_feeder()
            else:
                with self._lock:  # a feeder ending now reads the flag under the lock
                    deferred = self._shutdown_pending = bool(self._feeds)
                if deferred:
                    interrupt.release()
                    return  # the last feeder to end finishes the shutdown
        self._finish_shutdown(wait)

    def _finish_shutdown(self, wait: bool) -> None:
        """The backend's part of shutdown, once no map is submitting any more."""
        with self._lock:
            self._shutdown = True
            self._not_full.notify_all()
            wake = self._work_available_locked(shutdown=True)
        if wake is not None:
            wake()
        if wait and not interrupt.forced():
            with interrupt.stopping():
                self._backend_shutdown(True)
        else:
            self._backend_shutdown(False)
        if self._hooks is not None and wait and not interrupt.forced():
            with interrupt.stopping():
                self._hooks.join()
        interrupt.release()

    def _feed_ended(self, feed: MapIterator[Any]) -> None:
        with self._lock:
            self._feeds.discard(feed)
            finish = self._shutdown_pending and not self._feeds
            if finish:
                self._shutdown_pending = False
        if finish:
            self._finish_shutdown(False)

    def _cancel_work(self, running: bool) -> None:
        """Stops the maps' feeders and cancels the pending (and running) work."""
        with self._lock:
            doomed = [t.fut for t in (*self._queued_locked(), *self._backoff)]
            if running:
                doomed += [t.fut for t in self._running]
            feeds = list(self._feeds)
        for feed in feeds:
            feed.stop_feeding()
        for fut in doomed:
            fut.cancel()

    def _interrupt(self) -> None:
        """Ctrl+C (see _interrupt.py): cancels all work, pending and running."""
        self._cancel_work(running=True)

    def _signal_workers(self, signum: int) -> list[int]:
        """Sends ``signum`` to every worker process group; returns their pids.

        Called from a signal handler: no locks. Pools without processes have none.
        """
        return []

    def statistics(self) -> Statistics:
        """A snapshot of the pool: workers, queue and outcome counters."""
        workers, idle = self._backend_counts()
        with self._lock:
            return Statistics(
                workers=workers,
                idle=idle,
                pending=self._pending,
                running=len(self._running),
                max_pending=self._max_pending,
                **self._counts,
                retrying=len(self._backoff),
            )

    def __enter__(self: E) -> E:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> None:
        """A normal exit waits for all work; an exit through an exception stops it."""
        if exc_type is None:
            self.shutdown(wait=True)
        else:
            self.shutdown(wait=True, cancel_futures=True, kill=True)

    async def __aenter__(self: E) -> E:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> None:
        import asyncio

        kill = exc_type is not None
        self.shutdown(wait=False, cancel_futures=kill, kill=kill)
        await asyncio.to_thread(self._wait_for_backend)

    def _wait_for_backend(self) -> None:
        """After shutdown(wait=False): waits for the workers, and for the hooks."""
        self._backend_shutdown(True)
        if self._hooks is not None:
            self._hooks.join()

    # ------------------------------------------------------------------ front internals

    def _submit(
        self,
        opts: TaskOptions,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        block: bool,
    ) -> Future[Any]:
        check_callable(fn)
        if self._closed:
            self._check_open()
        fut: Future[Any] = Future()
        task = Task(fut, fn, args, kwargs, opts)
        fut._task = task
        if self._hooks is not None:
            task.ident = next(self._ids)
            task.label = task_name(task)
            task.submitted = now()
        if self._inline_helper is not None and opts.task_timeout is None and opts.retries == 0:
            fut._helper = self._inline_helper  # (bound to the core)
        if self._prepare is not None:
            error = self._prepare(task)
            if error is not None:
                with self._lock:
                    self._counts["failed"] += 1
                fut._resolve(exception=error)
                return fut
        try:
            with self._lock:
                if self._max_pending is not None and self._pending >= self._max_pending:
                    self._wait_for_room_locked(block)
                if self._closed:
                    self._check_open()
                if self._broken is not None:
                    raise self._broken_error()
                fut._stop_hook = self._core._on_cancel
                self._push_locked(task)
                wake = self._work_available_locked()
        except BaseException:
            fut.cancel()  # never queued: releases what _prepare made (done callbacks)
            raise
        if wake is not None:
            wake()
        return fut

    def _check_open(self) -> None:
        """Raises unless the pool takes work: open, or shutting down after this feeder."""
        if self._shutdown or not in_feeder():
            if _exit_started:  # the stdlib's words (code and tests match on them)
                raise RuntimeError("cannot schedule new futures after interpreter shutdown")
            raise RuntimeError(f"cannot submit to a {self._kind} after shutdown()")

    def _wait_for_room_locked(self, block: bool) -> None:
        assert self._max_pending is not None
        while self._pending >= self._max_pending and not self._shutdown:
            if self._closed:
                self._check_open()
            if not block:
                raise QueueFull(
                    f"{self._pending} tasks are already waiting to start "
                    f"(max_pending={self._max_pending}); use submit() to wait for room, "
                    "or raise max_pending"
                )
            self._not_full.wait()

    def _push_locked(self, task: Task, front: bool = False) -> None:
        """Queues a task; ``front`` puts it back ahead of its equals (it was taken early)."""
        task.state = QUEUED
        self._pending += 1
        priority = task.opts.priority
        if not front:
            task.seq = next(self._seq)
            if priority == 0:
                self._queue.append(task)
                return
        # other priorities, and tasks put back (in their first place, by their seq)
        heapq.heappush(self._heap, (-priority, task.seq, task))

    def _pop_locked(self) -> Task | None:
        """Takes the next task to run and marks it running; None if there is none."""
        queue, heap = self._queue, self._heap
        while True:
            if heap and (not queue or heap[0][:2] < (0, queue[0].seq)):
                task = heapq.heappop(heap)[2]
            elif queue:
                task = queue.popleft()
            else:
                return None
            if task.state is QUEUED and self._start_locked(task):
                return task

    def _start_locked(self, task: Task) -> bool:
        """QUEUED -> RUNNING; False if the future was cancelled meanwhile."""
        self._pending -= 1
        if self._max_pending is not None:
            self._not_full.notify()
        if not task.fut.set_running_or_notify_cancel():
            # cancel() won the race and its hook has not booked it yet: book it here
            # (the hook then finds the task ENDED and counts nothing)
            task.state = ENDED
            self._counts["cancelled"] += 1
            return False
        task.state = RUNNING
        task.fut.attempts += 1
        self._running.add(task)
        return True

    def _unstart_locked(self, task: Task) -> None:
        """Puts back a task that was handed to a worker which never started it."""
        if task.state is not RUNNING or not task.fut._restart():
            return
        self._running.discard(task)
        if task.where:  # its start was announced: that run ends here, unfinished
            self._task_ended(task, None, "requeued", retrying=True)
        task.fut.attempts -= 1
        if task.timer is not None:
            task.timer.cancel()
            task.timer = None
        self._push_locked(task, front=True)

    def _queued_locked(self) -> list[Task]:
        tasks = [t for t in self._queue if t.state is QUEUED]
        tasks += [entry[2] for entry in self._heap if entry[2].state is QUEUED]
        return tasks

    def _finished_locked(self, task: Task, exc: BaseException | None) -> None:
        """Books the end of a run: ENDED, or BACKOFF when the error is retried."""
        self._running.discard(task)
        if task.timer is not None:
            task.timer.cancel()
            task.timer = None
        if exc is None:
            task.state = ENDED
            self._counts["completed"] += 1
        elif task.opts.is_retryable(exc, task.fut.attempts) and task.fut._restart():
            task.state = BACKOFF
            self._backoff.add(task)
            self._counts["retried"] += 1
            task.timer = timer.call_later(
                retry_delay(task.fut.attempts), functools.partial(self._core._requeue, task)
            )
        else:
            task.state = ENDED
            self._counts["failed"] += 1
        if self._hooks is not None:
            self._task_ended(task, exc, outcome_of(exc))

    def _requeue(self, task: Task) -> None:
        with self._lock:
            if task.state is not BACKOFF:
                return
            self._backoff.discard(task)
            task.timer = None
            if self._broken is not None:  # no worker will ever take it
                task.state = ENDED
                broken = self._broken_error()
            else:
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
        return self._work_available_locked(shutdown=self._shutdown and not self._backoff)

    def _on_cancel(self, fut: Future[Any], was_running: bool) -> None:
        """Stop hook of every future this executor made (called by Future.cancel)."""
        task: Task = fut._task
        with self._lock:
            state = task.state
            if state is ENDED:
                return  # it finished just before the cancel: counted as such
            self._counts["cancelled"] += 1
            if state is QUEUED:
                task.state = ENDED
                self._pending -= 1
                if self._max_pending is not None:
                    self._not_full.notify()
                return
            if state is BACKOFF:
                task.state = ENDED
                self._backoff.discard(task)
                if task.timer is not None:
                    task.timer.cancel()
                wake = self._backoff_left_locked()
            elif state is RUNNING:
                self._running.discard(task)
                task.state = ENDED
                if task.timer is not None:  # its task_timeout: nothing left to time
                    task.timer.cancel()
                    task.timer = None
                wake = None
                if self._hooks is not None:
                    self._task_ended(task, None, "cancelled")
        if wake is not None:
            wake()
        if state is RUNNING:
            self._stop_running(task, "cancelled")

    def _task_started(self, task: Task, worker: str, started: float | None = None) -> None:
        """A backend (whose pool has hooks) says a run of ``task`` begins on ``worker``
        (now, or at ``started``)."""
        task.started = now() if started is None else started
        task.where = worker
        hooks = self._hooks
        if hooks is not None and hooks.wants("on_task_start"):
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

    def _task_ended(
        self,
        task: Task,
        exc: BaseException | None,
        outcome: str,
        retrying: bool | None = None,
    ) -> None:
        """Raises on_task_end for the announced run of ``task`` (lock held); ``retrying``
        defaults to whether the task waits out a retry backoff."""
        hooks = self._hooks
        if hooks is None or not task.where:
            return  # its start was never announced (ended before a worker took it)
        event = TaskEvent(
            task.ident,
            task.label,
            task.fut.attempts,
            task.where,
            task.submitted,
            task.started,
            now(),
            outcome,
            exc,
            task.state is BACKOFF if retrying is None else retrying,
        )
        task.where = ""
        hooks.emit("on_task_end", event)

    def _worker_event(self, name: str, worker: str, pid: int, **details: Any) -> None:
        """A backend (whose pool has hooks) says a worker started or left."""
        hooks = self._hooks
        if hooks is not None and hooks.wants(name):
            hooks.emit(name, WorkerEvent(worker, pid, now(), **details))

    def _arm_timeout_locked(self, task: Task) -> None:
        """Starts the task_timeout clock of a task that is starting now."""
        if task.opts.task_timeout is not None:
            task.timer = timer.call_later(
                task.opts.task_timeout, functools.partial(self._core._on_timeout, task)
            )

    def _on_timeout(self, task: Task) -> None:
        """Called by the timer when a running task reaches its task_timeout."""
        exc = task.opts.timeout_error()
        with self._lock:
            if task.state is not RUNNING:
                return
            task.timer = None
            self._counts["timed_out"] += 1
            self._finished_locked(task, exc)
            retrying = task.state is BACKOFF
        self._stop_running(task, "timeout")
        if not retrying:
            task.fut._resolve(exception=exc)

    def _fail_queued_locked(self) -> list[Future[Any]]:
        """Ends every queued (or retrying) task; returns their futures to fail unlocked."""
        futs = []
        for task in self._queued_locked():
            task.state = ENDED
            futs.append(task.fut)
        for task in self._backoff:  # retries that would never find a worker
            task.state = ENDED
            if task.timer is not None:
                task.timer.cancel()
            futs.append(task.fut)
        self._backoff.clear()
        self._queue.clear()
        self._heap.clear()
        self._pending = 0
        self._not_full.notify_all()
        return futs

    def _broken_error(self) -> BaseException:
        return BrokenExecutor(self._broken or "the executor is broken")

    def _map(
        self,
        opts: TaskOptions,
        fn: Callable[..., T],
        iterables: tuple[Iterable[Any], ...],
        timeout: float | None,
        chunksize: int,
        buffersize: int | None,
        ordered: bool,
        progress: bool | Progress = False,
        via_submit: bool = False,
    ) -> MapIterator[T]:
        """map() and options().map(). ``via_submit``: a subclass or a wrapper replaced
        submit(); then every item goes through it, as the stdlib's map does (one item per
        call, no chunks), in the calling thread, so that what that submit() reads there
        (context variables, thread-locals) is the caller's: with buffersize=None all
        the input is submitted before map() returns, as in the stdlib."""
        check_callable(fn)
        timeout = check_timeout("timeout", timeout)
        check_count("chunksize", chunksize, minimum=1)
        check_count("buffersize", buffersize, minimum=1, allow_none=True)
        if self._closed:
            raise RuntimeError(f"cannot map on a {self._kind} after shutdown()")
        deadline = None if timeout is None else now() + timeout
        core = self._core  # what the iterator holds: never the front
        if via_submit:
            submit = core.submit  # the same overridden submit, of the core
            units = Units(lambda args: submit(fn, *args))
        else:
            units = core._map_units(opts, fn, chunksize, buffersize is None)
        bar = make_progress(progress, opts.name or callable_name(fn), iterables)
        it: MapIterator[T] = MapIterator(
            units, units.prepare(iterables), deadline, buffersize, ordered, bar
        )
        if via_submit:
            if buffersize is None:
                it.feed_all()
        elif buffersize is None:
            with self._lock:
                if self._closed:
                    raise RuntimeError(f"cannot map on a {self._kind} after shutdown()")
                self._feeds.add(it)
            it.start_feeding(core._feed_ended)
        return it

    def _map_units(
        self, opts: TaskOptions, fn: Callable[..., Any], chunksize: int, eager: bool
    ) -> Units:
        """How map() submits its items; the process pool batches them into chunks."""

        def submit_one(args: tuple[Any, ...]) -> Future[Any]:
            return self._submit(opts, fn, args, {}, block=True)

        return Units(submit_one)

    # ------------------------------------------------------------------ backend seam

    def _work_available_locked(self, shutdown: bool = False) -> Callable[[], None] | None:
        raise NotImplementedError

    def _stop_running(self, task: Task, why: str) -> None:
        raise NotImplementedError

    def _backend_shutdown(self, wait: bool) -> None:
        raise NotImplementedError

    def _backend_counts(self) -> tuple[int, int]:
        raise NotImplementedError


class Configured:
    """An executor seen through other task settings; made by ``executor.options()``."""

    __slots__ = ("_executor", "_opts")

    def __init__(self, executor: BaseExecutor, opts: TaskOptions) -> None:
        self._executor = executor
        self._opts = opts

    def options(self, **overrides: Any) -> Configured:
        """Applies more overrides on top of these ones."""
        return Configured(self._executor, self._opts.merged(**overrides))

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        """As executor.submit(), with these settings."""
        return self._executor._submit(self._opts, fn, args, kwargs, block=True)

    def submit_nowait(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        """As executor.submit_nowait(), with these settings."""
        return self._executor._submit(self._opts, fn, args, kwargs, block=False)

    def map(
        self,
        fn: Callable[..., T],
        *iterables: Iterable[Any],
        timeout: float | None = None,
        chunksize: int = 1,
        buffersize: int | None = None,
        ordered: bool = True,
        progress: bool | Progress = False,
    ) -> MapIterator[T]:
        """As executor.map(), with these settings for every item."""
        return self._executor._map(
            self._opts, fn, iterables, timeout, chunksize, buffersize, ordered, progress
        )


def _pool_dropped(core: BaseExecutor) -> None:
    """The user dropped a pool without shutting it down: wind it down, as
    shutdown(wait=False) would, in a thread of its own (this runs wherever the last
    reference went, perhaps inside the garbage collector: it takes no lock here)."""
    try:
        threading.Thread(
            target=core.shutdown, kwargs={"wait": False}, name="corral-dropped-pool", daemon=True
        ).start()
    except RuntimeError:  # the interpreter is finalizing: _python_exit saw to the pool
        pass


def _live_pools() -> list[BaseExecutor]:
    return list(live_executors)


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
    pools = list(live_executors)
    while pools:
        pools[0]._at_exit = True
        try:
            pools[0].shutdown(wait=True, cancel_futures=stop, kill=stop)
        except KeyboardInterrupt:
            stop = True  # Ctrl+C while exit waits: stop the work, then wait for that
            continue
        pools.pop(0)


threading._register_atexit(_python_exit)  # type: ignore[attr-defined]
