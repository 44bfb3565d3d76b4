"""The pool's core, driven by a fake backend and a fake clock: no threads, no processes,
no sleeping.

The fake backend records what the core asks of it; the tests play its workers (they
take tasks with ``pop_locked`` and book outcomes with ``finished_locked``, as the real
backends do) and move the fake clock by hand, so queueing, priorities, max_pending,
retries and their backoff, task_timeout, cancellation and statistics are checked
exactly, in any order, on a busy machine too. The backends' own suites test the real
thing.
"""

from __future__ import annotations

import heapq
import itertools
import threading
from collections.abc import Callable
from typing import Any

import pytest

import corral
from corral._core import Core, acquire_contended
from corral._future import Future
from corral._map import Units
from corral._options import RETRY_BACKOFF, TaskOptions
from corral._task import BACKOFF, ENDED, QUEUED, RUNNING, Run, Task


class FakeClock:
    """Time that moves only when the test says so; timers fire in ``advance``."""

    def __init__(self) -> None:
        self.time = 1000.0
        self._heap: list[tuple[float, int, FakeTimer]] = []
        self._seq = itertools.count()

    def now(self) -> float:
        return self.time

    def call_later(self, delay: float, callback: Callable[[], object]) -> FakeTimer:
        handle = FakeTimer(self.time + delay, callback)
        heapq.heappush(self._heap, (handle.when, next(self._seq), handle))
        return handle

    def pending(self) -> list[float]:
        """Delays from now of the timers still armed."""
        return sorted(h.when - self.time for _, _, h in self._heap if h.callback is not None)

    def advance(self, seconds: float) -> None:
        self.time += seconds
        while self._heap and self._heap[0][0] <= self.time:
            handle = heapq.heappop(self._heap)[2]
            callback, handle.callback = handle.callback, None
            if callback is not None:
                callback()


class FakeTimer:
    def __init__(self, when: float, callback: Callable[[], object]) -> None:
        self.when = when
        self.callback: Callable[[], object] | None = callback

    def cancel(self) -> None:
        self.callback = None


class FakeBackend:
    """Records what the core asks; the test plays the workers."""

    kill_grace = 0.0
    prepare = None
    inline_helper = None

    def __init__(self, core: Core) -> None:
        self.core = core
        self.wakes = 0
        self.stops: list[tuple[Task, Run, str]] = []
        self.shutdowns: list[bool] = []
        self.ended: list[Task] = []

    def work_available_locked(self, shutdown: bool = False) -> Callable[[], None] | None:
        self.wakes += 1
        return None

    def stop_running_locked(self, task: Task, run: Run, why: str) -> Callable[[], None] | None:
        assert self.core.lock.locked()  # in the same hold that ended the run
        self.stops.append((task, run, why))
        return None

    def shutdown(self, wait: bool) -> None:
        self.shutdowns.append(wait)

    def counts(self) -> tuple[int, int]:
        return 1, 0

    def broken_error(self) -> BaseException:
        return corral.BrokenExecutor(self.core.broken or "broken")

    def signal_workers(self, signum: int) -> list[int]:
        return []

    def map_units(
        self, opts: TaskOptions, fn: Callable[..., Any], chunksize: int, eager: bool
    ) -> Units | None:
        return None

    def run_ended_locked(self, task: Task) -> None:
        self.ended.append(task)

    # ---- the test plays a worker

    def take(self) -> Task | None:
        with self.core.lock:
            task = self.core.pop_locked()
            if task is not None:
                self.core.arm_timeout_locked(task)
            return task

    def finish(
        self, task: Task, run: Run, result: Any = None, exc: Exception | None = None
    ) -> bool:
        """Books a run's outcome as a backend does; False if the run was stale."""
        with self.core.lock:
            if not task.is_current(run):
                return False
            self.core.finished_locked(task, exc)
            resolve = task.state is ENDED
        if resolve:
            task.fut._resolve(result, exc)
        return True


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def make(clock: FakeClock, **kwargs: Any) -> tuple[Core, FakeBackend]:
    settings: dict[str, Any] = {
        "kind": "FakePool",
        "max_workers": 2,
        "min_workers": 0,
        "idle_timeout": None,
        "max_pending": None,
        "task_timeout": None,
        "retries": 0,
    }
    settings.update(kwargs)
    core = Core(clock=clock, **settings)
    backend = FakeBackend(core)
    core.attach(backend, register=False)  # no exit or Ctrl+C handling for a fake
    return core, backend


def submit(core: Core, fn: Callable[..., Any] = abs, *args: Any, **opts: Any) -> Future[Any]:
    options = core.defaults.merged(**opts) if opts else core.defaults
    return core.submit(options, fn, args or (-1,), {}, block=False)


