"""corral as a drop-in for concurrent.futures: regression tests of the ways real programs
use the stdlib (the objects they pass to initializers, subclasses that override submit,
isinstance checks, corral installed into concurrent.futures, scripts piped to python,
pools dropped without shutdown, the stdlib's names, and Python 3.14's methods)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import gc
import multiprocessing
import os
import subprocess
import sys
import textwrap
import threading
import weakref
from typing import Any

import psutil
import pytest

import corral
from corral import testing
from tests import dropin_helpers as helpers

METHODS = [None, "fork", "spawn", "forkserver"]


def run_script(code: str, *args: str, stdin: str | None = None, timeout: float = 60) -> str:
    """Runs a Python program in a new interpreter; returns its stdout (fails on rc != 0)."""
    done = subprocess.run(
        [sys.executable, *args] + ([] if stdin is not None else ["-c", code]),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


# ---------------------------------------------------------------- 1. initargs


@pytest.mark.parametrize("method", METHODS)
def test_multiprocessing_objects_reach_the_initializer(method: str | None) -> None:
    ctx: Any = multiprocessing.get_context(method) if method else multiprocessing
    objects = (
        ctx.Lock(),
        ctx.RLock(),
        ctx.Queue(),
        ctx.Value("i", 0),
        ctx.Array("i", 4),
        ctx.Event(),
        ctx.Semaphore(2),
    )
    with corral.ProcessPoolExecutor(
        2, mp_context=method, initializer=helpers.keep, initargs=objects
    ) as ex:
        pids = list(ex.map(helpers.use_mp_objects, range(4)))
    assert all(isinstance(p, int) for p in pids)
    queue, value, array, event = objects[2], objects[3], objects[4], objects[5]
    assert sorted(queue.get(timeout=10) for _ in range(4)) == [0, 1, 2, 3]
    assert value.value == 4
    assert list(array) == [0, 10, 20, 30]
    assert event.is_set()
    queue.close()
    queue.join_thread()
    del ex, objects, queue
    gc.collect()  # the pool's state, with the queue's pipe in the initargs, is a cycle


@pytest.mark.slow
def test_an_initializer_in_main_shares_globals_with_the_tasks() -> None:
    script = textwrap.dedent(
        """
        import corral
        STATE = None
        def init(value):
            global STATE
            STATE = value
        def read(_):
            return STATE
        if __name__ == "__main__":
            for method in ("fork", "spawn", "forkserver"):
                with corral.ProcessPoolExecutor(
                    1, mp_context=method, initializer=init, initargs=("set",)
                ) as ex:
                    print(method, ex.submit(read, 0).result())
        """
    )
    path = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"corral_init_{os.getpid()}.py")
    with open(path, "w") as f:
        f.write(script)
    try:
        done = subprocess.run([sys.executable, path], capture_output=True, text=True, timeout=60)
    finally:
        os.unlink(path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["fork", "set", "spawn", "set", "forkserver", "set"]


# ---------------------------------------------------------------- 2. map goes through submit


class CountingPool(corral.ThreadPoolExecutor):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.seen: list[Any] = []

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
        self.seen.append(args)
        return super().submit(fn, *args, **kwargs)


class CountingProcessPool(corral.ProcessPoolExecutor):
    seen: list[Any]

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
        self.__dict__.setdefault("seen", []).append(args)
        return super().submit(fn, *args, **kwargs)


def test_map_calls_an_overridden_submit_for_every_item() -> None:
    with CountingPool(2) as ex:
        assert list(ex.map(testing.square, range(5))) == [0, 1, 4, 9, 16]
        assert ex.seen == [(i,) for i in range(5)]
    with CountingProcessPool(2) as pex:
        assert list(pex.map(testing.add, range(50), range(50))) == [2 * i for i in range(50)]
        assert pex.seen == [(i, i) for i in range(50)]


def test_map_calls_a_wrapped_submit_in_the_calling_thread() -> None:
    # dask's ContextAwareThreadPoolExecutor pattern: carry the caller's context
    class ContextPool(corral.ThreadPoolExecutor):
        def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
            return super().submit(contextvars.copy_context().run, fn, *args, **kwargs)

    token = helpers.REQUEST.set("caller")
    try:
        with ContextPool(2) as ex:
            assert list(ex.map(helpers.request_id, range(3))) == ["caller"] * 3
    finally:
        helpers.REQUEST.reset(token)
    with corral.ThreadPoolExecutor(2) as ex:
        calls = []
        original = ex.submit

        def wrapper(fn: Any, /, *args: Any, **kwargs: Any) -> Any:
            calls.append(threading.current_thread())
            return original(fn, *args, **kwargs)

        ex.submit = wrapper  # type: ignore[method-assign]
        assert list(ex.map(testing.square, range(4))) == [0, 1, 4, 9]
        assert calls == [threading.current_thread()] * 4


def test_an_error_of_an_overridden_submit_is_raised_by_map() -> None:
    class Refusing(corral.ThreadPoolExecutor):
        def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
            raise RuntimeError("refused")

    with Refusing(1) as ex, pytest.raises(RuntimeError, match="refused"):
        ex.map(testing.square, range(3))


# ---------------------------------------------------------------- 3. isinstance


def test_corral_executors_are_instances_of_the_stdlib_ones() -> None:
    with corral.ThreadPoolExecutor(1) as tex, corral.ProcessPoolExecutor(1) as pex:
        assert isinstance(tex, concurrent.futures.ThreadPoolExecutor)
        assert isinstance(pex, concurrent.futures.ProcessPoolExecutor)
        assert isinstance(tex, concurrent.futures.Executor)


def test_asyncio_takes_a_corral_default_executor() -> None:
    pool = corral.ThreadPoolExecutor(2, thread_name_prefix="loop")

    async def main() -> tuple[int, str]:
        loop = asyncio.get_running_loop()
        loop.set_default_executor(pool)
        value = await loop.run_in_executor(None, testing.square, 7)
        name = await asyncio.to_thread(lambda: threading.current_thread().name)
        return value, name

    value, name = asyncio.run(main())  # its end shuts the default executor down
    assert value == 49
    assert name.startswith("loop")
    assert pool._core.closed


# ---------------------------------------------------------------- 4. installed into the stdlib


def test_installed_into_concurrent_futures_corral_still_works() -> None:
    stdlib_wait = concurrent.futures.wait
    with corral.install(future=True):
        assert concurrent.futures.ThreadPoolExecutor is corral.ThreadPoolExecutor
        with concurrent.futures.ThreadPoolExecutor(2) as ex:
            futs = [ex.submit(testing.square, i) for i in range(4)]
            done, _ = concurrent.futures.wait(futs)  # corral.wait, no recursion
            assert len(done) == 4
            assert sorted(f.result() for f in concurrent.futures.as_completed(futs)) == [
                0,
                1,
                4,
                9,
            ]
            assert corral.wait(futs).done == set(futs)
    assert concurrent.futures.wait is stdlib_wait
    assert concurrent.futures.ThreadPoolExecutor is not corral.ThreadPoolExecutor


# ---------------------------------------------------------------- 5. scripts from stdin and -c

POOL_SCRIPT = textwrap.dedent(
    """
    import corral
    def double(x):
        return 2 * x
    with corral.ProcessPoolExecutor(2) as ex:
        print(sum(ex.map(double, range(10))), ex._mp_context.get_start_method())
    """
)


def test_a_script_piped_to_python_runs_on_the_default_pool() -> None:
    assert run_script("", "-", stdin=POOL_SCRIPT).split() == ["90", "fork"]


@pytest.mark.slow
def test_a_python_c_script_runs_on_the_default_pool() -> None:
    assert run_script(POOL_SCRIPT).split()[0] == "90"


# ---------------------------------------------------------------- 6. a dropped pool


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["ThreadPoolExecutor", "ProcessPoolExecutor"])
def test_a_dropped_pool_is_collected_and_its_work_finishes(kind: str) -> None:
    out = run_script(
        textwrap.dedent(
            f"""
            import gc, threading, weakref, psutil, corral
            from corral import testing
            def main():
                ex = corral.{kind}(2)
                alive = weakref.ref(ex)
                fut = ex.submit(testing.square, 3)
                results = ex.map(testing.square, range(10))
                del ex
                print(alive() is None)  # no gc needed: nothing inside holds it
                print(fut.result(), list(results))
                testing.wait_until(
                    lambda: not [t for t in threading.enumerate()
                                 if t.name.startswith(("ThreadPoolExecutor-", "corral-process"))]
                    and not [p for p in psutil.Process().children()
                             if p.name() == "corral-worker"],
                    10,
                )
                print("wound down")
            main()
            """
        )
    )
    assert out.split("\n")[:3] == ["True", "9 [0, 1, 4, 9, 16, 25, 36, 49, 64, 81]", "wound down"]


def test_a_finished_future_keeps_no_reference_to_its_call() -> None:
    class Payload:
        def method(self) -> int:
            return 1

    with corral.ThreadPoolExecutor(1) as ex:
        payload = Payload()
        gone = weakref.ref(payload)
        fut = ex.submit(payload.method)
        del payload
        assert fut.result(timeout=10) == 1
        testing.wait_until(lambda: gone() is None, 10)  # no gc: refcounting alone
        assert fut._task is None and fut._stop_hook is None


@pytest.mark.slow
def test_map_and_as_completed_keep_no_yielded_result() -> None:
    for ex in (corral.ThreadPoolExecutor(2), corral.ProcessPoolExecutor(2)):
        with ex:
            for obj in ex.map(helpers.make_object, range(20)):
                ref = weakref.ref(obj)
                del obj
                gc.collect()
                assert ref() is None
        futs = [concurrent.futures.Future() for _ in range(3)]
        for f in futs:
            f.set_result(1)
        del f
        for fut in corral.as_completed(futs):
            futs.remove(fut)
            ref = weakref.ref(fut)
            del fut
            gc.collect()
            assert ref() is None


# ---------------------------------------------------------------- 7. names


def test_the_stdlib_names_and_documented_errors_are_exported() -> None:
    assert issubclass(corral.BrokenProcessPool, concurrent.futures.process.BrokenProcessPool)
    assert issubclass(corral.BrokenThreadPool, concurrent.futures.thread.BrokenThreadPool)
    assert issubclass(corral.BrokenProcessPool, corral.BrokenExecutor)
    assert corral.InvalidStateError is concurrent.futures.InvalidStateError
    assert corral.TimeoutError is concurrent.futures.TimeoutError
    assert corral.CancelledError is concurrent.futures.CancelledError
    for name in ("SerializationError", "RemoteError"):
        assert issubclass(getattr(corral, name), corral.CorralError)
    assert issubclass(corral.WorkerTraceback, Exception)
    if sys.version_info >= (3, 14):  # pragma: no cover - not installable here yet
        assert corral.InterpreterPoolExecutor is concurrent.futures.InterpreterPoolExecutor
    with corral.ProcessPoolExecutor(1) as ex:
        with pytest.raises(ValueError) as info:
            ex.submit(testing.fail, "x").result(timeout=30)
        cause = info.value.__cause__
        assert isinstance(cause, corral.WorkerTraceback)
        assert "fail" in cause.tb


# ---------------------------------------------------------------- 8. thread pool details


def test_the_thread_set_a_caller_holds_does_not_change_under_it() -> None:
    ex = corral.ThreadPoolExecutor(4)
    results = ex.map(testing.square, range(-5, 5))
    threads = ex._threads
    snapshot = set(threads)
    ex.shutdown(wait=True)
    assert threads == snapshot  # CPython's test_del_shutdown iterates it while they end
    assert list(results) == [x * x for x in range(-5, 5)]


def test_submit_after_interpreter_exit_says_so_as_the_stdlib() -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                """
                import atexit, corral
                @atexit.register
                def late():
                    try:
                        pool.submit(id, None)
                    except RuntimeError as exc:
                        print(exc)
                pool = corral.ThreadPoolExecutor(2)
                """
            ),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.stdout.strip() == "cannot schedule new futures after interpreter shutdown"


# ---------------------------------------------------------------- Python 3.14's methods


@pytest.mark.parametrize("how", ["terminate_workers", "kill_workers"])
def test_terminate_and_kill_workers(how: str, started: testing.Gate) -> None:
    ex = corral.ProcessPoolExecutor(1)
    running = ex.submit(testing.hang, started)
    queued = ex.submit(testing.square, 2)
    started.wait(30)
    pids = set(ex._processes)
    getattr(ex, how)()
    assert queued.cancelled()
    with pytest.raises(corral.BrokenProcessPool, match=how):
        running.result(timeout=10)
    assert not any(psutil.pid_exists(pid) for pid in pids)
    with pytest.raises(RuntimeError):
        ex.submit(testing.square, 1)
    assert ex.statistics().failed == 1


def test_initargs_given_as_a_generator_are_read_once() -> None:
    # a thread lock can only be inherited: the default start method falls back to fork,
    # which packed the initargs a second time (a generator was empty by then)
    lock = threading.Lock()
    with corral.ProcessPoolExecutor(
        1, initializer=helpers.keep, initargs=(x for x in [lock, 1])
    ) as ex:
        assert ex.submit(helpers.kept_count).result(timeout=30) == 2
