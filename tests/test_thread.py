"""ThreadPoolExecutor specifics: initializer, names, cancellation of threads, elasticity."""

from __future__ import annotations

import contextvars
import logging
import subprocess
import sys
import textwrap
import threading
import time
from typing import Any

import pytest

import corral
from corral import testing

_init_state = threading.local()


def _init(value: str) -> None:
    _init_state.value = value


def _read_init() -> str:
    return str(getattr(_init_state, "value", "missing"))


def _bad_init() -> None:
    raise ValueError("error in initializer")


def test_initializer_runs_in_each_worker() -> None:
    # CPython: InitializerMixin.test_initializer
    with corral.ThreadPoolExecutor(2, initializer=_init, initargs=("ready",)) as ex:
        assert [f.result() for f in [ex.submit(_read_init) for _ in range(10)]] == ["ready"] * 10


def test_initializer_failure_breaks_the_pool(caplog: pytest.LogCaptureFixture) -> None:
    # CPython: FailingInitializerMixin.test_initializer
    ex = corral.ThreadPoolExecutor(2, initializer=_bad_init)
    with caplog.at_level(logging.CRITICAL, logger="corral"):
        try:
            fut = ex.submit(testing.noop)
        except corral.BrokenExecutor:
            pass
        else:
            with pytest.raises(corral.BrokenExecutor, match="initializer failed"):
                fut.result(timeout=10)
        testing.wait_until(lambda: ex._broken is not None)
        with pytest.raises(concurrent_broken_thread_pool()):
            ex.submit(testing.noop)
    assert "error in initializer" in caplog.text
    ex.shutdown()


def concurrent_broken_thread_pool() -> type[BaseException]:
    import concurrent.futures.thread

    return concurrent.futures.thread.BrokenThreadPool


def test_bad_initializer_argument() -> None:
    with pytest.raises(TypeError, match="initializer must be a callable"):
        corral.ThreadPoolExecutor(1, initializer=42)  # type: ignore[arg-type]


def test_thread_names_use_the_prefix(gate: testing.Gate) -> None:
    with corral.ThreadPoolExecutor(3, thread_name_prefix="SpecialPool") as ex:
        futs = [ex.submit(testing.wait_for_gate, gate) for _ in range(3)]
        testing.wait_until(lambda: ex.statistics().running == 3)
        names = [t.name for t in threading.enumerate() if t.name.startswith("SpecialPool_")]
        assert len(names) == 3
        gate.open()
        corral.wait(futs)


def test_running_task_stops_soon_after_cancel(started: testing.Gate) -> None:
    # The task has no other way out than corral.cancelled(): that it stops at all proves
    # the cancel reached it. How soon (a few ms when idle) is bench/bench_latency.py's
    # figure; the bound here only has to hold while other work keeps the cores busy.
    stopped = threading.Event()

    def task() -> None:
        started.open()
        while not corral.cancelled():
            time.sleep(0.001)
        stopped.set()

    with corral.ThreadPoolExecutor(1) as ex:
        fut = ex.submit(task)
        assert started.wait(10)
        fut.cancel()
        assert stopped.wait(testing.slack(2.0)), "the task did not stop after cancel()"


def test_check_cancelled_raises_in_the_task(started: testing.Gate) -> None:
    outcome: list[BaseException] = []

    def task() -> None:
        started.open()
        try:
            while True:
                corral.check_cancelled()
                time.sleep(0.001)
        except BaseException as exc:
            outcome.append(exc)
            raise

    with corral.ThreadPoolExecutor(1) as ex:
        fut = ex.submit(task)
        assert started.wait(10)
        fut.cancel()
        testing.wait_until(lambda: outcome)
    assert isinstance(outcome[0], corral.CancelledError)
    # outside a task both are inert
    assert corral.cancelled() is False
    corral.check_cancelled()


def test_check_cancelled_raises_task_timeout_on_overrun() -> None:
    def task() -> None:
        while True:
            corral.check_cancelled()
            time.sleep(0.001)

    with corral.ThreadPoolExecutor(1) as ex, pytest.raises(corral.TaskTimeout):
        ex.options(task_timeout=0.05).submit(task).result(timeout=10)