def task_of(fut: Future[Any]) -> Task:
    task: Task = fut._task
    return task


def test_fifo_then_priorities_then_put_back_first(clock: FakeClock) -> None:
    core, backend = make(clock)
    a, b = submit(core), submit(core)
    c = submit(core, priority=5)
    d = submit(core, priority=-1)
    assert backend.wakes == 4 and core.pending == 4
    first = backend.take()
    assert first is task_of(c)  # the highest priority first
    with core.lock:
        core.unstart_locked(first)  # handed to a worker that never started it
    order = [backend.take() for _ in range(4)]
    assert order == [task_of(f) for f in (c, a, b, d)]
    assert backend.take() is None
    assert core.pending == 0 and len(core.running) == 4


def test_a_cancelled_task_is_a_tombstone_never_started(clock: FakeClock) -> None:
    core, backend = make(clock)
    a, b = submit(core), submit(core)
    cancelled = task_of(a)  # (a done future lets go of its task)
    assert a.cancel()
    assert core.pending == 1 and cancelled.state is ENDED
    assert backend.take() is task_of(b)
    assert backend.take() is None
    assert core.statistics().cancelled == 1


def test_max_pending_bounds_the_queue_not_the_running(clock: FakeClock) -> None:
    core, backend = make(clock, max_pending=2)
    submit(core)
    submit(core)
    with pytest.raises(corral.QueueFull, match="max_pending=2"):
        submit(core)
    backend.take()  # one starts: room for one more
    submit(core)
    stats = core.statistics()
    assert (stats.pending, stats.running, stats.max_pending) == (2, 1, 2)


def test_runs_waiting_at_a_busy_worker_count_as_not_started(clock: FakeClock) -> None:
    core, backend = make(clock, max_workers=1, max_pending=2)
    submit(core)
    waiting = submit(core)
    head = backend.take()
    ahead = backend.take()  # handed to the busy worker behind the head
    assert head is not None and ahead is not None and ahead.run is not None
    with core.lock:
        core.hand_ahead_locked(ahead.run)
    submit(core)
    with pytest.raises(corral.QueueFull, match="2 tasks are already waiting"):
        submit(core)
    stats = core.statistics()
    assert (stats.pending, stats.running) == (2, 1)
    assert waiting.cancel()  # a run waiting ahead is cancelled: room again
    submit(core)
    with core.lock:
        assert core.waiting == 0 and core.unstarted() == 2


def test_a_run_handed_ahead_begins_then_frees_its_place(clock: FakeClock) -> None:
    core, backend = make(clock, max_workers=1, max_pending=1)
    submit(core)
    head = backend.take()
    submit(core)
    ahead = backend.take()
    assert head is not None and head.run is not None
    assert ahead is not None and ahead.run is not None
    with core.lock:
        core.hand_ahead_locked(ahead.run)
    with pytest.raises(corral.QueueFull):
        submit(core)
    backend.finish(head, head.run, result=1)
    with core.lock:
        core.run_began_locked(ahead.run)
        core.run_began_locked(ahead.run)  # idempotent
    submit(core)
    assert core.statistics().running == 1 and core.statistics().pending == 1


def test_retry_waits_out_its_backoff_on_the_clock(clock: FakeClock) -> None:
    core, backend = make(clock, retries=2)
    fut = submit(core)
    task = backend.take()
    assert task is not None and task.run is not None
    run = task.run
    assert backend.finish(task, run, exc=corral.WorkerCrashed("died"))
    assert task.state is BACKOFF and not fut.done() and fut.running() is False
    (delay,) = clock.pending()
    assert RETRY_BACKOFF / 2 <= delay <= RETRY_BACKOFF  # the first backoff, with jitter
    assert backend.take() is None  # not before its time
    assert core.statistics().retrying == 1
    clock.advance(delay)
    assert task.state is QUEUED and core.pending == 1
    again = backend.take()
    assert again is task and task.run is not run  # a new run; the old one is stale
    assert not backend.finish(task, run, result=1)  # a late report of the old run
    assert backend.finish(task, task.run, result=7)
    assert fut.result(0) == 7 and fut.attempts == 2
    stats = core.statistics()
    assert (stats.completed, stats.failed, stats.retried, stats.retrying) == (1, 0, 1, 0)


def test_retries_run_out_then_the_error_is_the_futures(clock: FakeClock) -> None:
    core, backend = make(clock, retries=1)
    fut = submit(core)
    for _ in range(2):
        task = backend.take()
        assert task is not None and task.run is not None
        backend.finish(task, task.run, exc=corral.WorkerCrashed("died"))
        clock.advance(10)
    with pytest.raises(corral.WorkerCrashed):
        fut.result(0)
    assert core.statistics().failed == 1 and core.statistics().retried == 1


