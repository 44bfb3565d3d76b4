"""corral.ThreadPoolExecutor: the thread backend behind the executor front.

Data flow::

    submit() --push--> front queue (deque + priority heap, under the executor lock)
       |                    ^
       +--wake one parked --+-- worker threads pop the next task themselves as soon as
          worker, or start      they finish one (no hand-off thread, no per-task wakeup
          a thread (<= max)     while the pool is busy); an idle worker parks on its
                                own lock until woken or until idle_timeout reaps it.

Cancelling a running thread task (DESIGN.md §3.3). Python cannot kill a thread, and we
do not inject asynchronous exceptions: one can land inside a ``finally`` block, a
``with lock:`` exit or a C extension's callback and leave locks held or state half
written. So, when a running task is cancelled or overruns ``task_timeout``:

1. its future is resolved at once (cancelled, or failed with TaskTimeout);
2. its cancel token is set: ``corral.cancelled()`` turns true and
   ``corral.check_cancelled()`` raises in that task;
3. its thread is *abandoned*: no longer counted against ``max_workers``, so the pool
   starts a replacement and is never starved by a task that ignores the request;
4. the task's code keeps running until it returns; its return value is dropped. The
   thread then rejoins the pool if there is room, or exits. ``shutdown(wait=True)``
   waits for it; interpreter exit does not (worker threads are daemons, and the exit
   hook skips abandoned threads).
"""

from __future__ import annotations

import contextvars
import itertools
import logging
import os
import sys
import threading
from collections.abc import Callable

from .. import _stdlib
from .._checks import check_initializer, check_thread_name_prefix, cpu_count
from .._context import current, current_token, set_current_token
from .._core import Core, acquire_contended
from .._errors import BrokenThreadPool
from .._executor import BaseExecutor
from .._future import Future
from .._options import TaskOptions
from .._task import ENDED, QUEUED, Run, Task

TYPE_CHECKING = False  # (typing is not imported at run time: docs/design.md §5.7)
if TYPE_CHECKING:
    from typing import Any

    from .._map import Units

LOGGER = logging.getLogger("corral")
STDLIB_LOGGER = logging.getLogger("concurrent.futures")


class _Worker:
    __slots__ = ("abandoned", "first", "park", "task", "thread", "waking")

    def __init__(self, waking: bool) -> None:
        self.park = threading.Lock()
        self.park.acquire()  # held while not signalled; release() wakes the worker
        self.waking = waking  # woken (or started) for queued work and not yet looking
        self.abandoned = False
        self.task: Task | None = None
        self.thread: threading.Thread | None = None
        self.first: Run | None = None  # taken for it as it was started (see _spawn)


_COUNTER = itertools.count()


def _default_max_workers() -> int:
    return min(32, cpu_count() + 4)


# A subclass of the stdlib's class, so isinstance checks (asyncio's set_default_executor)
# accept it; none of its methods run. mypy: its ``_broken`` is False or a message, ours
# None or a message (the same truth value).
class ThreadPoolExecutor(BaseExecutor, _stdlib.ThreadPoolExecutor):  # type: ignore[misc,override]
    """A thread pool with the stdlib's API plus cancellation, timeouts and bounds.

    Args:
        max_workers: most threads running tasks at once; default
            ``min(32, cpu count + 4)`` as in the stdlib.
        thread_name_prefix: names the worker threads.
        initializer: called in each new worker thread with ``initargs``. If it raises,
            the pool is broken (as in the stdlib): pending and later tasks fail with
            BrokenThreadPool.
        min_workers: threads kept alive even when idle (started at once).
        idle_timeout: seconds an idle thread waits for work before it exits (while
            more than min_workers live); None keeps idle threads forever.
        max_pending: most tasks waiting to start; submit() blocks beyond it and
            submit_nowait() raises QueueFull. None: unbounded, as the stdlib.
        task_timeout: default seconds a task may run; on overrun its future fails
            with TaskTimeout at once and the task is asked to stop (see the module
            docs for what keeps running).
        retries: default number of re-runs of a task that failed with a retryable
            error (``options(retry_on=...)`` chooses which).
        hooks: an observer, or a list of them, with some of the methods
            ``on_task_start``, ``on_task_end``, ``on_worker_start``, ``on_worker_exit``
            (``corral.Hooks`` wraps plain functions; ``corral.Timeline`` records a
            timeline). They run in the pool's "corral-hooks" thread, in event order;
            ``shutdown(wait=True)`` waits for them (docs/observability.md).

    Ctrl+C raises KeyboardInterrupt in the main thread, wherever it waits, and cancels
    the pending tasks of every pool and asks running ones to stop; a with-block left
    through an exception does the same instead of waiting for them.
    """

    _kind = "ThreadPoolExecutor"

    def __init__(
        self,
        max_workers: int | None = None,
        thread_name_prefix: str = "",
        initializer: Callable[..., object] | None = None,
        initargs: tuple[Any, ...] = (),
        *,
        min_workers: int = 0,
        idle_timeout: float | None = 60.0,
        max_pending: int | None = None,
        task_timeout: float | None = None,
        retries: int = 0,
        hooks: object | None = None,
    ) -> None:
        if max_workers is None:
            max_workers = _default_max_workers()
        initargs = check_initializer(initializer, initargs)
        thread_name_prefix = check_thread_name_prefix(thread_name_prefix)
        core = self._core = Core(
            kind=self._kind,
            max_workers=max_workers,
            min_workers=min_workers,
            idle_timeout=idle_timeout,
            max_pending=max_pending,
            task_timeout=task_timeout,
            retries=retries,
            hooks=hooks,
        )
        backend = ThreadBackend(core, thread_name_prefix, initializer, initargs)
        self._backend = backend
        self._attach(backend)
        backend.start()

    # The stdlib's private names that code in the wild reads (CPython's own tests too).
    @property
    def _threads(self) -> set[threading.Thread]:  # type: ignore[override]
        return self._backend.threads

    @property
    def _thread_name_prefix(self) -> str:  # type: ignore[override]
        return self._backend.name_prefix


