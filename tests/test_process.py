"""ProcessPoolExecutor specifics: the crash matrix, kills, retries, recycling, IPC.

Every test runs under the autouse leak check (conftest.no_leaks): no worker process,
thread, pipe or shared-memory segment may outlive it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import pytest

import corral
from corral import RemoteError, SerializationError, WorkerTraceback, testing

if sys.version_info < (3, 11):  # pragma: no cover
    from exceptiongroup import ExceptionGroup


@pytest.fixture
def pool() -> Iterator[corral.ProcessPoolExecutor]:
    ex = corral.ProcessPoolExecutor(2)
    yield ex
    ex.shutdown(wait=True, kill=True)


def _read_pids(path: Path) -> list[int]:
    testing.wait_until(path.exists, timeout=30, message=f"{path} to be written")
    return [int(x) for x in path.read_text().split()]


def _kill_from_outside(ex: corral.ProcessPoolExecutor, tmp: Path) -> corral.Future[Any]:
    pidfile = tmp / "pid"
    fut = ex.submit(testing.write_pids_and_hang, str(pidfile))
    os.kill(_read_pids(pidfile)[0], signal.SIGKILL)
    return fut


# ------------------------------------------------------------------ the crash matrix
#
# row: (name, how to make the failing future, the error class, what its text says)

CRASH_MATRIX: list[tuple[str, Callable[[Any, Path], Any], type[BaseException], str]] = [
    (
        "segfault in the task",
        lambda ex, _: ex.submit(testing.segfault),
        corral.WorkerCrashed,
        "SIGSEGV",
    ),
    (
        "os._exit in the task",
        lambda ex, _: ex.submit(testing.exit_now, 3),
        corral.WorkerCrashed,
        "code 3",
    ),
    ("SIGKILL from outside", _kill_from_outside, corral.WorkerCrashed, "SIGKILL"),
    (
        "argument fails to pickle",
        lambda ex, _: ex.submit(testing.identity, testing.FailsToPickle()),
        SerializationError,
        "argument 0 (FailsToPickle) could not be pickled",
    ),
    (
        "argument fails to unpickle in the worker",
        lambda ex, _: ex.submit(testing.identity, testing.FailsToUnpickle()),
        SerializationError,
        "could not be unpickled in the worker",
    ),
    (
        "result fails to pickle",
        lambda ex, _: ex.submit(testing.return_unpicklable),
        SerializationError,
        "result (FailsToPickle) could not be pickled",
    ),
    (
        "result fails to unpickle in the parent",
        lambda ex, _: ex.submit(testing.return_fails_to_unpickle),
        SerializationError,
        "could not be unpickled in the parent",
    ),
    (
        "exception class that won't unpickle",
        lambda ex, _: ex.submit(testing.raise_unpicklable_error),
        RemoteError,
        "UnpicklableError: a-b",
    ),
    (
        "hang stopped by task_timeout",
        lambda ex, _: ex.options(task_timeout=0.2).submit(testing.hang),
        corral.TaskTimeout,
        "task_timeout of 0.2s",
    ),
]


@pytest.mark.parametrize(
    ("make_failure", "error", "text"),
    [row[1:] for row in CRASH_MATRIX],
    ids=[row[0] for row in CRASH_MATRIX],
)
def test_crash_matrix(
    pool: corral.ProcessPoolExecutor,
    tmp_path: Path,
    make_failure: Callable[[Any, Path], Any],
    error: type[BaseException],
    text: str,
) -> None:
    pool.submit(testing.noop).result(timeout=30)  # workers are up
    fut = make_failure(pool, tmp_path)
    with pytest.raises(error, match=text.replace("(", r"\(").replace(")", r"\)")):
        fut.result(timeout=30)
    # the pool carries on
    assert pool.submit(testing.square, 9).result(timeout=30) == 81
    assert list(pool.map(testing.square, range(5))) == [0, 1, 4, 9, 16]
    assert pool.statistics().failed >= 1


def test_worker_crashed_names_the_worker(pool: corral.ProcessPoolExecutor) -> None:
    fut = pool.submit(testing.segfault)
    exc = fut.exception(timeout=30)
    assert isinstance(exc, corral.WorkerCrashed)
    assert exc.signal == "SIGSEGV" and exc.exitcode == -signal.SIGSEGV
    assert exc.pid and str(exc.pid) in str(exc)
    assert "native code" in str(exc) and "retries=" in str(exc)
    assert pool.statistics().crashed == 1


def test_a_crash_fails_only_its_own_task(tmp_path: Path) -> None:
    with corral.ProcessPoolExecutor(2) as ex:
        ok = [ex.submit(testing.square, i) for i in range(50)]
        bad = ex.submit(testing.exit_now, 7)
        more = [ex.submit(testing.square, i) for i in range(50)]
        assert isinstance(bad.exception(timeout=30), corral.WorkerCrashed)
        assert [f.result(timeout=30) for f in ok + more] == [i * i for i in range(50)] * 2


def test_unpicklable_function_fails_that_future_only(pool: corral.ProcessPoolExecutor) -> None:
    lock = threading.Lock()
    fut = pool.submit(lambda: lock)
    with pytest.raises(SerializationError, match="could not be pickled"):
        fut.result(timeout=10)
    assert pool.submit(testing.square, 2).result(timeout=30) == 4


# ------------------------------------------------------------------ kill on cancel / timeout


def test_cancel_kills_the_worker_and_its_grandchildren(
    pool: corral.ProcessPoolExecutor, tmp_path: Path, started: testing.Gate
) -> None:
    pidfile = tmp_path / "pids"
    fut = pool.submit(testing.write_pids_and_hang, str(pidfile), started, True)
    assert started.wait(30)
    worker, grandchild = _read_pids(pidfile)
    # cancel() resolves the future itself, without waiting for the kill; the worker and
    # the grandchild (which would sleep an hour and 600 s) must then go. How fast each
    # happens on an idle machine is bench/bench_latency.py's figure, not this test's.
    assert fut.cancel()
    assert fut.cancelled()
    testing.wait_until(
        lambda: not any(_alive(p) for p in (worker, grandchild)),
        timeout=10,
        message="the worker and its grandchild to be gone",
    )
    assert pool.submit(testing.square, 3).result(timeout=30) == 9


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_task_timeout_kills_and_resolves_promptly(pool: corral.ProcessPoolExecutor) -> None:
    pool.submit(testing.noop).result(timeout=30)
    begin = time.monotonic()
    fut = pool.options(task_timeout=0.3).submit(testing.hang)
    with pytest.raises(corral.TaskTimeout):
        fut.result(timeout=30)
    # promptly, by a bound that holds on a busy machine (a timer seconds late breaks it);
    # the figure of an idle machine (a few ms) is bench_latency.py's
    late = time.monotonic() - begin - 0.3
    assert late < testing.slack(2.0), f"resolved {late:.3f}s after the deadline"
    assert pool.statistics().timed_out == 1


def test_cancel_of_a_task_not_yet_started_kills_nothing(gate: testing.Gate) -> None:
    with corral.ProcessPoolExecutor(1) as ex:
        pids = {ex.submit(testing.pid).result(timeout=30) for _ in range(50)}  # warm: prefetch
        blocker = ex.submit(testing.wait_for_gate, gate, "done")
        behind = [ex.submit(testing.pid) for _ in range(5)]
        for fut in behind:
            fut.cancel()
        gate.open()
        assert blocker.result(timeout=30) == "done"
        assert ex.submit(testing.pid).result(timeout=30) in pids  # same worker: nothing killed
        assert ex.statistics().crashed == 0


def _revokes_held_until(gate: testing.Gate, started: testing.Gate) -> bool:
    """A task during which its worker cannot read a "revoke" (the signal is blocked)."""
    from corral._backends.process.worker import REVOKE_SIGNAL

    signal.pthread_sigmask(signal.SIG_BLOCK, {REVOKE_SIGNAL})
    try:
        started.open()
        return gate.wait(60)
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {REVOKE_SIGNAL})


def test_a_cancelled_task_lends_its_arguments_until_its_worker_dropped_it(
    gate: testing.Gate, started: testing.Gate
) -> None:
    """Until the worker has read the revoke it may start the task and read its
    arguments: their segments must not carry another task's arguments by then."""
    with corral.ProcessPoolExecutor(1) as ex:
        for _ in range(50):  # warm: the pool hands tasks ahead to a busy worker
            ex.submit(testing.pid).result(timeout=30)
        blocker = ex.submit(_revokes_held_until, gate, started)
        assert started.wait(30)
        behind = ex.submit(np.sum, np.ones(1 << 18))  # 2 MB: through a segment
        procs = ex._backend._procs
        testing.wait_until(lambda: any(len(p.inflight) == 2 for p in procs.values()), timeout=30)
        segments = ex._backend.segments
        assert segments is not None and segments.lending()
        assert behind.cancel()
        assert segments.lending()  # the worker has not read the revoke: still lent
        gate.open()
        assert blocker.result(timeout=30) is True
        testing.wait_until(lambda: not segments.lending(), timeout=30)  # dropped there
        assert ex.statistics().crashed == 0


