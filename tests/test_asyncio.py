"""asyncio: awaiting futures, cancellation that reaches the worker, async iteration."""

from __future__ import annotations

import asyncio
import gc
import itertools
import logging
import sys
import threading
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import corral

if sys.version_info < (3, 11):
    from exceptiongroup import BaseExceptionGroup
from corral import testing

LOOPS = ["asyncio"]
try:
    import uvloop

    LOOPS.append("uvloop")
    uvloop.run(asyncio.sleep(0))  # its one-time set-up (a pipe it keeps) is not a leak
except ImportError:  # pragma: no cover - uvloop is optional
    pass


@pytest.fixture(params=LOOPS)
def run(request: pytest.FixtureRequest) -> Iterator[Callable[[Any], Any]]:
    """Runs a coroutine on the loop under test, with warnings turned into errors."""

    complaints: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = complaints.append  # type: ignore[method-assign]
    asyncio_logger = logging.getLogger("asyncio")
    asyncio_logger.addHandler(handler)

    def runner(coro: Any) -> Any:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            if request.param == "uvloop":
                import uvloop

                return uvloop.run(coro)
            return asyncio.run(coro)

    try:
        yield runner
        gc.collect()  # a pending task destroyed late logs "Task was destroyed" here
    finally:
        asyncio_logger.removeHandler(handler)
    assert not complaints, [r.getMessage() for r in complaints]