def _retry_due_on_a_full_queue(clock: FakeClock) -> tuple[Core, FakeBackend, Future[Any]]:
    """max_pending=1: a task fails (a retry), another fills the queue, the backoff ends."""
    core, backend = make(clock, max_pending=1, retries=1)
    retried = submit(core)
    task = backend.take()
    assert task is not None and task.run is not None
    backend.finish(task, task.run, exc=corral.WorkerCrashed("died"))
    submit(core)  # the one place in the queue
    clock.advance(10)  # the backoff is over: no room
    assert task.state is BACKOFF and core.statistics().retrying == 1
    assert core.statistics().pending == 1
    return core, backend, retried


def test_a_retry_due_on_a_full_queue_waits_for_room_ahead_of_submits(clock: FakeClock) -> None:
    core, backend, retried = _retry_due_on_a_full_queue(clock)
    queued = backend.take()  # room: the retry's, not a submit's
    assert queued is not None
    with pytest.raises(corral.QueueFull, match="1 retries wait for room"):
        submit(core)
    clock.advance(0)  # the clock's thread queues it
    assert task_of(retried).state is QUEUED
    stats = core.statistics()
    assert (stats.pending, stats.retrying) == (1, 0)
    with pytest.raises(corral.QueueFull, match="1 tasks are already waiting to start "):
        submit(core)
    again = backend.take()
    assert again is task_of(retried) and again.run is not None
    backend.finish(again, again.run, result=5)
    assert retried.result(0) == 5 and retried.attempts == 2
    submit(core)  # room for submits again


def test_room_beyond_the_waiting_retries_goes_to_submits(clock: FakeClock) -> None:
    core, backend, retried = _retry_due_on_a_full_queue(clock)
    core.max_pending = 3
    submit(core)  # 2 queued and the retry: full
    with pytest.raises(corral.QueueFull):
        submit(core)
    backend.take()
    backend.take()  # two places come free: one for the retry, one left for submits
    clock.advance(0)
    assert task_of(retried).state is QUEUED and core.pending == 1
    submit(core)
    submit(core)
    with pytest.raises(corral.QueueFull):
        submit(core)


def test_a_retry_waiting_for_room_is_cancelled_or_failed_like_a_queued_task(
    clock: FakeClock,
) -> None:
    core, backend, retried = _retry_due_on_a_full_queue(clock)
    task = task_of(retried)
    assert retried.cancel()
    assert task.state is ENDED and not core.due and not core.backoff
    assert core.statistics().cancelled == 1
    backend.take()
    clock.advance(0)
    submit(core)  # its place went to the submit

    core, backend, retried = _retry_due_on_a_full_queue(FakeClock())
    core.shutdown(wait=False, cancel_futures=True)
    assert retried.cancelled() and not core.due

    core, backend, retried = _retry_due_on_a_full_queue(FakeClock())
    with core.lock:
        futs = core.break_locked("the workers cannot start")
    assert task_of(retried).state is ENDED and not core.due and retried in futs


def test_task_timeout_fires_on_the_clock_and_stops_that_run(clock: FakeClock) -> None:
    core, backend = make(clock, task_timeout=5.0)
    fut = submit(core)
    task = backend.take()
    assert task is not None and task.run is not None
    run = task.run
    clock.advance(4.9)
    assert not fut.done()
    clock.advance(0.2)
    with pytest.raises(corral.TaskTimeout):
        fut.result(0)
    assert backend.stops == [(task, run, "timeout")]
    assert not task.is_current(run) and not backend.finish(task, run, result=1)
    stats = core.statistics()
    assert (stats.timed_out, stats.failed, stats.running) == (1, 1, 0)


def test_a_run_that_ends_in_time_leaves_no_timer(clock: FakeClock) -> None:
    core, backend = make(clock, task_timeout=5.0)
    submit(core)
    task = backend.take()
    assert task is not None and task.run is not None
    assert clock.pending() == [5.0]
    backend.finish(task, task.run, result=1)
    assert clock.pending() == []  # cancelled with the run: nothing holds the task


def test_cancelling_a_running_task_stops_its_run_and_frees_its_timer(clock: FakeClock) -> None:
    core, backend = make(clock, task_timeout=3600.0)
    fut = submit(core)
    task = backend.take()
    assert task is not None and task.run is not None
    run = task.run
    assert fut.cancel()
    assert backend.stops == [(task, run, "cancelled")]
    assert clock.pending() == [] and backend.ended == [task]
    assert not backend.finish(task, run, result=1)  # the worker's late report is dropped
    assert fut.cancelled() and core.statistics().cancelled == 1