class ThreadBackend:
    """Worker threads that take the core's tasks themselves (see the module docstring)."""

    kill_grace = 0.0
    prepare = None
    run_ended_locked = None

    def __init__(
        self,
        core: Core,
        thread_name_prefix: str,
        initializer: Callable[..., object] | None,
        initargs: tuple[Any, ...],
    ) -> None:
        self.core = core
        # the stdlib's default names (code and tests match on them)
        self.name_prefix = thread_name_prefix or f"ThreadPoolExecutor-{next(_COUNTER)}"
        self._initializer = initializer
        self._initargs = initargs
        self._idle: list[_Worker] = []
        self._nthreads = 0  # live threads counted against max_workers (not abandoned)
        # replaced, never changed in place: code that holds the set it read (the
        # stdlib's ``_threads``, which CPython's tests iterate) sees it unchanged
        self.threads: set[threading.Thread] = set()
        self._abandoned: set[threading.Thread] = set()  # running a cancelled task
        self._thread_seq = 0
        self._waking = 0  # workers woken or started for queued work, not yet looking at it
        self._spawn_pending = 0  # threads counted by _take_locked, started after unlocking
        self._changed = threading.Condition(core.lock)  # threads or queued work changed
        self.inline_helper: Callable[[Future[Any]], None] | None = (
            self._run_inline if initializer is None else None
        )

    def start(self) -> None:
        """Starts the min_workers threads (the pool is attached to its core)."""
        with self.core.lock:
            self._nthreads = self.core.min_workers
        for _ in range(self.core.min_workers):
            self._spawn()

    # ------------------------------------------------------------------ backend seam

    def work_available_locked(self, shutdown: bool = False) -> Callable[[], None] | None:
        if self.core.draining:  # (only a shutdown waits on it: not on submit's path)
            self._changed.notify_all()
        if shutdown:
            idle, self._idle = self._idle, []
            for worker in idle:
                worker.park.release()  # each takes what is queued, or leaves
            if idle or not self.core.pending:
                return None
            # work is queued and no thread is left to take it: a retry whose backoff
            # ended after every thread had left on its idle_timeout. Start one: it runs
            # what is queued, then leaves as the others did.
        if self._waking >= self.core.pending:
            return None  # the workers already woken will take what is queued
        if self._idle:
            worker = self._idle.pop()
            worker.waking = True
            self._waking += 1
            worker.park.release()
            return None
        if self._nthreads < self.core.max_workers and self.core.broken is None:
            self._nthreads += 1
            self._waking += 1
            return self._spawn_waking
        return None

    def stop_running_locked(self, task: Task, run: Run, why: str) -> Callable[[], None] | None:
        run.cancel(why, task.opts.task_timeout)  # the run is the task's CancelToken
        worker: _Worker | None = run.worker
        if worker is None:  # the caller was running it: its slot is free now
            return self.work_available_locked() if self.core.pending else None
        if worker.abandoned or worker.task is not task:
            return None
        worker.abandoned = True
        if worker.thread is not None:
            self._abandoned.add(worker.thread)
        self._nthreads -= 1
        return self.work_available_locked() if self.core.pending else None

    def shutdown(self, wait: bool) -> None:
        if self.core.hooks is not None:
            with self.core.lock:
                if not self.threads:  # no thread will raise an event any more
                    self.core.hooks.finish()
        if not wait:
            return
        current = threading.current_thread()
        core = self.core
        while True:
            with core.lock:
                threads = [
                    t
                    for t in self.threads
                    if t is not current and not (core.at_exit and t in self._abandoned)
                ]
                if not threads:
                    if core.broken is not None or not (core.backoff or core.pending):
                        return
                    # no thread, but a retry still waits out its backoff (its thread was
                    # abandoned when it timed out, say): wait for the thread it will get
                    self._changed.wait()
                    continue
            for thread in threads:
                thread.join()
                with self.core.lock:
                    self.threads = self.threads - {thread}  # ended (or stale after a fork)

    def counts(self) -> tuple[int, int]:
        with self.core.lock:
            return self._nthreads, len(self._idle)

    # ------------------------------------------------------------------ workers

    def _start_spawns(self) -> None:
        with self.core.lock:
            count, self._spawn_pending = self._spawn_pending, 0
        for _ in range(count):
            self._spawn(waking=True)

    def _spawn_waking(self) -> None:
        self._spawn(waking=True)

    def _spawn(self, waking: bool = False) -> None:
        """Starts one worker thread; the caller already counted it in _nthreads."""
        worker = _Worker(waking)
        # started under the lock, so shutdown() never sees (and joins) an unstarted thread;
        # start() only waits for the thread's bootstrap, which does not take this lock
        with self.core.lock:
            self._thread_seq += 1
            name = f"{self.name_prefix}_{self._thread_seq - 1}"
            # a thread started for queued work takes its first task now, as a stdlib
            # worker does as soon as it runs: else, on a busy machine, the submitting
            # thread could cancel everything (shutdown(cancel_futures=True)) before the
            # new thread got this lock. Not when it first runs an initializer (which
            # may fail) or raises hooks' events (on_worker_start comes first).
            # (on the worker, not in the thread's args: those live as long as the thread)
            if waking and self._initializer is None and self.core.hooks is None:
                worker.first = self._take_locked(worker)
            thread = threading.Thread(
                target=self._worker_main, args=(worker,), name=name, daemon=True
            )
            worker.thread = thread
            try:
                thread.start()
            except BaseException:
                self._nthreads -= 1
                if worker.waking:
                    self._waking -= 1
                if worker.first is not None:
                    worker.task = None
                    self.core.unstart_locked(worker.first.task)
                    worker.first = None
                raise
            self.threads = self.threads | {thread}
            if self.core.draining:
                self._changed.notify_all()

    def _exit_locked(self, worker: _Worker, reason: str) -> None:
        if self.core.hooks is not None and worker.thread is not None:
            self.core.worker_event("on_worker_exit", worker.thread.name, os.getpid(), reason=reason)
        if worker.waking:
            worker.waking = False
            self._waking -= 1
        if not worker.abandoned:
            self._nthreads -= 1
        if worker.thread is not None:
            self.threads = self.threads - {worker.thread}
            self._abandoned.discard(worker.thread)
        if self.core.draining and not self.threads and not self.core.backoff:
            # no thread will start again: let go of the user's initializer arguments
            self._initializer, self._initargs = None, ()
            if self.core.hooks is not None:
                self.core.hooks.finish()  # the last thread has raised its last event

    def _take_locked(self, worker: _Worker) -> Run | None:
        """The next run for ``worker`` (its task is ``run.task``), or None. The run is
        read here, under the lock: once it is released, a cancel may end it."""
        if worker.waking:
            worker.waking = False
            self._waking -= 1
            more = self.core.pending - 1 > self._waking  # queued work no woken worker takes
            if more and self._idle:
                self.work_available_locked()  # wake the next
            elif more and self._nthreads < self.core.max_workers:
                self._nthreads += 1  # and start one more thread for it
                self._waking += 1
                self._spawn_pending += 1
        if len(self.core.running) >= self.core.max_workers:
            return None  # callers are running tasks themselves: this slot is theirs
        task = self.core.pop_locked()
        if task is None:
            return None
        run = task.run
        assert run is not None
        run.worker = worker
        worker.task = task
        self.core.arm_timeout_locked(task)
        if self.core.hooks is not None and worker.thread is not None:
            self.core.task_started(task, worker.thread.name)
        return run

    def _run_inline(self, fut: Future[Any]) -> None:
        """Caller runs: executes a still-queued task in the thread waiting for it.

        Only when a worker slot is free (running tasks stay <= max_workers, so a
        one-worker pool still serialises its tasks), the pool has no initializer,
        the task has no task_timeout or retries, and the calling thread runs no
        asyncio loop. The task runs in a fresh contextvars context; it does see the
        caller's thread-locals and thread name (docs/design.md, "Caller runs").
        """
        task: Task | None = fut._task
        asyncio = sys.modules.get("asyncio")  # not imported: no loop can be running
        if task is None or (asyncio is not None and asyncio._get_running_loop() is not None):
            return  # a task may run its own event loop: not in a thread that has one
        with self.core.lock:
            if (
                task.state is not QUEUED
                or len(self.core.running) >= self.core.max_workers
                or self.core.broken is not None
                or not self.core.start_locked(task)
            ):
                return
            run = task.run
            assert run is not None
            if self.core.hooks is not None:
                self.core.task_started(task, f"caller {threading.current_thread().name}")
        previous = current_token()
        set_current_token(run)
        try:
            result = contextvars.Context().run(task.fn, *task.args, **task.kwargs)
            exc = None
        except BaseException as error:
            result = None
            exc = error
        finally:
            set_current_token(previous)
        with self.core.lock:
            resolve = task.is_current(run)
            if resolve:
                self.core.finished_locked(task, exc)
            wake = self.work_available_locked() if self.core.pending else None
        if wake is not None:
            wake()
        if resolve:
            fut._resolve(result, exc)

    def _worker_main(self, worker: _Worker) -> None:
        if self._initializer is not None:
            try:
                self._initializer(*self._initargs)
            except BaseException:
                # the stdlib's record, on its logger (code that watches it keeps working)
                STDLIB_LOGGER.critical("Exception in initializer:", exc_info=True)
                self._init_failed(worker)
                return
        if self.core.hooks is not None and worker.thread is not None:
            self.core.worker_event("on_worker_start", worker.thread.name, os.getpid())
        lock = self.core.lock
        slot = current  # this thread's: what corral.cancelled() reads
        run, worker.first = worker.first, None
        if run is None:
            with lock:
                run = self._take_locked(worker)
        self._start_spawns()
        while True:
            if run is None:
                run = self._park(worker)
                if run is None:
                    return
            task = run.task
            slot.token = run  # the run is its CancelToken
            try:
                result = task.fn(*task.args, **task.kwargs)
                exc = None
            except BaseException as error:
                result = None
                exc = error
            slot.token = None
            if not lock.acquire(False):  # (not ``with``: see acquire_contended)
                acquire_contended(lock)
            try:
                worker.task = None
                resolve = False
                if task.is_current(run):
                    self.core.finished_locked(task, exc)
                    resolve = task.state is ENDED
                leave = False
                if worker.abandoned:
                    if self._nthreads < self.core.max_workers and not self.core.draining:
                        worker.abandoned = False
                        self._abandoned.discard(worker.thread)
                        self._nthreads += 1
                    else:
                        leave = True
                        self._exit_locked(worker, "exited")
                next_run = None if leave else self._take_locked(worker)
            finally:
                lock.release()
            if self._spawn_pending:
                self._start_spawns()
            if resolve:
                task.fut._resolve(result, exc)
            del result, exc, task
            if leave:
                return
            run = next_run

    def _park(self, worker: _Worker) -> Run | None:
        """Waits for work; returns the next run, or None when this thread should exit."""
        lock = self.core.lock
        while True:
            with lock:
                run = self._take_locked(worker)
                if run is None:
                    if self.core.broken is not None or (
                        self.core.draining and not self.core.backoff
                    ):
                        self._exit_locked(worker, "shutdown")
                        return None
                    self._idle.append(worker)
                # a pool shutting down keeps its threads while retries wait out their
                # backoff (shutdown(wait=True) waits for them, and they need a thread
                # that ran the initializer): park until the retry wakes us
                timeout = self.core.idle_timeout
                if timeout is None or (self.core.draining and self.core.backoff):
                    timeout = -1.0
            if self._spawn_pending:
                self._start_spawns()
            if run is not None:
                return run
            if worker.park.acquire(timeout=timeout):
                continue
            with lock:
                if worker in self._idle:
                    if self._nthreads > self.core.min_workers and not (
                        self.core.draining and self.core.backoff
                    ):
                        self._idle.remove(worker)
                        self._exit_locked(worker, "idle")
                        return None
                    self._idle.remove(worker)
                    continue
            worker.park.acquire()  # a waker popped us just as we timed out: take its signal

    def _init_failed(self, worker: _Worker) -> None:
        message = (
            "A thread initializer failed, the thread pool is not usable anymore; "
            "see the 'Exception in initializer' log record for the cause"
        )
        with self.core.lock:
            futures = self.core.break_locked(message)
            self._exit_locked(worker, "init_failed")
            self.work_available_locked(shutdown=True)
        for fut in futures:
            fut._resolve(exception=BrokenThreadPool(message))

    def signal_workers(self, signum: int) -> list[int]:
        return []  # threads: no process to signal

    def map_units(
        self, opts: TaskOptions, fn: Callable[..., Any], chunksize: int, eager: bool
    ) -> Units | None:
        return None  # one task per item (chunks would only delay results)

    def broken_error(self) -> BaseException:
        return BrokenThreadPool(self.core.broken or "the thread pool is broken")