def test_no_head_of_line_blocking_behind_a_long_task(gate: testing.Gate) -> None:
    with corral.ProcessPoolExecutor(2) as ex:
        list(ex.map(testing.square, range(300)))  # tiny tasks: the pool starts prefetching
        long = ex.submit(testing.wait_for_gate, gate)
        quick = [ex.submit(testing.square, i) for i in range(300)]
        # all quick tasks finish while the long one still runs
        done = corral.wait(quick, timeout=20)
        assert not done.not_done and not long.done()
        gate.open()
        long.result(timeout=30)


# ------------------------------------------------------------------ retries


def test_crashed_task_is_retried(tmp_path: Path) -> None:
    with corral.ProcessPoolExecutor(1, retries=2) as ex:
        fut = ex.submit(testing.crash_times, str(tmp_path / "n"), 1)
        assert fut.result(timeout=30) == 2
        assert fut.attempts == 2
        assert ex.statistics().retried == 1 and ex.statistics().crashed == 1


def test_retry_gives_up_with_worker_crashed(tmp_path: Path) -> None:
    with corral.ProcessPoolExecutor(1) as ex:
        fut = ex.options(retries=1).submit(testing.crash_times, str(tmp_path / "n"), 5)
        assert isinstance(fut.exception(timeout=30), corral.WorkerCrashed)
        assert fut.attempts == 2


@pytest.mark.slow
def test_timeouts_retried_when_chosen(tmp_path: Path) -> None:
    with corral.ProcessPoolExecutor(1) as ex:
        opts = ex.options(task_timeout=0.2, retries=1, retry_on=(corral.TaskTimeout,))
        fut = opts.submit(testing.hang)
        assert isinstance(fut.exception(timeout=30), corral.TaskTimeout)
        assert fut.attempts == 2


# ------------------------------------------------------------------ recycling


def test_max_tasks_per_child_replaces_workers() -> None:
    with corral.ProcessPoolExecutor(1, max_tasks_per_child=2) as ex:
        pids = [ex.submit(testing.pid).result(timeout=30) for _ in range(6)]
    assert len(set(pids)) == 3
    assert pids[0] == pids[1] and pids[2] == pids[3]


@pytest.mark.slow
def test_max_memory_per_child_replaces_a_grown_worker() -> None:
    with corral.ProcessPoolExecutor(1, max_memory_per_child=200 * 1024 * 1024) as ex:
        first = ex.submit(testing.allocate_and_keep, 1).result(timeout=30)
        assert ex.submit(testing.pid).result(timeout=30) == first  # still small
        grown = ex.submit(testing.allocate_and_keep, 300).result(timeout=30)
        assert grown == first
        assert ex.submit(testing.pid).result(timeout=30) != first  # replaced between tasks


# ------------------------------------------------------------------ start-up


def test_initializer_sets_per_worker_state() -> None:
    with corral.ProcessPoolExecutor(2, initializer=testing.set_state, initargs=("k", 42)) as ex:
        assert [
            f.result(timeout=30) for f in [ex.submit(testing.get_state, "k") for _ in range(6)]
        ] == [42] * 6