def test_a_task_ignoring_cancel_does_not_starve_the_pool(gate: testing.Gate) -> None:
    with corral.ThreadPoolExecutor(1) as ex:
        stubborn = ex.submit(testing.wait_for_gate, gate)  # never looks at cancelled()
        testing.wait_until(stubborn.running)
        assert stubborn.cancel()
        # the one slot is free again: new work runs while the stubborn task goes on
        assert ex.submit(testing.square, 4).result(timeout=10) == 16
        assert ex.statistics().workers == 1
        gate.open()  # let the abandoned thread finish; shutdown waits for it


def test_timed_out_task_frees_its_slot(gate: testing.Gate) -> None:
    with corral.ThreadPoolExecutor(1, task_timeout=0.05) as ex:
        slow = ex.submit(testing.wait_for_gate, gate)
        with pytest.raises(corral.TaskTimeout):
            slow.result(timeout=10)
        assert ex.options(task_timeout=None).submit(testing.square, 3).result(timeout=10) == 9
        gate.open()


def test_elastic_workers_grow_and_shrink(gate: testing.Gate) -> None:
    with corral.ThreadPoolExecutor(4, min_workers=1, idle_timeout=0.05) as ex:
        assert ex.statistics().workers == 1
        futs = [ex.submit(testing.wait_for_gate, gate) for _ in range(4)]
        testing.wait_until(lambda: ex.statistics().running == 4)
        assert ex.statistics().workers == 4
        gate.open()
        corral.wait(futs)
        testing.wait_until(lambda: ex.statistics().workers == 1, timeout=5)


def test_min_workers_above_max_is_rejected() -> None:
    with pytest.raises(ValueError, match="min_workers"):
        corral.ThreadPoolExecutor(2, min_workers=3)


def test_n_long_tasks_on_n_workers_all_run_at_once(gate: testing.Gate) -> None:
    with corral.ThreadPoolExecutor(5) as ex:
        futs = [ex.submit(testing.wait_for_gate, gate) for _ in range(5)]
        testing.wait_until(lambda: all(f.running() for f in futs))
        gate.open()


def test_caller_runs_never_exceeds_max_workers() -> None:
    lock = threading.Lock()
    active = [0, 0]  # now, most seen

    def task() -> None:
        with lock:
            active[0] += 1
            active[1] = max(active[1], active[0])
        time.sleep(0.0005)
        with lock:
            active[0] -= 1

    with corral.ThreadPoolExecutor(1) as ex:

        def client() -> None:
            for _ in range(100):
                ex.submit(task).result()

        clients = [threading.Thread(target=client) for _ in range(3)]
        for c in clients:
            c.start()
        for c in clients:
            c.join(30)
    assert active[1] == 1


def test_caller_runs_in_a_fresh_context() -> None:
    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")
    var.set("caller")
    with corral.ThreadPoolExecutor(1) as ex:
        for _ in range(20):
            assert ex.submit(var.get).result() == "unset"


def test_base_exceptions_in_a_task_go_to_the_future() -> None:
    def interrupt() -> None:
        raise KeyboardInterrupt

    with corral.ThreadPoolExecutor(1) as ex:
        fut = ex.submit(interrupt)
        assert isinstance(fut.exception(timeout=10), KeyboardInterrupt)
        assert ex.submit(testing.square, 2).result() == 4


