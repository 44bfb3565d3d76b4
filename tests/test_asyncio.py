"""asyncio: awaiting futures, cancellation that reaches the worker, async iteration."""

from __future__ import annotations

import asyncio
import gc
import itertools
import logging
import sys
import time
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
        testing.wait_until(lambda: _gone(pid), timeout=1.0, message="the worker to be gone")


async def _await(fut: corral.Future[Any]) -> Any:
    return await fut


def test_wait_for_timeout_kills_a_runaway(run: Callable[[Any], Any]) -> None:
    with corral.ProcessPoolExecutor(1) as ex:
        fut = ex.submit(testing.hang)

        async def main() -> None:
            with pytest.raises((asyncio.TimeoutError, TimeoutError)):
                await asyncio.wait_for(fut, 0.3)

        run(main())
        assert fut.cancelled()
        assert ex.submit(testing.square, 6).result(timeout=30) == 36


def test_run_in_executor_cancellation_reaches_the_work(
    run: Callable[[Any], Any], started: testing.Gate
) -> None:
    with corral.ThreadPoolExecutor(1) as ex:

        async def main() -> str:
            loop = asyncio.get_running_loop()
            waiter = loop.run_in_executor(ex, testing.sleep_until_cancelled, 30.0, started)
            await loop.run_in_executor(None, started.wait, 30)
            waiter.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiter
            return "ok"

        begin = time.monotonic()
        assert run(main()) == "ok"
        ex.shutdown(wait=True)  # returns at once: the task saw corral.cancelled()
        assert time.monotonic() - begin < 10


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


def _spin(seconds: float) -> int:
    end = time.perf_counter() + seconds
    n = 0
    while time.perf_counter() < end:
        n += 1
    return n


def test_the_loop_stays_responsive_while_processes_compute(run: Callable[[Any], Any]) -> None:
    with corral.ProcessPoolExecutor(2) as ex:
        ex.submit(testing.noop).result(timeout=30)

        async def main() -> float:
            gaps = []
            work = [ex.submit(_spin, 0.5) for _ in range(4)]
            last = time.perf_counter()
            while not all(f.done() for f in work):
                await asyncio.sleep(0.01)
                now = time.perf_counter()
                gaps.append(now - last)
                last = now
            for fut in work:
                assert await fut > 0
            return max(gaps)

        assert run(main()) < 0.25  # ticks every 10 ms; CPU work runs in other processes


def test_async_with_shuts_down_without_blocking_the_loop(run: Callable[[Any], Any]) -> None:
    async def main() -> int:
        async with corral.ProcessPoolExecutor(1) as ex:
            fut = ex.submit(testing.square, 7)
        assert fut.done()
        return fut.result()

    assert run(main()) == 49


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