def test_initializer_failing_every_time_breaks_the_pool() -> None:
    ex = corral.ProcessPoolExecutor(2, initializer=testing.fail, initargs=("no db",))
    fut = ex.submit(testing.noop)
    exc = fut.exception(timeout=60)
    assert isinstance(exc, corral.BrokenExecutor)
    assert isinstance(
        exc, __import__("concurrent.futures.process").futures.process.BrokenProcessPool
    )
    assert "cannot start" in str(exc) and "no db" in str(exc)
    assert isinstance(exc.__cause__, ValueError)
    with pytest.raises(corral.BrokenExecutor):
        ex.submit(testing.noop)
    ex.shutdown()


def test_initializer_failing_once_does_not_break_the_pool(tmp_path: Path) -> None:
    counter = str(tmp_path / "n")
    with corral.ProcessPoolExecutor(
        1, initializer=testing.fail_first_init, initargs=(counter, 1)
    ) as ex:
        assert ex.submit(testing.square, 4).result(timeout=60) == 16


@pytest.mark.parametrize("method", ["spawn", "forkserver"])
def test_an_initarg_that_cannot_reach_the_workers_fails_fast(method: str) -> None:
    lock = threading.Lock()  # neither pickles nor travels as a process argument
    with pytest.raises(TypeError, match=r"initargs\[0\] \(lock\) cannot be sent"):
        corral.ProcessPoolExecutor(
            1, mp_context=method, initializer=testing.identity, initargs=(lock,)
        )


def test_an_unpicklable_initializer_fails_fast() -> None:
    with pytest.raises(TypeError, match=r"initializer .* could not be pickled"):
        corral.ProcessPoolExecutor(1, initializer=threading.Lock().acquire)


@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
def test_mp_context_is_honoured(method: str) -> None:
    with corral.ProcessPoolExecutor(1, mp_context=method) as ex:
        ppid = ex.submit(testing.parent_pid).result(timeout=60)
    if method == "forkserver":
        assert ppid != os.getpid()  # the forkserver is the workers' parent
    else:
        assert ppid == os.getpid()


def test_default_start_method_is_forkserver() -> None:
    with corral.ProcessPoolExecutor(1) as ex:
        assert ex._mp_context.get_start_method() == "forkserver"


UNGUARDED = """
import corral

def double(x):
    return 2 * x

with corral.ProcessPoolExecutor(2) as ex:
    print(ex._mp_context.get_start_method(), list(ex.map(double, range(4))))
"""

GUARDED = """
import corral

def double(x):
    return 2 * x

if __name__ == "__main__":
    with corral.ProcessPoolExecutor(2) as ex:
        print(ex._mp_context.get_start_method(), list(ex.map(double, range(4))))
"""


LOADED = """
import sys
import corral

with corral.ProcessPoolExecutor(1) as ex:
    worker = ex.submit(eval, "sorted(__import__('sys').modules)").result(timeout=60)
with corral.ThreadPoolExecutor(1) as ex:
    ex.submit(abs, -1).result(timeout=60)
print(" ".join(sorted(sys.modules)))
print(" ".join(worker))
"""

#: What a program that submits and waits never needs: each costs start-up time (the
#: Dask backend, asyncio, timelines, progress bars, the map iterator, statistics) or,
#: typing, is kept out of worker processes on purpose (docs/design.md §5.7).
NOT_LOADED = {
    "asyncio",
    "distributed",
    "corral._backends.dask",
    "corral._observe.timeline",
    "corral._observe.progress",
    "corral._observe.hooks",
    "corral._map",
    "corral._stats",
    "corral._backends.process.chunks",
}