def test_exit_runs_queued_work_of_a_pool_left_open(tmp_path: Any) -> None:
    out = tmp_path / "out.txt"
    script = textwrap.dedent(
        f"""
        import time, corral
        def write(i):
            time.sleep(0.01)
            with open({str(out)!r}, "a") as f:
                f.write(f"{{i}}\\n")
        ex = corral.ThreadPoolExecutor(2)
        for i in range(10):
            ex.submit(write, i)
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert sorted(int(x) for x in out.read_text().split()) == list(range(10))


def test_future_is_generic_and_awaitable() -> None:
    fut: corral.Future[int] = corral.Future()
    assert corral.Future[int] is not None
    fut.set_result(3)

    import asyncio

    async def main() -> int:
        return await fut

    assert asyncio.run(main()) == 3
    # asyncio.wrap_future accepts it
    assert isinstance(asyncio.Future, type)


def test_user_made_running_future_cannot_be_cancelled() -> None:
    # a future that no corral executor owns keeps the stdlib's rule
    fut: corral.Future[int] = corral.Future()
    assert fut.set_running_or_notify_cancel()
    assert not fut.cancel()
    fut.set_result(1)
    assert fut.result() == 1


def test_shutdown_cancel_futures_cancels_tasks_waiting_to_retry() -> None:
    ex = corral.ThreadPoolExecutor(1)
    fut = ex.options(retries=50, retry_on=ValueError).submit(testing.fail)
    testing.wait_until(lambda: ex.statistics().retried >= 1)
    ex.shutdown(wait=True, cancel_futures=True)
    assert fut.cancelled()


def test_caller_with_an_event_loop_does_not_run_the_task_itself() -> None:
    import asyncio

    async def inner() -> int:
        return 5

    async def outer(ex: corral.ThreadPoolExecutor) -> int:
        # asyncio.run() cannot run in a thread whose loop is running: a worker runs it
        return ex.submit(asyncio.run, inner()).result()

    with corral.ThreadPoolExecutor(1) as ex:
        assert asyncio.run(outer(ex)) == 5


def test_queued_tasks_put_back_keep_their_order(gate: testing.Gate) -> None:
    ex = corral.ThreadPoolExecutor(1)
    try:
        blocker = ex.submit(testing.wait_for_gate, gate)
        testing.wait_until(blocker.running)
        futs = [ex.options(priority=p).submit(testing.noop) for p in (0, 0, 0, 1)]
        with ex._core.lock:
            taken = [ex._core.pop_locked() for _ in range(4)]  # as a process manager hands over
            for task in reversed(taken):  # ... and gets them back one by one
                ex._core.unstart_locked(task)
            order = [ex._core.pop_locked() for _ in range(4)]
            for task in order:
                ex._core.unstart_locked(task)
        assert order == taken
        assert [t.fut for t in taken] == [futs[3], futs[0], futs[1], futs[2]]
    finally:
        gate.open()
        ex.shutdown(wait=True)


def test_cancelling_a_task_its_caller_runs_frees_the_slot_for_the_queue() -> None:
    main = threading.current_thread()
    outcome: dict[str, bool] = {}
    with corral.ThreadPoolExecutor(1) as ex:
        holder: list[corral.Future[Any]] = []

        def first() -> None:
            if threading.current_thread() is not main:
                return  # a worker got it: this run tells nothing
            queued = ex.submit(testing.noop)  # the one slot is taken by the caller
            holder[0].cancel()  # the slot is free again: a worker must take the queue
            outcome["ran"] = bool(corral.wait([queued], timeout=10).done)

        ex.submit(testing.noop).result(timeout=10)  # the worker is up and parked
        for _ in range(20):  # until the caller (not the woken worker) gets to run it
            holder[:] = [fut := ex.submit(first)]
            try:
                fut.result()  # runs `first` here, in the caller, when the slot is free
            except corral.CancelledError:
                pass
            if outcome:
                break
    assert outcome.get("ran", True)


def test_closing_a_map_while_its_feeder_submits_lets_nothing_complete(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """close() while the feeder thread is between submitting a unit and recording it:
    that unit may already run, and must still end cancelled, not completed (a loaded
    machine once left the feeder there long enough for the unit to finish)."""
    from corral._map import MapIterator

    submitted, release = threading.Event(), threading.Event()
    real_append = MapIterator._append

    def slow_append(self: MapIterator[Any], fut: Any, count: int) -> bool:
        if threading.current_thread().name == "corral-map-feeder":
            submitted.set()
            assert release.wait(30)
        return real_append(self, fut, count)

    monkeypatch.setattr(MapIterator, "_append", slow_append)
    with testing.Gate() as gate, corral.ThreadPoolExecutor(1) as ex:
        results = ex.map(testing.wait_for_gate, [gate] * 3)
        assert submitted.wait(30)  # the first unit is submitted (it may run), not recorded
        closer = threading.Thread(target=results.close, name="test-closer")
        closer.start()
        closer.join(0.2)
        assert closer.is_alive(), "close() returned while the feeder still held a unit"
        release.set()
        closer.join(30)
        assert not closer.is_alive()
        gate.open()
    stats = ex.statistics()
    assert stats.completed == 0, stats