def test_cancelling_during_backoff_ends_the_retry(clock: FakeClock) -> None:
    core, backend = make(clock, retries=3)
    fut = submit(core)
    task = backend.take()
    assert task is not None and task.run is not None
    backend.finish(task, task.run, exc=corral.WorkerCrashed("died"))
    assert fut.cancel()
    assert clock.pending() == [] and core.statistics().retrying == 0
    clock.advance(60)
    assert backend.take() is None and core.pending == 0


def test_cancel_racing_the_start_is_counted_once(clock: FakeClock) -> None:
    core, _ = make(clock)
    fut = submit(core)
    task = task_of(fut)
    with core.lock:  # cancel lands between the pop and set_running_or_notify_cancel
        fut._state = "CANCELLED"
        assert core.queue.pop() is task
        assert not core.start_locked(task)
    assert task.state is ENDED and core.statistics().cancelled == 1
    fut.cancel()  # the stop hook finds it ENDED: not counted again
    assert core.statistics().cancelled == 1


def test_statistics_add_up(clock: FakeClock) -> None:
    core, backend = make(clock, max_workers=4)
    futs = [submit(core) for _ in range(5)]
    tasks = [backend.take() for _ in range(3)]
    assert all(t is not None and t.run is not None for t in tasks)
    first, second = tasks[0], tasks[1]
    assert first is not None and second is not None
    backend.finish(first, first.run, result=1)
    backend.finish(second, second.run, exc=ValueError("x"))
    futs[2].cancel()
    futs[3].cancel()
    stats = core.statistics()
    assert (stats.completed, stats.failed, stats.cancelled) == (1, 1, 2)
    assert (stats.pending, stats.running, stats.workers) == (1, 0, 1)


def test_fail_running_ends_every_run_without_retry(clock: FakeClock) -> None:
    core, backend = make(clock, retries=5)
    futs = [submit(core) for _ in range(2)]
    runs = [backend.take() for _ in range(2)]
    core.fail_running(lambda task: corral.BrokenProcessPool("stopped"))
    for fut in futs:
        with pytest.raises(corral.BrokenProcessPool):
            fut.result(0)
    assert all(not t.is_current(t.run) for t in runs if t is not None)
    assert core.statistics().retried == 0 and core.statistics().failed == 2


def test_submit_after_shutdown_and_on_a_broken_pool_fail_fast(clock: FakeClock) -> None:
    core, backend = make(clock)
    core.broken = "the workers cannot start"
    with pytest.raises(corral.BrokenExecutor, match="cannot start"):
        submit(core)
    assert core.pending == 0
    core.broken = None
    core.shutdown(wait=True)
    assert backend.shutdowns == [True] and core.closed and core.draining
    with pytest.raises(RuntimeError, match="FakePool after shutdown"):
        submit(core)


def test_shutdown_cancel_futures_cancels_queued_and_retrying(clock: FakeClock) -> None:
    core, backend = make(clock, retries=1)
    retrying = submit(core)
    task = backend.take()
    assert task is not None and task.run is not None
    backend.finish(task, task.run, exc=corral.WorkerCrashed("died"))
    queued = submit(core)
    core.shutdown(wait=False, cancel_futures=True)
    assert retrying.cancelled() and queued.cancelled()
    assert clock.pending() == [] and backend.shutdowns == [False]


def test_events_use_the_pools_clock(clock: FakeClock) -> None:
    events: list[corral.TaskEvent] = []
    core, backend = make(clock, hooks=corral.Hooks(on_task_end=events.append))
    try:
        submit(core)
        task = backend.take()
        assert task is not None and task.run is not None
        with core.lock:
            core.task_started(task, "fake 0")
        clock.advance(2.5)
        backend.finish(task, task.run, result=1)
    finally:
        assert core.hooks is not None
        core.hooks.finish()
        core.hooks.join()
    (event,) = events
    assert event.outcome == "completed" and event.worker == "fake 0"
    assert event.ended - event.started == 2.5
    assert isinstance(task, Task) and task.state is ENDED and RUNNING is not ENDED


def test_a_contended_lock_is_waited_for_once_a_yield_did_not_free_it() -> None:
    """acquire_contended gives the GIL away once, then blocks: a holder that keeps the
    lock longer (a thread's start, say) is waited for, not spun on."""
    lock = threading.Lock()
    lock.acquire()
    got = threading.Event()

    def take() -> None:
        acquire_contended(lock)
        got.set()
        lock.release()

    thread = threading.Thread(target=take)
    thread.start()
    assert not got.wait(0.05)  # still held: the taker waits
    lock.release()
    assert got.wait(30)
    thread.join(30)
    assert not lock.locked()