def test_a_program_that_only_submits_loads_no_optional_part() -> None:
    out = subprocess.run([sys.executable, "-c", LOADED], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    parent, worker = (set(line.split()) for line in out.stdout.splitlines())
    assert "corral._backends.process.manager" in parent  # (what the program did use)
    assert parent & NOT_LOADED == set()
    assert worker & (NOT_LOADED | {"typing"}) == set()


@pytest.mark.parametrize(("source", "method"), [(GUARDED, "forkserver"), (UNGUARDED, "fork")])
def test_scripts_run_with_or_without_a_main_guard(tmp_path: Path, source: str, method: str) -> None:
    script = tmp_path / "script.py"
    script.write_text(source)
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"{method} [0, 2, 4, 6]"


REPLACED = """
import os
import corral
from corral import testing

RUNS = {runs!r}
if __name__ != "__main__":  # the main module run again, in a worker or the forkserver
    with open(RUNS, "a") as f:
        f.write(f"{{os.getpid()}}\\n")
    if {fail_first} and len(open(RUNS).readlines()) == 1:
        raise RuntimeError("the first run of the main module fails")

def double(x):
    return 2 * x

if __name__ == "__main__":
    with corral.ProcessPoolExecutor(1) as ex:
        for i in range(3):  # each cancel: a replacement, from the forkserver
            path = f"{{RUNS}}.{{i}}"
            fut = ex.submit(testing.write_pids_and_hang, path)
            testing.wait_until(lambda: os.path.exists(path), timeout=60)
            assert fut.cancel()
        print(ex._mp_context.get_start_method(), ex.submit(double, 21).result(timeout=60))
"""


@pytest.mark.slow
@pytest.mark.parametrize(("fail_first", "runs"), [(False, 1), (True, 4)])
def test_the_forkserver_runs_the_main_module_once(
    tmp_path: Path, fail_first: bool, runs: int
) -> None:
    # Before Python 3.13.8 and 3.14 the forkserver never preloaded __main__, and each
    # replacement ran the script's top level (its imports: often most of its start).
    # If that run fails in the forkserver, each worker runs it itself, as before.
    script = tmp_path / "script.py"
    counter = tmp_path / "runs"
    script.write_text(REPLACED.format(runs=str(counter), fail_first=fail_first))
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["forkserver", "42"]
    assert len(counter.read_text().split()) == runs


@pytest.mark.slow
def test_a_main_module_reading_stdin_does_not_hold_up_the_forkserver(tmp_path: Path) -> None:
    # the forkserver runs the top level once; its input() must see EOF, not wait on
    # the program's standard input (a terminal, or here a pipe nobody writes to)
    script = tmp_path / "script.py"
    script.write_text(
        "import corral, os\n"
        "if __name__ != '__main__':\n"
        "    try:\n"
        "        input()\n"
        "    except EOFError:\n"
        "        pass\n"
        "if __name__ == '__main__':\n"
        "    with corral.ProcessPoolExecutor(1) as ex:\n"
        "        first = ex.submit(os.getpid).result(timeout=60)\n"
        "        ex.submit(os.kill, first, 9).exception(timeout=60)  # a replacement\n"
        "        print(ex.submit(abs, -3).result(timeout=60))\n"
    )
    proc = subprocess.Popen(  # stdin: a pipe left open, never written to
        [sys.executable, str(script)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.append(proc.stdout.readline()), daemon=True)
    reader.start()
    try:
        testing.wait_until(lambda: bool(lines), timeout=60, message="the script's output")
        assert proc.wait(timeout=60) == 0
    finally:
        proc.kill()
        proc.communicate()
        reader.join(10)
    assert lines[0].strip() == "3"


@pytest.mark.slow
def test_unguarded_script_with_spawn_fails_cleanly(tmp_path: Path) -> None:
    script = tmp_path / "script.py"
    script.write_text(
        "import corral\n"
        "from corral import testing\n"
        "with corral.ProcessPoolExecutor(1, mp_context='spawn') as ex:\n"
        "    print(repr(ex.submit(testing.square, 3).exception(timeout=60)))\n"
    )
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=90)
    assert out.returncode == 0, out.stderr
    assert "BrokenProcessPool" in out.stdout and "__main__" in out.stdout


# ------------------------------------------------------------------ what crosses the pipe


def test_lambdas_and_closures_go_by_cloudpickle(pool: corral.ProcessPoolExecutor) -> None:
    offset = 10

    def closure(x: int) -> int:
        return x + offset

    assert pool.submit(lambda x: x * 3, 5).result(timeout=30) == 15
    assert list(pool.map(closure, [1, 2])) == [11, 12]


def test_main_module_functions_run_under_spawn(tmp_path: Path) -> None:
    script = tmp_path / "main_script.py"
    script.write_text(
        textwrap.dedent(
            """
            import corral

            def double(x):
                return 2 * x

            if __name__ == "__main__":
                with corral.ProcessPoolExecutor(2, mp_context="spawn") as ex:
                    print(list(ex.map(double, range(4))))
            """
        )
    )
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[0, 2, 4, 6]"


def test_worker_traceback_is_chained_as_cause(pool: corral.ProcessPoolExecutor) -> None:
    exc = pool.submit(testing.fail, "deep", KeyError).exception(timeout=30)
    assert isinstance(exc, KeyError)
    cause = exc.__cause__
    assert isinstance(cause, WorkerTraceback)
    assert "in fail\n    raise exc_type(message)" in str(cause)
    rendered = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    assert "testing.py" in rendered and "raise exc_type(message)" in rendered


def test_unpicklable_exception_arrives_as_a_stand_in(pool: corral.ProcessPoolExecutor) -> None:
    exc = pool.submit(testing.raise_unpicklable_error).exception(timeout=30)
    assert isinstance(exc, RemoteError) and isinstance(exc, corral.CorralError)
    assert exc.type_name == "corral.testing.UnpicklableError"
    assert "raise UnpicklableError" in exc.remote_traceback


def test_large_arrays_travel_through_shared_memory(pool: corral.ProcessPoolExecutor) -> None:
    a = np.arange(2_000_000, dtype=np.float64)  # 16 MB
    out = pool.submit(np.multiply, a, 2).result(timeout=30)
    assert isinstance(out, np.ndarray) and out[-1] == 2 * a[-1]
    blob = os.urandom(3 * 1024 * 1024)
    assert pool.submit(testing.identity, blob).result(timeout=30) == blob
    del out


def test_segments_of_cancelled_tasks_are_released(gate: testing.Gate) -> None:
    with corral.ProcessPoolExecutor(1) as ex:
        blocker = ex.submit(testing.wait_for_gate, gate)
        queued = ex.submit(testing.identity, np.ones(1_000_000))  # 8 MB: shared memory
        assert ex._backend.segments is not None and len(ex._backend.segments._lent) == 1
        queued.cancel()
        assert not ex._backend.segments._lent  # back in the pool for the next large argument
        gate.open()
        blocker.result(timeout=30)
    # memfds have no name: nothing can be left in /dev/shm (the leak check looks anyway)


def test_segments_are_reused_and_results_are_private_copies(
    pool: corral.ProcessPoolExecutor,
) -> None:
    a = np.arange(1_000_000, dtype=np.float64)
    first = pool.submit(np.add, a, 1).result(timeout=30)
    second = pool.submit(np.add, a, 2).result(timeout=30)  # same segments, reused
    assert first[-1] == a[-1] + 1 and second[-1] == a[-1] + 2  # the first is untouched
    assert pool._backend.segments is not None and len(pool._backend.segments._free) >= 1
    first[0] = -1.0  # results are writable memory of our own
    assert first[0] == -1.0


_KEPT: list[Any] = []  # (in a worker) arrays a task held on to


def _keep_and_sum(a: Any) -> float:
    _KEPT.append(a)
    return float(a.sum())


def _kept_sums() -> list[float]:
    return [float(a.sum()) for a in _KEPT]


def test_received_arrays_held_on_to_are_never_overwritten(
    pool: corral.ProcessPoolExecutor,
) -> None:
    """Received buffers land in reused memory (wire.Landing): only once nothing uses it."""
    held = [pool.submit(np.multiply, np.ones(300_000), i).result(timeout=30) for i in range(6)]
    views = [h[100:] for h in held[:3]]  # a slice alone keeps the memory of the whole array
    del held[:3]
    for i in range(6):  # the memory of the three dropped can be reused now, and is
        pool.submit(np.multiply, np.ones(300_000), 100 + i).result(timeout=30)
    assert [v[0] for v in views] == [0.0, 1.0, 2.0]
    assert [h[0] for h in held] == [3.0, 4.0, 5.0]
    with corral.ProcessPoolExecutor(1) as ex:  # the same in a worker, for arguments
        sums = [ex.submit(_keep_and_sum, np.full(300_000, i)).result(30) for i in range(4)]
        assert ex.submit(_kept_sums).result(timeout=30) == sums == [300_000.0 * i for i in range(4)]


def test_a_result_outlives_its_pool() -> None:
    with corral.ProcessPoolExecutor(1) as ex:
        kept = ex.submit(np.full, 1 << 18, 2.0).result(timeout=30)
    assert kept.sum() == 2 << 18 and kept.flags.writeable


def _child_reads_first(conn: Any, array: Any) -> None:
    conn.send("forked")
    conn.recv()  # the parent has landed another buffer meanwhile
    conn.send(float(array[0]))


def test_landing_memory_stays_private_to_a_forked_child() -> None:
    """A process forked while an array lives in landing memory keeps its own copy: the
    parent reusing that memory (once it dropped the array) does not reach the child."""
    import multiprocessing

    from corral._backends.process import wire

    landing = wire.Landing()
    one = np.ones(1 << 17)
    array = np.frombuffer(landing.take(memoryview(one).cast("B")))
    ctx = multiprocessing.get_context("fork")
    here, there = ctx.Pipe()
    child = ctx.Process(target=_child_reads_first, args=(there, array))
    child.start()
    try:
        assert here.poll(30) and here.recv() == "forked"
        reused = id(array.base.obj)
        del array
        again = np.frombuffer(landing.take(memoryview(one * 9).cast("B")))
        assert id(again.base.obj) == reused  # the same memory, here
        here.send("go")
        assert here.poll(30) and here.recv() == 1.0  # not 9.0: the child's is its own
    finally:
        child.join(30)
        if child.is_alive():  # an assertion failed before "go": it waits on recv()
            child.kill()
            child.join(30)
        landing.close()
    assert child.exitcode == 0


def test_landing_reuses_memory_only_once_nothing_uses_it(monkeypatch: pytest.MonkeyPatch) -> None:
    from corral._backends.process import wire

    landing = wire.Landing()
    one = np.ones(1 << 17)  # 1 MiB
    first = np.frombuffer(landing.take(memoryview(one).cast("B")))
    second = np.frombuffer(landing.take(memoryview(one * 2).cast("B")))
    assert first.base.obj is not second.base.obj and first[0] == 1.0  # first still in use
    mapping = id(first.base.obj)  # (not the object: a reference would keep it in use)
    tail = first[5:]
    del first
    third = np.frombuffer(landing.take(memoryview(one * 3).cast("B")))
    assert id(third.base.obj) != mapping and tail[0] == 1.0  # the slice still uses it
    del tail
    fourth = np.frombuffer(landing.take(memoryview(one * 4).cast("B")))
    assert id(fourth.base.obj) == mapping and fourth[0] == 4.0 and second[0] == 2.0
    assert isinstance(landing.take(memoryview(b"small")), bytearray)  # under MIN_SIZE
    fourth[0] = -1.0  # writable
    # full: the oldest in use are forgotten (unmapped with their last user), not reused
    monkeypatch.setattr(wire.Landing, "MAX_KEPT", 2 << 20)
    fifth = np.frombuffer(landing.take(memoryview(one * 5).cast("B")))
    kept = [id(entry.mapping) for entry in landing._entries]
    assert len(kept) <= 2 and id(fifth.base.obj) in kept
    assert [second[0], third[0], fourth[0], fifth[0]] == [2.0, 3.0, -1.0, 5.0]
    landing.close()  # what is in use stays valid
    assert [second[0], third[0], fourth[0], fifth[0]] == [2.0, 3.0, -1.0, 5.0]
    # idle (kept for reuse, used by nothing): what a worker leaves out of its RSS
    spare_landing = wire.Landing()
    spare = spare_landing.take(memoryview(one).cast("B"))
    assert spare_landing.idle_bytes() == 0
    del spare
    assert spare_landing.idle_bytes() == 1 << 20
    # where reference counts are not exact (free-threaded), nothing is reused
    monkeypatch.setattr(wire, "_REFCOUNTS_EXACT", False)
    other = wire.Landing()
    for _ in range(3):
        assert isinstance(other.take(memoryview(one).cast("B")), memoryview)
    assert not other._entries


def test_kept_memory_is_released_once_unused_for_keep_idle() -> None:
    from corral._backends.process import wire

    one = np.ones(1 << 17)  # 1 MiB
    landing = wire.Landing()
    used = np.frombuffer(landing.take(memoryview(one).cast("B")))
    idle = landing.take(memoryview(one * 2).cast("B"))
    del idle
    assert landing.holds() and len(landing._entries) == 2
    landing.release_idle(time.monotonic() - 60)  # nothing unused for that long
    assert len(landing._entries) == 2
    landing.release_idle(time.monotonic() + 1)  # the one in use stays, and stays valid
    assert [id(e.mapping) for e in landing._entries] == [id(used.base.obj)] and used[0] == 1.0
    del used
    landing.release_idle(time.monotonic() + 1)
    assert not landing.holds() and landing.idle_bytes() == 0 and landing._kept == 0
    again = np.frombuffer(landing.take(memoryview(one * 3).cast("B")))  # still usable
    assert again[0] == 3.0 and landing.holds()
    del again
    landing.close()

    pool = wire.SegmentPool()
    lent = [pool.take(1 << 20) for _ in range(2)]
    pool.give_back(lent[0].fd)
    assert pool.holds() and pool.lending()
    pool.release_idle(time.monotonic() - 60)
    assert pool.holds()
    pool.release_idle(time.monotonic() + 1)  # the free one is closed, the lent one kept
    assert not pool.holds() and pool.lending() and lent[0].mapping.closed
    with pytest.raises(OSError):
        os.fstat(lent[0].fd)
    assert not lent[1].mapping.closed
    pool.close()

    # the other side's segment, read through /proc: the mapping kept for the next read
    sender = wire.SegmentPool()
    segment = sender.take(2 << 20)
    segment.mapping[: one.nbytes] = memoryview(one).cast("B")
    reader = wire.SegmentReader()
    received = np.frombuffer(reader.read(os.getpid(), segment.fd, one.nbytes))
    assert received[0] == 1.0 and reader.holds() and len(reader._maps) == 1
    reader.release_idle(time.monotonic() - 60)
    assert len(reader._maps) == 1
    reader.release_idle(time.monotonic() + 1)  # the mapping goes; the copy is in use
    assert not reader._maps and reader.holds() and received.sum() == one.size
    del received
    reader.release_idle(time.monotonic() + 1)
    assert not reader.holds()
    reader.close()
    sender.close()


def _memory_report(*holding: Any) -> tuple[int, int]:
    """In a worker: its resident bytes and how many of its mappings and fds are of
    corral's segments (``holding``: big arguments, alive while it measures)."""
    with open("/proc/self/statm") as f:
        resident = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    with open("/proc/self/maps") as f:
        segments = sum("memfd:corral" in line for line in f)
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            segments += "memfd:corral" in os.readlink(f"/proc/self/fd/{fd}")
    return resident, segments


def test_a_pool_gives_back_big_buffers_memory_once_unused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from corral._backends.process import wire

    # (fork: the worker inherits the shorter KEEP_IDLE; a forkserver imported wire before)
    monkeypatch.setattr(wire, "KEEP_IDLE", 1.0)
    big = np.zeros(2 << 20)  # 16 MB
    with corral.ProcessPoolExecutor(1, mp_context="fork") as ex:
        # the first call's segment is filled before the worker is forked: the worker
        # must not keep the parent's segments alive through what fork copied
        assert ex.submit(np.add, big, 1).result(timeout=30)[0] == 1
        # with a 16 MB argument in its landing memory, mapped from the parent's segment
        busy_rss, busy_segments = ex.submit(_memory_report, big).result(timeout=30)
        assert busy_segments >= 1
        backend = ex._backend
        assert backend.segments is not None

        # 2 s of tasks one behind the other: the worker gives back while it works (it
        # looks between tasks, and in the moments it waits for the next one)
        for _ in range(100):
            ex.submit(time.sleep, 0.02)
        rss, segments = ex.submit(_memory_report).result(timeout=60)
        assert segments == 0 and rss < busy_rss - (24 << 20)
        testing.wait_until(
            lambda: not backend._reader.holds() and not backend.segments.holds(), timeout=30
        )
        # and big buffers still go through, on fresh memory
        assert ex.submit(np.add, big, 7).result(timeout=30)[0] == 7


def test_a_worker_looks_for_unused_memory_between_tasks(monkeypatch: pytest.MonkeyPatch) -> None:
    """For a worker whose next task is always there already (sent ahead): it never
    waits, so it gives back between tasks, every KEEP_IDLE / 2 at most."""
    from corral._backends.process import wire

    monkeypatch.setattr(wire, "KEEP_IDLE", 1.0)
    pool, reader = wire.SegmentPool(), wire.SegmentReader()
    kept = wire.KeptMemory(pool, reader)
    kept.release_due()  # nothing kept: nothing to do
    pool.give_back(pool.take(1 << 20).fd)
    kept.release_due()  # the first look: it was used just now
    assert kept.holds()
    testing.wait_until(lambda: wire.idle_cutoff() > pool._free[0].used, timeout=30)
    kept.release_due()  # unused for KEEP_IDLE now
    assert not kept.holds()
    pool.give_back(pool.take(1 << 20).fd)
    kept.next_look = time.monotonic() + 60  # looked a moment ago
    testing.wait_until(lambda: wire.idle_cutoff() > pool._free[0].used, timeout=30)
    kept.release_due()  # unused for KEEP_IDLE, but the next look is not due
    assert kept.holds()
    kept.next_look = 0.0
    kept.release_due()
    assert not kept.holds()
    pool.close()
    reader.close()


def test_a_result_that_fails_to_pickle_gives_back_the_segments_it_took(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Else a worker waits for the parent to free segments it will never read."""
    from corral import _pickling
    from corral._backends.process import wire

    pool = wire.SegmentPool()
    take = pool.take
    calls = 0

    def take_once(nbytes: int) -> wire.Segment:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise OSError(24, "Too many open files")
        return take(nbytes)

    monkeypatch.setattr(pool, "take", take_once)
    with pytest.raises(OSError, match="Too many open files"):
        _pickling.dumps([np.zeros(1 << 18), np.zeros(1 << 18)], pool)
    assert calls == 2 and not pool.lending() and pool.holds()
    pool.close()


@pytest.mark.parametrize("waiting_for", ["work", "free"])
def test_a_worker_never_blocks_on_a_pipe_the_revoke_handler_emptied(waiting_for: str) -> None:
    """The revoke signal's handler reads the pipe between two bytecodes of the main
    thread; if that is just before the main loop blocks to read, what the loop waits
    for is already read, and it must not block (the parent waits for it meanwhile)."""
    import socket

    from corral._backends.process import wire, worker

    ends = socket.socketpair()
    pool = wire.SegmentPool()
    inbox = worker._Inbox(ends[1].fileno(), pool)
    lent = pool.take(1 << 20)  # a result's segment, waiting for the parent's "free"
    for message in (wire.Free([lent.fd]), wire.RunCalls([(1, b"", b"", [])])):
        wire.write_frame(ends[0].fileno(), message.dumps())
    try:
        inbox.on_signal(worker.REVOKE_SIGNAL, None)  # the handler, just before the read
        assert inbox.queue and not pool.lending()  # it read both
        until = inbox.has_work if waiting_for == "work" else inbox.lent_back
        returned = threading.Event()
        reader = threading.Thread(
            target=lambda: (inbox.receive(block=True, unless=until), returned.set())
        )
        reader.start()
        blocked = not returned.wait(5)
        if blocked:  # let the thread go before failing
            wire.write_frame(ends[0].fileno(), wire.Exit().dumps())
        reader.join(30)
        assert not blocked
        # and with nothing done yet, it does block until a message comes
        inbox.queue.clear()
        returned.clear()
        reader = threading.Thread(
            target=lambda: (inbox.receive(block=True, unless=inbox.has_work), returned.set())
        )
        reader.start()
        assert not returned.wait(0.2)
        wire.write_frame(ends[0].fileno(), wire.Exit().dumps())
        reader.join(30)
        assert returned.is_set() and inbox.exiting
    finally:
        for end in ends:
            end.close()
        pool.close()


# ------------------------------------------------------------------ signals and parent death


def test_workers_ignore_sigint(
    pool: corral.ProcessPoolExecutor, tmp_path: Path, started: testing.Gate
) -> None:
    pidfile = tmp_path / "pids"
    fut = pool.submit(testing.write_pids_and_hang, str(pidfile), started)
    assert started.wait(30)
    (worker,) = _read_pids(pidfile)
    os.kill(worker, signal.SIGINT)
    assert pool.submit(testing.square, 5).result(timeout=30) == 25
    assert _alive(worker) and fut.running()
    fut.cancel()


def _kill_parent_of(tmp_path: Path, pool: str, submit: str, count: int) -> None:
    """Runs a script that makes ``pool`` and submits ``submit`` (formatted with the pid
    file and ``i``) ``count`` times, SIGKILLs it once each task wrote its worker's pid,
    and checks that the workers exit. Left alone they would run for an hour or more."""
    script = tmp_path / "parent.py"
    pidfile = tmp_path / "worker"
    call = submit.format(path=f"{str(pidfile)!r} + str(i)")
    script.write_text(
        textwrap.dedent(
            f"""
            import time, corral
            from corral import testing
            if __name__ == "__main__":
                ex = {pool}
                for i in range({count}):
                    ex.submit({call})
                time.sleep(600)
            """
        )
    )
    parent = subprocess.Popen([sys.executable, str(script)])
    workers: list[int] = []
    try:
        workers = [_read_pids(Path(f"{pidfile}{i}"))[0] for i in range(count)]
        parent.kill()
        parent.wait(10)
        # The bound only has to hold on a busy machine.
        testing.wait_until(
            lambda: not any(_alive(p) for p in workers), timeout=10, message="workers to exit"
        )
    finally:
        parent.kill()
        parent.wait(10)
        for pid in workers:  # only if the test failed
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


@pytest.mark.slow
def test_workers_exit_when_the_parent_is_killed(tmp_path: Path) -> None:
    # PDEATHSIG ends them at once, the watchdog within 0.2 s
    _kill_parent_of(
        tmp_path,
        'corral.ProcessPoolExecutor(2, mp_context="forkserver")',
        "testing.write_pids_and_hang, {path}",
        count=2,
    )


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
@pytest.mark.parametrize("method", ["fork", "forkserver"])
def test_a_worker_holding_the_gil_dies_with_its_parent(tmp_path: Path, method: str) -> None:
    # The watchdog thread cannot run while the task holds the GIL: only the death
    # signal, which the worker sets before its first task, ends it.
    _kill_parent_of(
        tmp_path,
        f"corral.ProcessPoolExecutor(1, mp_context={method!r})",
        "testing.write_pid_and_hold_the_gil, {path}",
        count=1,
    )


def test_elastic_workers_grow_under_load_and_shrink_when_idle(gate: testing.Gate) -> None:
    with corral.ProcessPoolExecutor(3, min_workers=1, idle_timeout=0.2) as ex:
        testing.wait_until(lambda: ex.statistics().workers == 1, timeout=30)
        futures = [ex.submit(testing.wait_for_gate, gate, i) for i in range(3)]
        testing.wait_until(
            lambda: ex.statistics().workers == 3 and ex.statistics().running == 3, timeout=30
        )
        gate.open()
        assert [f.result(timeout=30) for f in futures] == [0, 1, 2]
        testing.wait_until(lambda: ex.statistics().workers == 1, timeout=10)
        assert ex.statistics().idle == 1


# ------------------------------------------------------------------ TaskGroup


def test_task_group_failure_kills_an_hour_long_sibling_promptly(
    pool: corral.ProcessPoolExecutor, tmp_path: Path
) -> None:
    pidfile = tmp_path / "pid"
    with pytest.raises(ExceptionGroup) as info, corral.TaskGroup(pool) as group:
        sibling = group.submit(testing.write_pids_and_hang, str(pidfile), None, True)
        worker, grandchild = _read_pids(pidfile)
        begin = time.monotonic()
        group.submit(testing.fail, "first failure")
    took = time.monotonic() - begin
    assert [str(e) for e in info.value.exceptions] == ["first failure"]
    assert sibling.cancelled()
    # the sibling would run an hour: the group must neither wait for it nor leave it
    # running (bounds that hold on a busy machine; idle, it takes a few ms)
    testing.wait_until(
        lambda: not _alive(worker) and not _alive(grandchild),
        timeout=10,
        message="the sibling's worker and its child to be gone",
    )
    assert took < testing.slack(2.0), f"the group raised {took:.2f} s after the failure"


# ------------------------------------------------------------------ regressions


def test_a_retry_waiting_when_the_pool_breaks_still_ends(tmp_path: Path) -> None:
    init = (str(tmp_path / "init"), 1)  # the first worker starts, every later one fails
    with corral.ProcessPoolExecutor(1, initializer=testing.init_ok_times, initargs=init) as ex:
        fut = ex.options(retries=3).submit(testing.crash_times, str(tmp_path / "n"), 5)
        exc = fut.exception(timeout=60)
    assert isinstance(exc, corral.BrokenExecutor)


@pytest.mark.slow
def test_max_tasks_per_child_holds_while_prefetching() -> None:
    with corral.ProcessPoolExecutor(1, max_tasks_per_child=2) as ex:
        pids = [f.result(timeout=60) for f in [ex.submit(testing.pid) for _ in range(40)]]
    assert max(pids.count(p) for p in set(pids)) <= 2


def test_an_item_failing_inside_a_chunk_ends_the_map(pool: corral.ProcessPoolExecutor) -> None:
    results = pool.map(testing.identity_or_fail, [1, "fail", 3, 4], chunksize=4)
    assert next(results) == 1
    with pytest.raises(ValueError, match="fail"):
        next(results)
    assert list(results) == []


@pytest.mark.parametrize(
    "numbers",
    [
        range(0),
        range(5),
        range(1000),
        range(-7, 3000, 7),
        range(3000, -50, -3),
        range(2**70, 2**70 + 900),
    ],
    ids=["empty", "five", "thousand", "step", "downward", "big"],
)
@pytest.mark.parametrize("buffersize", [None, 64])
def test_a_map_over_a_range_sends_its_chunks_as_ranges(
    pool: corral.ProcessPoolExecutor,
    monkeypatch: pytest.MonkeyPatch,
    numbers: range,
    buffersize: int | None,
) -> None:
    from corral._backends.process import chunks

    sent: list[object] = []
    submit = chunks.ChunkUnits.submit

    def spy(self: chunks.ChunkUnits, items: Any) -> Any:
        sent.append(items)
        return submit(self, items)

    monkeypatch.setattr(chunks.ChunkUnits, "submit", spy)
    assert list(pool.map(testing.identity, numbers, buffersize=buffersize)) == list(numbers)
    assert all(type(unit) is range for unit in sent), sent
    assert [n for unit in sent for n in unit] == list(numbers)  # each number once, in order


def test_a_forked_child_exits_although_the_parent_has_a_thread_pool(tmp_path: Path) -> None:
    script = tmp_path / "fork_child.py"
    script.write_text(
        textwrap.dedent(
            """
            import multiprocessing as mp, corral
            def f():
                pass
            if __name__ == "__main__":
                with corral.ThreadPoolExecutor(2) as ex:
                    ex.submit(f).result()
                    p = mp.get_context("fork").Process(target=f)
                    p.start()
                    p.join(10)
                    print(p.exitcode)
            """
        )
    )
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "0", out.stderr


def test_large_payloads_never_block_a_busy_worker() -> None:
    # a busy worker reads nothing: a big frame written to it would block the manager,
    # and the worker's own result write with it (a deadlock before the fix)
    with corral.ProcessPoolExecutor(2) as ex:
        list(ex.map(testing.identity, ["a"] * 200, chunksize=1))  # opens the prefetch window
        futs = [ex.submit(testing.identity, "x" * 600_000) for _ in range(40)]
        assert all(len(f.result(timeout=60)) == 600_000 for f in futs)


def test_tasks_put_back_after_the_pool_broke_still_end(tmp_path: Path, gate: testing.Gate) -> None:
    init = (str(tmp_path / "init"), 1)  # the first worker starts, every later one fails
    with corral.ProcessPoolExecutor(1, initializer=testing.init_ok_times, initargs=init) as ex:
        list(ex.map(testing.identity, range(300), chunksize=1))  # prefetching now
        crash = ex.submit(testing.crash_after_gate, gate)
        behind = [ex.submit(testing.identity, i) for i in range(5)]
        testing.wait_until(crash.running)
        gate.open()
        assert isinstance(crash.exception(timeout=60), corral.WorkerCrashed)
        for fut in behind:  # handed to the dead worker, put back, and the pool is broken
            assert isinstance(fut.exception(timeout=60), corral.BrokenExecutor)


@pytest.mark.parametrize("method", [None, "fork", "forkserver"])
def test_a_crash_is_reported_while_another_process_holds_the_worker_pipe(
    tmp_path: Path, method: str | None
) -> None:
    """The worker's end of its pipe outlives it in a process of another session: the
    crash must still be reported (the parent reads what is there, not up to EOF). Under
    fork, that process also holds multiprocessing's exit sentinel of the worker: the
    pool watches a pidfd instead."""
    pid_path = str(tmp_path / "holder")
    try:
        with corral.ProcessPoolExecutor(1, mp_context=method) as ex:
            fut = ex.submit(testing.exit_leaving_a_pipe_holder, pid_path)
            with pytest.raises(corral.WorkerCrashed):
                fut.result(timeout=10)
            assert ex.submit(testing.square, 3).result(timeout=10) == 9
    finally:
        if os.path.exists(pid_path):
            holder = int(Path(pid_path).read_text())
            with contextlib.suppress(ProcessLookupError):
                os.kill(holder, signal.SIGKILL)
            testing.wait_until(lambda: not _alive(holder), 5)


def test_every_wire_message_travels_as_itself() -> None:
    # both sides build and read records; the tuples on the pipe follow each record's
    # FIELDS, which must match its constructor's parameters, in order
    from corral._backends.process import wire

    samples = [
        wire.RunCalls([(1, b"fn", b"call", [(10, 3, 1 << 20)])]),
        wire.Revoke([1, 2]),
        wire.Free([3]),
        wire.Exit(),
        wire.Ready(1234),
        wire.InitFailed(b"exc"),
        wire.Ok(7, b"value", [(10, 4, 2 << 20)], 0.25, 4096),
        wire.Error(8, b"exc", 0.5, 0),
        wire.Skipped(9),
        wire.Started(10),
        wire.Escaped([12, 13]),
        wire.Log(11, {"msg": "hello", "levelno": 20}),
    ]
    assert {type(m) for m in samples} == set(wire._KINDS.values())
    for message in samples:
        back = wire.loads(message.dumps())
        assert back == message and type(back) is type(message), (message, back)
        assert all(getattr(back, f) == getattr(message, f) for f in message.FIELDS)
    assert wire.Ok(1, b"", [], 0.0, 0) != wire.Ok(2, b"", [], 0.0, 0)
    assert "run_id=7" in repr(samples[6])


def test_frames_split_across_reads_come_out_whole() -> None:
    # the manager reads at most what the frame begun still lacks, or 64 KiB: a big
    # frame arrives in pieces, small ones several to a read
    from corral._backends.process import wire

    r, w = os.pipe()
    try:
        big, small = os.urandom(300_000), b"x" * 100
        reader = wire.FrameReader()
        sent = (small, big, small)
        writer = threading.Thread(target=lambda: [wire.write_frame(w, m) for m in sent])
        writer.start()
        frames: list[bytes] = []
        reads = 0
        while len(frames) < 3:
            size = reader.read_size()
            assert size >= 1 << 16
            frames += reader.feed(os.read(r, size))
            reads += 1
        writer.join(10)
        assert frames == list(sent)
        assert reader.read_size() == 1 << 16
        assert reads <= 20  # not byte by byte
    finally:
        os.close(r)
        os.close(w)
