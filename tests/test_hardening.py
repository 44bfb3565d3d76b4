"""Holes a chaos run found, each closed with a regression test: limits that mean
"forever", idle_timeout=0, a cancelled task's timer, cancels counted once, grandchildren
ended with their worker, and bad input refused at the call site."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import math
import os
import threading
from typing import Any

import psutil
import pytest

import corral
from corral import testing

POOLS = [corral.ThreadPoolExecutor, corral.ProcessPoolExecutor]


@pytest.mark.parametrize("pool", POOLS)
@pytest.mark.parametrize("value", [math.inf, 1e10])
def test_huge_limits_mean_forever(pool: Any, value: float) -> None:
    # before: OverflowError in the timer, worker or manager thread; the pool broke
    with pool(1, idle_timeout=value, task_timeout=value) as ex:
        assert ex.submit(testing.square, 3).result(timeout=30) == 9
        fut = ex.options(task_timeout=value, retries=1).submit(testing.square, 4)
        assert fut.result(timeout=30) == 16
        assert list(ex.map(testing.square, range(3), timeout=value)) == [0, 1, 4]
    # and the process-wide timer still works for everybody afterwards
    work = testing.sleep_until_cancelled if pool is corral.ThreadPoolExecutor else testing.hang
    with pool(1) as ex, pytest.raises(corral.TaskTimeout):
        ex.options(task_timeout=0.2).submit(work).result(timeout=30)


def test_kill_grace_inf_still_stops_a_cancelled_task(started: testing.Gate) -> None:
    with corral.ProcessPoolExecutor(1, kill_grace=math.inf) as ex:
        fut = ex.submit(testing.hang, started)
        started.wait(30)
        assert fut.cancel()  # SIGTERM ends the hang; the SIGKILL a lifetime later never comes
        assert ex.submit(testing.square, 5).result(timeout=30) == 25


@pytest.mark.parametrize("pool", POOLS)
def test_idle_timeout_zero_still_runs_the_work(pool: Any) -> None:
    with pool(2, idle_timeout=0) as ex:
        assert [f.result(timeout=30) for f in [ex.submit(testing.square, i) for i in range(5)]] == [
            0,
            1,
            4,
            9,
            16,
        ]


@pytest.mark.parametrize("pool", POOLS)
def test_cancelling_a_running_task_disarms_its_timeout(pool: Any, started: testing.Gate) -> None:
    with pool(1) as ex:
        work = testing.sleep_until_cancelled if pool is corral.ThreadPoolExecutor else testing.hang
        fut = ex.options(task_timeout=3600).submit(work, started=started)
        started.wait(30)
        task = fut._task
        assert task is not None and task.timer is not None
        fut.cancel()
        assert task.timer is None  # before: armed for an hour, holding the task and its future


@pytest.mark.parametrize("pool", POOLS)
def test_every_cancel_is_counted_once(pool: Any) -> None:
    with pool(2) as ex:
        futures = [ex.submit(testing.noop) for _ in range(300)]
        for fut in futures:
            fut.cancel()
        corral.wait(futures, timeout=30)
    stats = ex.statistics()
    cancelled = sum(f.cancelled() for f in futures)
    # every task counted once (before: a cancel landing as a worker took the task was
    # counted nowhere). A task that finished as cancel() landed, before its result was
    # published, counts as completed while its future says cancelled: hence <=
    assert stats.completed + stats.cancelled == len(futures)
    assert stats.cancelled <= cancelled


def test_prefetched_tasks_count_against_max_pending(started: testing.Gate) -> None:
    """max_pending bounds the tasks not started, those handed ahead to a busy worker
    included (before: 1 worker, max_pending=2 accepted 12 such tasks, counted running)."""
    with testing.Gate() as gate, corral.ProcessPoolExecutor(1, max_pending=2) as ex:
        for fut in [ex.submit(testing.noop) for _ in range(200)]:
            fut.result(30)  # tiny measured tasks: the manager now hands ahead up to 64
        head = ex.submit(testing.wait_for_gate, gate, 0, started)
        started.wait(30)
        accepted = []
        for _ in range(5):
            try:
                accepted.append(ex.submit_nowait(testing.noop))
            except corral.QueueFull:
                break
            # the manager hands it ahead to the busy worker: out of the queue
            testing.wait_until(lambda: ex._core.pending == 0, 30, message="hand-ahead")
        assert len(accepted) == 2
        stats = ex.statistics()
        assert (stats.pending, stats.running) == (2, 1)
        gate.open()
        assert head.result(30) == 0 and all(f.result(30) is None for f in accepted)


def _grandchild_pid(path: str) -> int:
    with open(path) as f:
        return int(f.read())


@pytest.mark.parametrize("new_session", [False, True], ids=["in-group", "setsid"])
@pytest.mark.parametrize(
    "how", ["shutdown", "max_tasks_per_child", "idle_timeout", "crash"], ids=lambda h: str(h)
)
def test_grandchildren_end_with_their_worker(how: str, new_session: bool, tmp_path: Any) -> None:
    path = str(tmp_path / "pid")
    kwargs: dict[str, Any] = {"max_tasks_per_child": 1} if how == "max_tasks_per_child" else {}
    if how == "idle_timeout":
        kwargs["idle_timeout"] = 0.2
    ex = corral.ProcessPoolExecutor(1, **kwargs)
    try:
        ex.submit(testing.start_grandchild, path, 600, new_session).result(timeout=30)
        pid = _grandchild_pid(path)
        assert psutil.pid_exists(pid)
        if new_session:
            assert os.getpgid(pid) == pid  # it left the worker's group
        if how == "shutdown":
            ex.shutdown(wait=True)
        elif how == "crash":  # a later task on that worker crashes it
            with pytest.raises(corral.WorkerCrashed):
                ex.submit(testing.exit_now, 3).result(timeout=30)
        # before: the grandchild (a `sleep` the task started and left) outlived its worker
        testing.wait_until(lambda: not _alive(pid), 10, message="the grandchild to end")
    finally:
        ex.shutdown(wait=True, kill=True)
        _reap_or_kill(path)


@pytest.mark.parametrize("how", ["cancel", "task_timeout", "shutdown(kill=True)"])
def test_a_killed_worker_takes_what_left_its_group(how: str, tmp_path: Any) -> None:
    """A process the task started in a session of its own (outside the worker's group)
    ends when the pool kills the worker (before, only the group went)."""
    path = str(tmp_path / "pids")
    ex = corral.ProcessPoolExecutor(1, kill_grace=0.5)
    try:
        with testing.Gate() as started:
            run = ex.options(task_timeout=2) if how == "task_timeout" else ex
            fut = run.submit(testing.write_pids_and_hang, path, started, True, True)
            assert started.wait(30)
        with open(path) as f:
            worker, escaped = map(int, f.read().split())
        assert os.getpgid(escaped) == escaped != worker
        if how == "cancel":
            assert fut.cancel()
        elif how == "shutdown(kill=True)":
            ex.shutdown(wait=True, kill=True)
        testing.wait_until(
            lambda: not _alive(worker) and not _alive(escaped),
            testing.slack(15),
            message="the worker and the process that left its group to end",
        )
        if how == "task_timeout":
            assert isinstance(fut.exception(0), corral.TaskTimeout)
    finally:
        ex.shutdown(wait=True, kill=True)
        _reap_or_kill(path)


def _reap_or_kill(path: str) -> None:
    """A failed test must not leave its sleepers (the leak check would then blame the
    next test): kill the `sleep` processes the file names that are still alive (by
    name: a worker's pid may already belong to another process)."""
    try:
        with open(path) as f:
            pids = [int(p) for p in f.read().split()]
    except (OSError, ValueError):
        return
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            process = psutil.Process(pid)
            if process.name() == "sleep":
                process.kill()


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


# ---------------------------------------------------------------- bad input at the call site


async def _coroutine_function() -> int:
    return 1


async def _async_generator() -> Any:
    yield 1


@pytest.mark.parametrize("pool", POOLS)
@pytest.mark.parametrize(
    "fn",
    [_coroutine_function, _async_generator, functools.partial(_coroutine_function)],
    ids=["async def", "async generator", "partial of async def"],
)
def test_an_async_function_is_refused_at_submit(pool: Any, fn: Any) -> None:
    with pool(1) as ex:
        with pytest.raises(TypeError, match="is an async function"):
            ex.submit(fn)
        with pytest.raises(TypeError, match="is an async function"):
            ex.map(fn, [1])
        assert ex.statistics().pending == 0


@pytest.mark.parametrize("pool", POOLS)
def test_task_timeout_zero_is_refused(pool: Any) -> None:
    with pytest.raises(ValueError, match="task_timeout must be > 0"):
        pool(1, task_timeout=0)
    with pool(1) as ex, pytest.raises(ValueError, match="task_timeout must be > 0"):
        ex.options(task_timeout=0)


@pytest.mark.parametrize("pool", POOLS)
def test_map_without_iterables_is_empty(pool: Any) -> None:
    with pool(1) as ex:
        assert list(ex.map(testing.noop)) == []  # as the stdlib's


def test_bad_mp_context_and_initargs_fail_at_the_call() -> None:
    with pytest.raises(TypeError, match="mp_context must be a multiprocessing context"):
        corral.ProcessPoolExecutor(1, mp_context=5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="initargs must be a tuple"):
        corral.ProcessPoolExecutor(1, initializer=testing.noop, initargs=5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"mp_context must be a start method name \(.*'spawn'"):
        corral.ProcessPoolExecutor(1, mp_context="nonsense")


def _generator_function() -> Any:
    yield 1


def test_a_generator_function_gives_its_generator_or_fails_to_pickle() -> None:
    """Documented (docs/failure-modes.md): a thread task's result is the generator
    object; a process task fails with SerializationError, as generators do not pickle."""
    with corral.ThreadPoolExecutor(1) as ex:
        assert list(ex.submit(_generator_function).result(timeout=30)) == [1]
    with corral.ProcessPoolExecutor(1) as ex, pytest.raises(corral.SerializationError):
        ex.submit(_generator_function).result(timeout=30)


def test_an_async_function_is_fine_inside_a_plain_one() -> None:
    with corral.ThreadPoolExecutor(1) as ex:
        assert ex.submit(asyncio.run, _coroutine_function()).result(timeout=30) == 1


# ---------------------------------------------------------------- found by review


class AlwaysEqual:
    """A value whose ``==`` says yes to anything (as ``unittest.mock.ANY``)."""

    def __eq__(self, other: object) -> bool:
        return True

    __hash__ = object.__hash__


def _always_equal(_: int) -> AlwaysEqual:
    return AlwaysEqual()


@pytest.mark.slow
@pytest.mark.parametrize("pool", POOLS)
def test_map_hands_out_values_whatever_their_equality(pool: Any) -> None:
    np = pytest.importorskip("numpy")
    with pool(2) as ex:
        arrays = list(ex.map(np.arange, [3] * 5))  # == gives an array: no truth value
        assert len(arrays) == 5 and all(list(a) == [0, 1, 2] for a in arrays)
        assert len(list(ex.map(_always_equal, range(50)))) == 50  # not cut short


def test_a_retry_after_shutdown_runs_on_an_initialized_thread() -> None:
    seen: list[bool] = []
    state = threading.local()
    attempts = iter(range(10))

    def init() -> None:
        state.ready = True

    def flaky() -> int:
        seen.append(getattr(state, "ready", False))
        if next(attempts) < 2:
            raise ConnectionError("try again")
        return 7

    ex = corral.ThreadPoolExecutor(1, initializer=init, idle_timeout=0.001)
    fut = ex.options(retries=3, retry_on=(ConnectionError,)).submit(flaky)
    ex.shutdown(wait=True)
    assert fut.done()  # shutdown(wait=True) waited for the retries
    assert fut.result() == 7
    assert seen == [True, True, True]  # every run on a thread that ran the initializer


@pytest.mark.slow
def test_a_result_in_shared_memory_survives_the_next_task_killing_its_worker() -> None:
    # found by bench/soak.py: the worker sent a big result (a memfd), ran the next task
    # it already held, which killed it, and the parent could no longer open the memfd
    # (the results are views of the dead workers' segments: they stay valid)
    np = pytest.importorskip("numpy")
    with corral.ProcessPoolExecutor(1) as ex:
        ex.submit(testing.noop).result(timeout=30)
        kept = []
        for i in range(20):
            big = ex.submit(np.full, 1 << 18, i)  # 2 MB: through shared memory
            crash = ex.submit(testing.exit_now, 3)
            kept.append(big.result(timeout=30))
            with pytest.raises(corral.WorkerCrashed):
                crash.result(timeout=30)
        assert [int(a.sum()) for a in kept] == [i << 18 for i in range(20)]
        kept[0][0] = 5  # writable, still


def test_a_retry_due_after_every_thread_left_still_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    # every thread left on its idle_timeout while a retry waited out its backoff, and
    # shutdown came before the backoff ended: the requeued task found no thread, and
    # "shutting down" only woke idle threads, so the future stayed pending forever
    monkeypatch.setattr(corral._options, "RETRY_BACKOFF", 0.5)
    attempts = iter(range(10))

    def flaky() -> int:
        if next(attempts) < 1:
            raise ConnectionError("try again")
        return 7

    ex = corral.ThreadPoolExecutor(2, idle_timeout=0.001)
    fut = ex.options(retries=1, retry_on=(ConnectionError,)).submit(flaky)
    testing.wait_until(lambda: ex.statistics().retrying == 1 and ex.statistics().workers == 0)
    ex.shutdown(wait=True)
    assert fut.result(timeout=30) == 7


def test_shutdown_returns_once_the_last_retry_ran_on_a_pool_of_several_threads() -> None:
    # the threads kept for a retry during shutdown parked without a timeout; once the
    # retry had run, nothing woke the others, and shutdown(wait=True) waited forever
    attempts = iter(range(10))
    release = threading.Event()

    def flaky() -> int:
        if next(attempts) < 2:
            raise ConnectionError("try again")
        return 7

    ex = corral.ThreadPoolExecutor(2, idle_timeout=0.001)
    busy = [ex.submit(release.wait, 30) for _ in range(2)]  # both threads exist
    fut = ex.options(retries=3, retry_on=(ConnectionError,)).submit(flaky)
    release.set()
    closer = threading.Thread(target=ex.shutdown)
    closer.start()
    closer.join(30)
    assert not closer.is_alive(), "shutdown(wait=True) did not return"
    assert fut.result(timeout=1) == 7 and all(f.result(timeout=1) for f in busy)
