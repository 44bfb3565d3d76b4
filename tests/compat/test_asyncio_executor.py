"""asyncio's executor hooks, as web frameworks and async apps use them.

``loop.set_default_executor(ThreadPoolExecutor(...))`` then ``run_in_executor(None, fn)``
and ``asyncio.to_thread(fn)``; and asyncio's own default executor, which it creates
through ``concurrent.futures.ThreadPoolExecutor`` (looked up at call time), so with
corral installed it is corral's.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import threading

from tests.compat import workers
from tests.compat.conftest import Impl


def _thread_name_and_square(x: int) -> tuple[str, int]:
    return threading.current_thread().name, x * x


def test_set_default_executor(impl: Impl) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        pool = impl.futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix="compat-default")
        loop.set_default_executor(pool)
        name, value = await asyncio.wait_for(
            loop.run_in_executor(None, _thread_name_and_square, 3), 30
        )
        assert value == 9
        assert name.startswith("compat-default"), name
        name, value = await asyncio.wait_for(asyncio.to_thread(_thread_name_and_square, 4), 30)
        assert value == 16
        assert name.startswith("compat-default"), name
        # to_thread carries the caller's context variables
        token = workers.REQUEST_ID.set("req-7")
        try:
            _, rid = await asyncio.wait_for(asyncio.to_thread(workers.read_request_id, 1), 30)
        finally:
            workers.REQUEST_ID.reset(token)
        assert rid == "req-7"
        results = await asyncio.wait_for(
            asyncio.gather(*(loop.run_in_executor(None, workers.square, i) for i in range(10))),
            30,
        )
        assert results == [i * i for i in range(10)]

    asyncio.run(main())  # shuts the default executor down


def test_run_in_explicit_executor(impl: Impl) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        with impl.futures.ThreadPoolExecutor(max_workers=2) as pool:
            value = await asyncio.wait_for(
                loop.run_in_executor(pool, functools.partial(workers.add, 2, y=3)), 30
            )
        assert value == 5

    asyncio.run(main())


def test_asyncio_own_default_executor(impl: Impl) -> None:
    made: list[object] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        _, value = await asyncio.wait_for(
            loop.run_in_executor(None, _thread_name_and_square, 5), 30
        )
        assert value == 25
        made.append(loop._default_executor)  # type: ignore[attr-defined]
        value = await asyncio.wait_for(
            asyncio.to_thread(contextvars.copy_context().run, workers.square, 6), 30
        )
        assert value == 36

    with impl.installed():
        asyncio.run(main())
    assert len(made) == 1
    assert type(made[0]) is impl.futures.ThreadPoolExecutor