def _gone(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_cancelling_the_awaiting_task_kills_the_worker(
    run: Callable[[Any], Any], tmp_path: Path, started: testing.Gate
) -> None:
    pidfile = tmp_path / "pid"
    with corral.ProcessPoolExecutor(1) as ex:

        async def main() -> None:
            task = asyncio.ensure_future(
                _await(ex.submit(testing.write_pids_and_hang, str(pidfile), started))
            )
            await asyncio.get_running_loop().run_in_executor(None, started.wait, 30)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

        run(main())
        testing.wait_until(pidfile.exists, timeout=10)
        pid = int(pidfile.read_text().split()[0])
        # it would hang an hour: gone at all is the point (how soon, bench_latency.py)
        testing.wait_until(lambda: _gone(pid), timeout=10, message="the worker to be gone")


async def _await(fut: corral.Future[Any]) -> Any:
    return await fut


@pytest.mark.slow
def test_wait_for_timeout_kills_a_runaway(run: Callable[[Any], Any]) -> None:
    with corral.ProcessPoolExecutor(1) as ex:
        fut = ex.submit(testing.hang)

        async def main() -> None:
            with pytest.raises((asyncio.TimeoutError, TimeoutError)):
                await asyncio.wait_for(fut, 0.3)

        run(main())
        assert fut.cancelled()
        assert ex.submit(testing.square, 6).result(timeout=30) == 36


def test_await_gives_each_outcome_ended_before_or_while_awaited(
    run: Callable[[Any], Any], gate: testing.Gate
) -> None:
    """An awaited future gives its value, raises its exception, and raises asyncio's
    CancelledError once cancelled: whether it ended before the await (no suspension)
    or while the task waited on it (woken from the worker thread, or from the thread
    that cancelled it)."""
    with corral.ThreadPoolExecutor(3) as ex:
        done = [ex.submit(testing.square, 7), ex.submit(testing.fail, "early")]
        cancelled_early = corral.Future[int]()
        cancelled_early.cancel()
        for fut in done:
            fut.exception(timeout=30)

        async def main() -> None:
            assert await done[0] == 49
            with pytest.raises(ValueError, match="early"):
                await done[1]
            with pytest.raises(asyncio.CancelledError):
                await cancelled_early
            later = ex.submit(testing.wait_for_gate, gate, 5)
            failing = ex.submit(testing.fail, "late")
            stopped = ex.submit(testing.sleep_until_cancelled, 600.0)
            waiting = [asyncio.ensure_future(_await(f)) for f in (later, failing, stopped)]
            await asyncio.sleep(0)  # each task now waits on its future
            gate.open()
            threading.Thread(target=stopped.cancel).start()
            outcomes = await asyncio.gather(*waiting, return_exceptions=True)
            assert outcomes[0] == 5
            assert isinstance(outcomes[1], ValueError)
            assert isinstance(outcomes[2], asyncio.CancelledError)
            assert waiting[2].cancelled()

        run(main())


def test_one_future_awaited_from_two_loops(run: Callable[[Any], Any], gate: testing.Gate) -> None:
    """A future belongs to no loop: tasks of two loops, in two threads, await it."""
    with corral.ThreadPoolExecutor(1) as ex:
        fut = ex.submit(testing.wait_for_gate, gate, "both")
        other: list[Any] = []
        thread = threading.Thread(target=lambda: other.append(asyncio.run(_await(fut))))
        thread.start()

        async def main() -> Any:
            asyncio.get_running_loop().call_later(0.05, gate.open)
            return await fut

        assert run(main()) == "both"
        thread.join(30)
        assert other == ["both"]


def test_a_closed_loop_is_not_woken(caplog: pytest.LogCaptureFixture, gate: testing.Gate) -> None:
    """A task left waiting on a future when its loop was closed: the future ends
    without an error logged (there is no loop left to wake)."""
    with corral.ThreadPoolExecutor(1) as ex:
        fut = ex.submit(testing.wait_for_gate, gate, 1)
        loop = asyncio.new_event_loop()
        task = loop.create_task(_await(fut))
        loop.run_until_complete(asyncio.sleep(0.01))
        loop.close()
        with caplog.at_level(logging.DEBUG):
            gate.open()
            assert fut.result(timeout=30) == 1
        assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
        task._log_destroy_pending = False  # type: ignore[attr-defined]  # (left on purpose)


def test_await_makes_no_condition(run: Callable[[Any], Any], gate: testing.Gate) -> None:
    """Awaiting wakes the task through a callback of corral's, not a threading.Condition
    (the cost that made awaiting slower than run_in_executor)."""
    with corral.ThreadPoolExecutor(1) as ex:
        fut = ex.submit(testing.wait_for_gate, gate, 3)

        async def main() -> Any:
            asyncio.get_running_loop().call_later(0.01, gate.open)
            return await fut

        assert run(main()) == 3
        assert "_condition" not in vars(fut)


def test_run_in_executor_cancellation_reaches_the_work(
    run: Callable[[Any], Any], started: testing.Gate
) -> None:
    with corral.ThreadPoolExecutor(1) as ex:

        async def main() -> str:
            loop = asyncio.get_running_loop()
            waiter = loop.run_in_executor(ex, testing.sleep_until_cancelled, 600.0, started)
            await loop.run_in_executor(None, started.wait, 30)
            waiter.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiter
            return "ok"

        assert run(main()) == "ok"
        # returns at once: the task saw corral.cancelled(); had the cancel not reached
        # it, shutdown would wait out its 600 s, far past the test's timeout
        ex.shutdown(wait=True)


def test_async_as_completed_yields_in_completion_order(
    run: Callable[[Any], Any], gate: testing.Gate
) -> None:
    with corral.ThreadPoolExecutor(2) as ex:

        async def main() -> list[str]:
            slow = ex.submit(testing.wait_for_gate, gate, "slow")
            quick = ex.submit(testing.identity, "quick")
            out = []
            async for fut in corral.as_completed([slow, quick], timeout=30):
                out.append(fut.result())
                gate.open()
            return out

        assert run(main()) == ["quick", "slow"]


@pytest.mark.slow
def test_async_map_with_buffersize_over_an_endless_generator(run: Callable[[Any], Any]) -> None:
    produced = []

    def numbers() -> Iterator[int]:
        for i in itertools.count():
            produced.append(i)
            yield i

    with corral.ProcessPoolExecutor(2) as ex:

        async def main() -> list[int]:
            out = []
            async for value in ex.map(testing.square, numbers(), buffersize=8):
                out.append(value)
                if len(out) == 100:
                    break
            return out

        assert run(main()) == [i * i for i in range(100)]
    assert len(produced) <= 100 + 8 + 2


def _spin_until(gate: testing.Gate, started: testing.Gate) -> int:
    """Computes (a busy loop) until ``gate`` opens; returns the rounds it made."""
    started.open()
    n = 0
    while not gate.is_open():
        for _ in range(10_000):
            n += 1
    return n


@pytest.mark.slow
def test_the_loop_stays_responsive_while_processes_compute(run: Callable[[Any], Any]) -> None:
    # The work computes until the loop, ticking every 10 ms, has ticked 20 times while
    # both workers compute: a loop blocked by the work (or by waiting for it) could never
    # end it. No bound on the gaps: the machine may be busy with other processes. The
    # gaps of an idle machine are measured by bench/bench_asyncio.py.
    with (
        corral.ProcessPoolExecutor(2) as ex,
        testing.Gate() as gate,
        testing.Gate() as s1,
        testing.Gate() as s2,
    ):
        ex.submit(testing.noop).result(timeout=30)

        async def main() -> int:
            work = [ex.submit(_spin_until, gate, s) for s in (s1, s2)]
            ticks = 0
            while not (s1.is_open() and s2.is_open()):  # both workers compute from here
                await asyncio.sleep(0.01)
            while ticks < 20:
                await asyncio.sleep(0.01)
                assert not any(f.done() for f in work)
                ticks += 1
            gate.open()
            for fut in work:
                assert await fut > 0
            return ticks

        assert run(main()) == 20


def test_async_with_shuts_down_without_blocking_the_loop(run: Callable[[Any], Any]) -> None:
    async def main() -> int:
        async with corral.ProcessPoolExecutor(1) as ex:
            fut = ex.submit(testing.square, 7)
        assert fut.done()
        return fut.result()

    assert run(main()) == 49


@pytest.mark.slow
def test_async_task_group(run: Callable[[Any], Any], started: testing.Gate) -> None:
    with corral.ProcessPoolExecutor(2) as ex:

        async def ok() -> list[int]:
            async with corral.TaskGroup(ex) as group:
                futs = [group.submit(testing.square, i) for i in range(4)]
            return [f.result() for f in futs]

        async def failing() -> corral.Future[Any]:
            with pytest.raises(BaseExceptionGroup):
                async with corral.TaskGroup(ex) as group:
                    sibling = group.submit(testing.sleep_until_cancelled, 30.0, started)
                    await asyncio.get_running_loop().run_in_executor(None, started.wait, 30)
                    group.submit(testing.fail, "boom")
            return sibling

        assert run(ok()) == [0, 1, 4, 9]
        assert run(failing()).cancelled()
