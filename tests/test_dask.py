"""DaskExecutor on real clusters: separate scheduler and worker processes on 127.0.0.1.

The contract suite (tests/contract) already runs on the ``dask`` backend. Here: what
only a cluster shows. The seeds' workloads through ``DaskExecutor(address)``; a Dask
worker SIGKILLed mid-task fails only its own tasks (or retries them); cancel and
task_timeout kill the process running the task; a local cluster it owns listens on
loopback only and is gone after shutdown; the error without the extra.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import pickle
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import corral
from corral import testing
from corral._backends.dask import compat
from corral._backends.dask import worker as dask_worker
from corral._backends.dask.backend import DaskBackend

distributed = pytest.importorskip("distributed")
cloudpickle = pytest.importorskip("cloudpickle")
psutil = pytest.importorskip("psutil")

from tests.conftest import DaskCluster  # noqa: E402
from tests.test_seeds import IS_PRIME_NUMBERS, IS_PRIME_OUTPUT, load  # noqa: E402

# the tasks below travel by value: the workers cannot import this test module
cloudpickle.register_pickle_by_value(sys.modules[__name__])

# a cluster of its own processes for most tests: not for `make quick`
pytestmark = [pytest.mark.timeout(120), pytest.mark.slow]


def report_and_wait(path: str, gate: testing.Gate, value: Any) -> Any:
    """Writes its pid (a process of a Dask worker's inner pool) to ``path``, waits."""
    with open(path + ".tmp", "w") as f:
        f.write(str(os.getpid()))
    os.replace(path + ".tmp", path)
    if not gate.wait(60):
        raise TimeoutError("the test never opened the gate")
    return value


def dask_worker_of(path: Path, worker_pids: set[int]) -> int:
    """The Dask worker process whose inner pool runs the task that wrote ``path``.

    The inner process is the worker's grandchild under forkserver (the fork server
    sits between them), so this walks up the parents.
    """
    testing.wait_until(path.exists, 30, 0.005, f"{path.name} from the task")
    proc = psutil.Process(int(path.read_text()))
    while proc.pid not in worker_pids:
        parent = proc.parent()
        assert parent is not None, f"{path.name}: no Dask worker among its parents"
        proc = parent
    return proc.pid


def read_pids_file(path: str) -> str:
    """The first pid a task wrote to ``path`` (waits for the file)."""
    testing.wait_until(lambda: os.path.exists(path), 30, 0.005, "the task's pid file")
    with open(path) as f:
        return f.read().split()[0]


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@pytest.fixture(scope="module")
def cluster() -> Iterator[DaskCluster]:
    c = DaskCluster(workers=2, nthreads=2)
    try:
        yield c
    finally:
        c.stop()


@pytest.fixture
def executor(cluster: DaskCluster) -> Iterator[corral.DaskExecutor]:
    ex = corral.DaskExecutor(cluster.address)
    try:
        yield ex
    finally:
        ex.shutdown(wait=True, kill=True)


# --------------------------------------------------------------------- the seeds


def dask_pool(address: str) -> Any:
    """Stands for the seeds' ThreadPoolExecutor/ProcessPoolExecutor: one argument changed."""

    def make(max_workers: int | None = None) -> corral.DaskExecutor:
        return corral.DaskExecutor(address, max_workers=max_workers)

    return make


def test_seed002_is_prime_on_the_cluster(
    cluster: DaskCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    example = load("seed002_is_prime", PRIMES=IS_PRIME_NUMBERS)
    example.PE = dask_pool(cluster.address)
    example.main()
    assert capsys.readouterr().out.splitlines() == IS_PRIME_OUTPUT


def test_seed003_map_sum_on_the_cluster(
    cluster: DaskCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    example = load("seed003_map_sum", WORK_LIST=[10, 100, 1000, 10000])
    pools = type("corral_on_dask", (), {})()
    pools.ThreadPoolExecutor = pools.ProcessPoolExecutor = dask_pool(cluster.address)
    example.futures = pools
    example.main1()
    example.main2()
    out = capsys.readouterr().out
    results = [line for line in out.splitlines() if line.startswith(" Result")]
    assert [r.split(" Time")[0] for r in results] == [" Result -> [55, 5050, 500500, 50005000]"] * 2


@pytest.mark.parametrize("name", ["seed000_wait", "seed000_as_completed"])
def test_seed000_wait_and_as_completed_on_the_cluster(
    cluster: DaskCluster, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    example = load(name, WORK_LIST=[10, 100, 1000, 10000])
    example.ProcessPoolExecutor = dask_pool(cluster.address)
    example.main()
    out = capsys.readouterr().out
    for total in (55, 5050, 500500, 50005000):
        assert str(total) in out, out


def test_seed003_wait_as_completed_on_the_cluster(
    cluster: DaskCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    example = load("seed003_wait_as_completed", WORK_LIST=[10, 100, 1000, 10000])
    example.ProcessPoolExecutor = dask_pool(cluster.address)
    example.main()
    out = capsys.readouterr().out
    assert "\nPending ones after waiting for 7seconds : set()\n" in out
    assert out.count("Future Cancelled : False\n") == 4


def test_an_argument_that_will_not_pickle_fails_at_submit(executor: corral.DaskExecutor) -> None:
    fut = executor.submit(testing.identity, testing.FailsToPickle())
    assert fut.done()  # failed at the call site, never sent
    with pytest.raises(pickle.PicklingError, match=r"argument 0 \(FailsToPickle\)"):
        fut.result()
    assert executor.submit(lambda x: x + 1, 1).result(timeout=30) == 2  # closures travel


# --------------------------------------------------------------------- stopping work


def test_cancel_kills_the_process_running_the_task(
    executor: corral.DaskExecutor, tmp_path: Path
) -> None:
    pidfile = str(tmp_path / "pids")
    fut = executor.submit(testing.write_pids_and_hang, pidfile)
    workers = set(executor.client.run(os.getpid).values())
    inner = int(read_pids_file(pidfile))
    begin = time.monotonic()
    assert fut.cancel()
    testing.wait_until(lambda: gone(inner), 10, 0.001, "the task's process to end")
    print(f"\ncancel -> process gone: {(time.monotonic() - begin) * 1000:.1f} ms")
    assert set(executor.client.run(os.getpid).values()) == workers, "Dask workers survive"
    assert executor.submit(testing.square, 4).result(timeout=30) == 16


#: task_timeout for a task that must have started before it fires. On Dask it counts
#: from the submission, so it also covers starting a process in the worker's inner
#: pool: 1 s was too short for that on a busy machine, and the run timed out before
#: the task had begun (its pid file never came, or the retry took it for the first).
STARTED_WITHIN = testing.slack(5.0)


def test_task_timeout_kills_the_process_running_the_task(
    executor: corral.DaskExecutor, tmp_path: Path
) -> None:
    pidfile = str(tmp_path / "pids")
    opts = executor.options(task_timeout=STARTED_WITHIN)
    fut = opts.submit(testing.write_pids_and_hang, pidfile)
    inner = int(read_pids_file(pidfile))
    with pytest.raises(corral.TaskTimeout):
        fut.result(timeout=testing.slack(30))
    testing.wait_until(lambda: gone(inner), 10, 0.001, "the task's process to end")
    assert executor.statistics().timed_out == 1


def hang_the_first_time(marker: str) -> str:
    """The first run writes its pid to ``marker`` and hangs; later runs return."""
    if os.path.exists(marker):
        return "second run"
    with open(marker + ".tmp", "w") as f:
        f.write(str(os.getpid()))
    os.replace(marker + ".tmp", marker)
    time.sleep(3600)
    return "never"


def test_a_timed_out_task_is_retried_and_its_first_run_killed(
    executor: corral.DaskExecutor, tmp_path: Path
) -> None:
    marker = str(tmp_path / "first")
    opts = executor.options(task_timeout=STARTED_WITHIN, retries=1, retry_on=corral.TaskTimeout)
    fut = opts.submit(hang_the_first_time, marker)
    assert fut.result(timeout=testing.slack(60)) == "second run"
    assert fut.attempts == 2
    first = int(read_pids_file(marker))
    testing.wait_until(lambda: gone(first), 10, 0.005, "the first run's process to end")


def test_a_crash_of_the_task_process_is_worker_crashed_and_the_dask_worker_lives(
    executor: corral.DaskExecutor,
) -> None:
    pids = executor.client.run(os.getpid)
    fut = executor.submit(testing.exit_now, 7)
    with pytest.raises(corral.WorkerCrashed, match="exit") as info:
        fut.result(timeout=30)
    assert info.value.exitcode == 7
    assert executor.client.run(os.getpid) == pids  # the same Dask worker processes
    assert executor.submit(testing.square, 3).result(timeout=30) == 9


def test_crashes_are_retried(executor: corral.DaskExecutor, tmp_path: Path) -> None:
    counter = str(tmp_path / "count")
    fut = executor.options(retries=2).submit(testing.crash_times, counter, 2)
    assert fut.result(timeout=60) == 3
    assert fut.attempts == 3


def test_shutdown_kill_stops_tasks_on_every_worker(cluster: DaskCluster, tmp_path: Path) -> None:
    ex = corral.DaskExecutor(cluster.address)
    paths = [str(tmp_path / f"pids{i}") for i in range(4)]
    futs = [ex.submit(testing.write_pids_and_hang, p) for p in paths]
    inner = [int(read_pids_file(p)) for p in paths]
    ex.shutdown(wait=True, kill=True)
    assert all(f.cancelled() for f in futs)
    testing.wait_until(lambda: all(map(gone, inner)), 10, 0.005, "every task process to end")


CTRL_C_SCRIPT = """
import sys, corral
from corral import testing
if __name__ == "__main__":
    ex = corral.DaskExecutor(sys.argv[1])
    futs = [ex.submit(testing.write_pids_and_hang, f"{sys.argv[2]}{i}") for i in range(2)]
    corral.wait(futs)
"""


def test_ctrl_c_stops_the_tasks_on_the_cluster(cluster: DaskCluster, tmp_path: Path) -> None:
    script = tmp_path / "script.py"
    script.write_text(CTRL_C_SCRIPT)
    prefix = str(tmp_path / "pids")
    proc = subprocess.Popen(
        [sys.executable, str(script), cluster.address, prefix],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        inner = [int(read_pids_file(f"{prefix}{i}")) for i in range(2)]
        begin = time.monotonic()
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=testing.slack(30))
        took = time.monotonic() - begin
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode != 0 and err.rstrip().endswith("KeyboardInterrupt"), err
    # its tasks would run an hour: a bound that holds on a busy machine (idle: about 1 s)
    assert took < testing.slack(15), f"the script took {took:.2f}s to exit after SIGINT"
    testing.wait_until(lambda: all(map(gone, inner)), 10, 0.005, "the tasks' processes to end")


# --------------------------------------------------------------------- a Dask worker dies


@pytest.mark.parametrize(
    ("retries", "allowed_failures", "events"),
    [
        # Dask's default allowed-failures: Dask would re-run the task elsewhere; corral
        # fails it on the scheduler's remove-worker event (which comes first) and stops
        # the re-run
        (0, "3", True),
        (1, "3", True),
        # no events for corral (a handler set after the executor replaces its own), and
        # allowed-failures 0 as DaskExecutor() sets for its cluster: Dask's KilledWorker
        (0, "0", False),
    ],
)
def test_killed_dask_worker_fails_only_its_own_tasks(
    tmp_path: Path, retries: int, allowed_failures: str, events: bool
) -> None:
    cluster = DaskCluster(
        workers=2, nthreads=2, DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES=allowed_failures
    )
    try:
        ex = corral.DaskExecutor(cluster.address, retries=retries)
        if not events:
            ex.client.subscribe_topic("all", lambda event: None)
        try:
            with testing.Gate() as gate:
                paths = [tmp_path / f"task{i}" for i in range(4)]
                futs = [ex.submit(report_and_wait, str(p), gate, i) for i, p in enumerate(paths)]
                worker_pids = set(ex.client.run(os.getpid).values())
                workers = [dask_worker_of(p, worker_pids) for p in paths]
                inner = [int(p.read_text()) for p in paths]
                assert len(set(workers)) == 2, "the four tasks should run on both workers"
                victim = workers[0]
                os.kill(victim, signal.SIGKILL)
                affected = [f for f, w in zip(futs, workers, strict=True) if w == victim]
                others = [f for f, w in zip(futs, workers, strict=True) if w != victim]
                orphans = [pid for pid, w in zip(inner, workers, strict=True) if w == victim]
                testing.wait_until(
                    lambda: all(map(gone, orphans)), 10, 0.005, "the dead worker's tasks to end"
                )
                if retries == 0:
                    for fut in affected:
                        expected = "left the cluster" if events else "KilledWorker"
                        with pytest.raises(corral.WorkerCrashed, match=expected):
                            fut.result(timeout=60)
                    assert not any(f.done() for f in others)
                gate.open()
                assert [f.result(timeout=60) for f in others] == [
                    i for i, w in enumerate(workers) if w != victim
                ]
                if retries == 1:
                    assert [f.result(timeout=60) for f in affected] == [
                        i for i, w in enumerate(workers) if w == victim
                    ]
                    assert [f.attempts for f in affected] == [2] * len(affected)
                assert all(f.attempts == 1 for f in others)
            stats = ex.statistics()
            assert stats.failed == (len(affected) if retries == 0 else 0)
            assert stats.crashed == len(affected)
        finally:
            ex.shutdown(wait=True, kill=True)
    finally:
        cluster.stop()


def test_losing_the_scheduler_ends_every_future(tmp_path: Path) -> None:
    cluster = DaskCluster(workers=1, nthreads=2)
    try:
        # the client stops reconnecting, and the loss is reported, after connect_timeout:
        # short for a short test, and not so short that a busy machine misses the start
        ex = corral.DaskExecutor(cluster.address, connect_timeout=5)
        try:
            running = ex.submit(testing.write_pids_and_hang, str(tmp_path / "pids"))
            read_pids_file(str(tmp_path / "pids"))
            os.killpg(cluster.procs[0].pid, signal.SIGKILL)  # the scheduler's session
            with pytest.raises(corral.BrokenExecutor, match="lost the scheduler"):
                running.result(timeout=60)
        finally:
            ex.shutdown(wait=True, kill=True)
    finally:
        cluster.stop()


# --------------------------------------------------------------------- clusters and clients


OWNED_CLUSTER_SCRIPT = """
import sys, corral
from corral import testing
if __name__ == "__main__":
    ex = corral.DaskExecutor(n_workers=1, threads_per_worker=2)
    futs = [ex.submit(testing.write_pids_and_hang, f"{sys.argv[1]}{i}") for i in range(2)]
    corral.wait(futs)
"""


def test_a_sigkilled_parent_takes_its_local_cluster_with_it(tmp_path: Path) -> None:
    script = tmp_path / "script.py"
    script.write_text(OWNED_CLUSTER_SCRIPT)
    prefix = str(tmp_path / "pids")
    proc = subprocess.Popen(
        [sys.executable, str(script), prefix],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    everything: list[Any] = []
    try:
        [read_pids_file(f"{prefix}{i}") for i in range(2)]
        everything = psutil.Process(proc.pid).children(recursive=True)
        assert len(everything) >= 3  # a worker (its nanny runs in the parent), 2 tasks
        proc.kill()
        proc.wait()
        # measured 1.3 s (docs/dask.md); the bound here is loose, for a loaded machine
        testing.wait_until(
            lambda: all(gone(p.pid) for p in everything),
            20,
            0.01,
            "the cluster's processes to exit",
        )
    finally:
        proc.kill()
        proc.wait()
        for child in everything:  # only if the test failed: leave nothing behind
            try:
                child.kill()
            except psutil.Error:
                pass


def test_owned_local_cluster_workers_ignore_ctrl_c() -> None:
    with corral.DaskExecutor(n_workers=1, threads_per_worker=1) as ex:
        handlers = ex.client.run(signal.getsignal, signal.SIGINT)
        assert list(handlers.values()) == [signal.SIG_IGN]


def test_owned_local_cluster_listens_on_loopback_only_and_is_closed() -> None:
    ex = corral.DaskExecutor(n_workers=1, threads_per_worker=1)
    try:
        assert ex.submit(testing.add, 1, 2).result(timeout=60) == 3
        me = psutil.Process()
        others = set().union(*(c.pids() for c in DaskCluster.live))  # the module's cluster
        ours = [p for p in me.children(recursive=True) if p.pid not in others]
        listening = [
            c.laddr.ip
            for proc in [me, *ours]
            for c in proc.net_connections(kind="inet")
            if c.status == psutil.CONN_LISTEN
        ]
        assert listening and set(listening) == {"127.0.0.1"}, listening
        info = ex.client.scheduler_info()
        assert info["address"].startswith("tcp://127.0.0.1:")
        assert all(w.startswith("tcp://127.0.0.1:") for w in info["workers"])
        # no dashboard pages; the scheduler's small HTTP server (health, metrics) is
        # among the listeners above, on 127.0.0.1 like the rest
    finally:
        ex.shutdown()
    # the leak check then sees that every process of the cluster is gone


def test_given_client_is_left_open(cluster: DaskCluster) -> None:
    with distributed.Client(cluster.address, set_as_default=False) as client:
        with corral.DaskExecutor(client=client, max_workers=2) as ex:
            assert ex.client is client
            assert list(ex.map(testing.square, range(5))) == [0, 1, 4, 9, 16]
        assert client.status == "running"
        assert client.submit(testing.square, 3).result(timeout=30) == 9


def test_closing_a_given_client_ends_every_future_and_the_work(
    cluster: DaskCluster, tmp_path: Path
) -> None:
    """The user closes their Client with work running and queued: every future ends
    (BrokenExecutor), shutdown returns, and the running task's process is stopped by its
    Dask worker (nobody wants its result any more)."""
    client = distributed.Client(cluster.address, set_as_default=False)
    ex = corral.DaskExecutor(client=client, max_workers=1)
    try:
        with testing.Gate() as started:
            pid_file = tmp_path / "pids"
            running = ex.submit(testing.write_pids_and_hang, str(pid_file), started)
            queued = [ex.submit(testing.square, i) for i in range(3)]
            assert started.wait(60)
            (task_pid,) = (int(p) for p in pid_file.read_text().split())
            client.close()
            done, not_done = corral.wait([running, *queued], timeout=30)
            assert not not_done
            for fut in done:
                assert isinstance(fut.exception(), corral.BrokenExecutor), fut.exception()
            assert "closed" in str(running.exception())
    finally:
        ex.shutdown(wait=True)  # returns: nothing is left waiting for the closed client
    testing.wait_until(lambda: gone(task_pid), 10, message="the orphaned task's process")


def test_executor_ids_are_unique_across_processes() -> None:
    """Forked copies of a program share the counters: keys must not collide on a scheduler."""
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child
        os.write(write, DaskBackend.new_id().encode())
        os._exit(0)
    os.close(write)
    theirs = os.read(read, 200).decode()
    os.close(read)
    os.waitpid(child, 0)
    ours = DaskBackend.new_id()
    assert theirs and ours != theirs


def test_a_constructor_that_fails_leaves_no_hooks_thread() -> None:
    with pytest.raises(ValueError):
        corral.DaskExecutor("tcp://127.0.0.1:1", prefetch=-1, hooks=corral.Hooks(on_task_end=print))
    # the autouse leak check fails the test if a corral-hooks thread is left


class Local:
    """Defined in the test module, which travels by value: only cloudpickle carries it."""

    def __init__(self, value: int) -> None:
        self.value = value


def make_local(value: int) -> Local:
    return Local(value)


def test_small_outcomes_come_in_the_notes_and_the_others_are_fetched(
    executor: corral.DaskExecutor,
) -> None:
    fetched: list[Any] = []
    real_gather = executor.client.gather

    def gather(futures: Any, *args: Any, **kwargs: Any) -> Any:
        fetched.extend(futures)
        return real_gather(futures, *args, **kwargs)

    executor.client.gather = gather
    futs = [executor.submit(testing.square, i) for i in range(20)]
    assert [f.result(timeout=60) for f in futs] == [i * i for i in range(20)]
    assert not fetched  # each came in its worker's note, ahead of Dask's "finished"
    assert executor.submit(bytes, 4096).result(timeout=60) == bytes(4096)  # over 1 KB
    assert len(fetched) == 1
    assert executor.submit(make_local, 7).result(timeout=60).value == 7  # by value
    with pytest.raises(ValueError, match="small") as info:  # noted or fetched: the same
        executor.submit(testing.fail, "small").result(timeout=60)
    assert "Traceback" in str(info.value.__cause__)  # the worker's, chained


def test_prefetch_sends_work_ahead_and_keeps_results_in_order(cluster: DaskCluster) -> None:
    with corral.DaskExecutor(cluster.address, max_workers=2, prefetch=4) as ex:
        assert list(ex.map(testing.square, range(40))) == [x * x for x in range(40)]
        assert ex.statistics().completed == 40


def test_two_executors_share_a_client_and_its_event_subscription(cluster: DaskCluster) -> None:
    with distributed.Client(cluster.address, set_as_default=False) as client:
        seen: list[Any] = []
        client.subscribe_topic("all", seen.append)  # the user's own handler
        first = corral.DaskExecutor(client=client)
        second = corral.DaskExecutor(client=client)
        # the user's handler still sees the events while the executors share it (sent
        # again until one comes: the subscriptions travel on another connection)
        testing.wait_until(
            lambda: seen or client.log_event("all", {"action": "test"}),
            30,
            message="the user's handler called",
        )
        assert first.submit(testing.square, 2).result(timeout=30) == 4
        first.shutdown()
        assert second.submit(testing.square, 3).result(timeout=30) == 9
        second.shutdown()
        assert client._event_handlers["all"] == seen.append  # given back


def test_security_is_passed_to_the_client(cluster: DaskCluster) -> None:
    from distributed.security import Security

    security = Security()  # no TLS here: the test cluster is plain tcp on loopback
    with corral.DaskExecutor(cluster.address, security=security) as ex:
        assert ex.client.security is security
        assert ex.submit(testing.square, 5).result(timeout=30) == 25


def test_async_with_and_awaiting_futures(cluster: DaskCluster) -> None:
    async def main() -> list[int]:
        async with corral.DaskExecutor(cluster.address, max_workers=2) as ex:
            first = await ex.submit(testing.square, 6)
            rest = [x async for x in ex.map(testing.square, range(4))]
            return [first, *rest]

    assert asyncio.run(main()) == [36, 0, 1, 4, 9]


def test_address_and_client_together_is_an_error(cluster: DaskCluster) -> None:
    with pytest.raises(ValueError, match="not both"):
        corral.DaskExecutor(cluster.address, client=object())


def test_an_asynchronous_client_is_refused() -> None:
    class AsyncClient:  # stands for distributed.Client(..., asynchronous=True)
        asynchronous = True

    with pytest.raises(ValueError, match="synchronous"):
        corral.DaskExecutor(client=AsyncClient())


def test_without_distributed_the_error_names_the_extra() -> None:
    code = (
        "import sys; sys.modules['distributed'] = None\n"
        "import corral\n"
        "try:\n"
        "    corral.DaskExecutor()\n"
        "except ImportError as e:\n"
        "    print(e)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    assert "pip install 'corral[dask]'" in out, out


def test_hooks_and_a_timeline_on_the_cluster(cluster: DaskCluster, tmp_path: Path) -> None:
    timeline = corral.Timeline()
    ends: list[corral.TaskEvent] = []
    hooks = [timeline, corral.Hooks(on_task_end=ends.append)]
    with (
        testing.Gate() as started,
        corral.DaskExecutor(cluster.address, max_workers=2, hooks=hooks) as ex,
    ):
        assert [f.result(60) for f in [ex.submit(testing.square, i) for i in range(6)]] == [
            0,
            1,
            4,
            9,
            16,
            25,
        ]
        with pytest.raises(ValueError):
            ex.submit(testing.fail).result(60)
        running = ex.submit(testing.sleep_until_cancelled, 60, started)
        assert started.wait(60)
        running.cancel()
    outcomes = sorted(e.outcome or "" for e in ends)
    assert outcomes == sorted(["completed"] * 6 + ["failed", "cancelled"])
    lanes = {e.worker for e in ends}
    assert lanes <= {"dask lane 0", "dask lane 1"}, lanes
    for lane in lanes:  # runs in one lane never overlap
        runs = sorted((r for r in timeline.runs if r.worker == lane), key=lambda r: r.started)
        for a, b in itertools.pairwise(runs):
            assert a.ended is not None and a.ended <= b.started
    timeline.write_chrome_trace(tmp_path / "trace.json")
    assert (tmp_path / "trace.json").stat().st_size > 0


# --------------------------------------------------------------------- sent ahead


def touch(path: str) -> str:
    """Creates ``path`` (the test learns that this task ran)."""
    with open(path, "w"):
        pass
    return path


def started_on_cluster(ex: corral.DaskExecutor, count: int) -> bool:
    """True once ``count`` tasks run on the cluster as far as corral knows."""
    return ex.statistics().running == count


def test_tasks_sent_ahead_are_pending_and_a_cancel_revokes_them(
    cluster: DaskCluster, tmp_path: Path
) -> None:
    """Four threads busy; six more tasks are sent ahead to the cluster. They count as
    pending (not running) until they start there; cancelling one removes it from Dask
    (it never runs) and counts it cancelled; the others run once threads free up."""
    threads = 4  # the module's cluster: 2 workers x 2 threads
    with testing.Gate() as gate, corral.DaskExecutor(cluster.address) as ex:
        busy = [ex.submit(testing.wait_for_gate, gate, i) for i in range(threads)]
        testing.wait_until(lambda: started_on_cluster(ex, threads), 60, message="4 running")
        paths = [str(tmp_path / f"ahead{i}") for i in range(6)]
        ahead = [ex.submit(touch, p) for p in paths]
        backend = ex._backend
        # all six are out on the cluster, not in corral's queue
        testing.wait_until(lambda: len(backend._by_key) == threads + 6, 30, message="sent")
        stats = ex.statistics()
        assert (stats.running, stats.pending) == (threads, 6), stats
        # the last sent: Dask keeps it in the scheduler's queue (not yet given to a
        # worker) while every thread is busy. A task already given to a worker could
        # start there before Dask's asynchronous cancel arrives (docs/dask.md).
        assert ahead[-1].cancel()
        assert ahead[-1].cancelled()
        stats = ex.statistics()
        assert (stats.running, stats.pending, stats.cancelled) == (threads, 5, 1), stats
        # the scheduler has taken the cancel: no thread frees up before that
        testing.wait_until(lambda: backend.stops.on_the_way == 0, 30, message="cancel taken")
        gate.open()
        assert [f.result(timeout=60) for f in busy] == list(range(threads))
        assert [f.result(timeout=60) for f in ahead[:-1]] == paths[:-1]
        stats = ex.statistics()
        assert (stats.completed, stats.cancelled, stats.pending) == (threads + 5, 1, 0)
    assert not os.path.exists(paths[-1]), "the task cancelled while sent ahead ran"


def test_max_pending_counts_tasks_sent_ahead(cluster: DaskCluster) -> None:
    with testing.Gate() as gate, corral.DaskExecutor(cluster.address, max_pending=3) as ex:
        busy = [ex.submit(testing.wait_for_gate, gate, i) for i in range(4)]
        testing.wait_until(lambda: started_on_cluster(ex, 4), 60, message="4 running")
        queued = [ex.submit_nowait(testing.square, i) for i in range(3)]
        testing.wait_until(lambda: len(ex._backend._by_key) == 7, 30, message="sent ahead")
        with pytest.raises(corral.QueueFull, match="max_pending=3"):
            ex.submit_nowait(testing.noop)  # sent ahead, not started: still pending
        assert ex.statistics().pending == 3
        gate.open()
        assert [f.result(timeout=60) for f in busy + queued] == [0, 1, 2, 3, 0, 1, 4]


def record_start(path: str, name: str) -> str:
    """Appends ``name`` to ``path``: the order in which tasks started."""
    with open(path, "a") as f:
        f.write(name + "\n")
    return name


def test_priorities_order_what_is_still_in_corrals_queue(cluster: DaskCluster) -> None:
    """Four threads busy, room for two tasks ahead (prefetch=2), eight submitted, then
    one of higher priority: it is sent before the six still in corral's queue. (Which
    worker runs it, and when, is then Dask's choice: the test checks what corral sends.)"""
    sent: list[str] = []
    with testing.Gate() as gate, corral.DaskExecutor(cluster.address, prefetch=2) as ex:
        real_map = ex.client.map

        def recording_map(function: Any, *iterables: Any, **kwargs: Any) -> Any:
            if function is dask_worker.run_task:  # its 5th argument: (args, kwargs)
                sent.extend(str(pickle.loads(call)[0][0]) for call in iterables[4])
            return real_map(function, *iterables, **kwargs)

        ex.client.map = recording_map
        busy = [ex.submit(testing.wait_for_gate, gate) for _ in range(4)]
        testing.wait_until(lambda: started_on_cluster(ex, 4), 60, message="4 running")
        low = [ex.submit(testing.identity, f"low{i}") for i in range(8)]
        urgent = ex.options(priority=10).submit(testing.identity, "urgent")
        # 4 running, 2 sent ahead: the window; the others wait in corral's queue
        testing.wait_until(lambda: len(ex._backend._by_key) == 6, 30, message="the window")
        assert ex.statistics().pending == 9
        gate.open()
        _, not_done = corral.wait([*busy, *low, urgent], timeout=60)
        assert not not_done
    names = [name for name in sent if name.startswith(("low", "urgent"))]
    # sent before every task still queued when it came (the first two lows may have
    # gone before it was submitted), the lows in their order
    assert "urgent" in names[:3], names
    assert [n for n in names if n != "urgent"] == [f"low{i}" for i in range(8)], names


def test_a_stop_goes_only_to_the_worker_running_the_task(
    executor: corral.DaskExecutor, tmp_path: Path
) -> None:
    calls: list[Any] = []
    client = executor.client
    real_run = client.run

    def run(function: Any, *args: Any, **kwargs: Any) -> Any:
        if function is dask_worker.stop_tasks:
            calls.append(kwargs.get("workers"))
        return real_run(function, *args, **kwargs)

    client.run = run
    pidfile = str(tmp_path / "pids")
    fut = executor.submit(testing.write_pids_and_hang, pidfile)
    inner = int(read_pids_file(pidfile))
    workers = set(client.run(os.getpid))  # their addresses
    assert fut.cancel()
    testing.wait_until(lambda: gone(inner), 10, 0.001, "the task's process to end")
    testing.wait_until(lambda: bool(calls), 10, message="the stop")
    assert len(calls) == 1 and len(calls[0]) == 1 and calls[0][0] in workers, calls


# --------------------------------------------------------------------- elastic


def test_the_executor_follows_workers_joining_and_leaving() -> None:
    cluster = DaskCluster(workers=1, nthreads=1)
    try:
        with testing.Gate() as gate, corral.DaskExecutor(cluster.address) as ex:
            assert ex.statistics().workers == 1 and ex._max_workers == 1
            cluster.add_worker("late")
            testing.wait_until(lambda: ex.statistics().workers == 2, 60, message="2 workers")
            assert ex._max_workers == 2
            futs = [ex.submit(testing.wait_for_gate, gate, i) for i in range(2)]
            testing.wait_until(lambda: started_on_cluster(ex, 2), 60, message="both running")
            gate.open()
            assert [f.result(timeout=60) for f in futs] == [0, 1]
            pid = cluster.procs[-1].pid  # the late worker's session: it leaves
            os.killpg(pid, signal.SIGKILL)
            testing.wait_until(lambda: ex.statistics().workers == 1, 60, message="1 worker")
            assert ex._max_workers == 1
            assert ex.submit(testing.square, 5).result(timeout=60) == 25
    finally:
        cluster.stop()


def test_an_explicit_max_workers_caps_what_runs_at_once(cluster: DaskCluster) -> None:
    with testing.Gate() as gate, corral.DaskExecutor(cluster.address, max_workers=2) as ex:
        futs = [ex.submit(testing.wait_for_gate, gate, i) for i in range(5)]
        testing.wait_until(lambda: started_on_cluster(ex, 2), 60, message="2 running")
        # the other three stay in corral's queue: none is sent, none can start
        assert len(ex._backend._by_key) == 2
        assert ex.statistics().pending == 3
        gate.open()
        assert [f.result(timeout=60) for f in futs] == list(range(5))


def test_a_cluster_without_workers_waits_for_one_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    cluster = DaskCluster(workers=0, nthreads=1)
    try:
        with caplog.at_level("WARNING", logger="corral"):
            ex = corral.DaskExecutor(cluster.address)
            try:
                futs = [ex.submit(testing.square, i) for i in range(3)]
                testing.wait_until(
                    lambda: "has no worker" in caplog.text, 30, message="the warning"
                )
                assert ex.statistics().pending == 3 and not any(f.done() for f in futs)
                assert caplog.text.count("has no worker") == 1
                cluster.add_worker("first")
                assert [f.result(timeout=60) for f in futs] == [0, 1, 4]
            finally:
                ex.shutdown(wait=True, kill=True)
    finally:
        cluster.stop()


def test_shutdown_cancelling_work_that_waits_for_a_worker_returns() -> None:
    cluster = DaskCluster(workers=0, nthreads=1)
    try:
        ex = corral.DaskExecutor(cluster.address)
        futs = [ex.submit(testing.square, i) for i in range(3)]
        ex.shutdown(wait=True, cancel_futures=True)
        assert all(f.cancelled() for f in futs)
        assert ex.statistics().cancelled == 3
    finally:
        cluster.stop()


NO_WORKER_SCRIPT = """
import sys, corral
from corral import testing
if __name__ == "__main__":
    ex = corral.DaskExecutor(sys.argv[1])
    fut = ex.submit(testing.square, 3)
    print("waiting", flush=True)
    ex.shutdown(wait=True)
"""


def test_ctrl_c_ends_a_shutdown_waiting_for_a_worker(tmp_path: Path) -> None:
    cluster = DaskCluster(workers=0, nthreads=1)
    try:
        script = tmp_path / "script.py"
        script.write_text(NO_WORKER_SCRIPT)
        proc = subprocess.Popen(
            [sys.executable, str(script), cluster.address],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert proc.stdout is not None
            assert proc.stdout.readline() == "waiting\n"
            proc.send_signal(signal.SIGINT)
            _, err = proc.communicate(timeout=testing.slack(30))
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        assert "KeyboardInterrupt" in err, err
        assert "has no worker" in err, err
    finally:
        cluster.stop()


# --------------------------------------------------------------------- a worker dies: queued work


@pytest.mark.parametrize("allowed_failures", ["0", "3"])
def test_tasks_queued_on_a_dead_worker_are_sent_again(
    tmp_path: Path, allowed_failures: str
) -> None:
    """Each worker (one thread) runs a task that waits on a gate; six more wait on the
    cluster, some handed to a worker already. One worker dies: only the task it was
    running fails (WorkerCrashed); the ones it held but had not started run elsewhere,
    as their first attempt."""
    cluster = DaskCluster(
        workers=2, nthreads=1, DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES=allowed_failures
    )
    try:
        with testing.Gate() as gate, corral.DaskExecutor(cluster.address) as ex:
            paths = [tmp_path / f"running{i}" for i in range(2)]
            running = [ex.submit(report_and_wait, str(p), gate, i) for i, p in enumerate(paths)]
            addresses = {pid: address for address, pid in ex.client.run(os.getpid).items()}
            workers = [dask_worker_of(p, set(addresses)) for p in paths]
            assert len(set(workers)) == 2
            victim = addresses[workers[0]]
            ahead = [ex.submit(testing.square, i) for i in range(6)]
            testing.wait_until(lambda: len(ex._backend._by_key) == 8, 30, message="sent")
            # Dask hands each worker one task beyond its thread (worker-saturation)
            testing.wait_until(
                lambda: len(ex.client.processing()[victim]) >= 2, 30, message="one held"
            )
            os.kill(workers[0], signal.SIGKILL)
            with pytest.raises(corral.WorkerCrashed):
                running[0].result(timeout=60)
            gate.open()
            assert running[1].result(timeout=60) == 1
            assert [f.result(timeout=60) for f in ahead] == [i * i for i in range(6)]
            assert [f.attempts for f in ahead] == [1] * 6
            stats = ex.statistics()
            assert (stats.crashed, stats.failed, stats.completed) == (1, 1, 7), stats
    finally:
        cluster.stop()


# --------------------------------------------------------------------- a scheduler restarts


def test_events_are_subscribed_again_after_a_scheduler_restart() -> None:
    """The Client reconnects to a scheduler restarted at the same address, which knows
    nothing of corral's subscriptions: corral subscribes again, so tasks sent ahead
    still say when they start, and a worker that leaves still fails its task."""
    cluster = DaskCluster(workers=1, nthreads=1)
    try:
        ex = corral.DaskExecutor(cluster.address, connect_timeout=testing.slack(60))
        try:
            assert ex.submit(testing.square, 2).result(timeout=60) == 4
            before = compat.scheduler_id(ex.client)
            cluster.restart_scheduler()
            testing.wait_until(
                lambda: (
                    compat.scheduler_id(ex.client) not in (before, None)
                    and ex.client.status == "running"
                ),
                testing.slack(60),
                message="the client to reconnect",
            )
            cluster.add_worker("after")
            with testing.Gate() as first, testing.Gate() as second, testing.Gate() as began:
                running = ex.submit(testing.wait_for_gate, first, 1, began)
                # it runs before the next is sent (Dask 2023.1 may otherwise start the
                # later task first, on the worker that joined)
                assert began.wait(60)
                ahead = ex.submit(testing.wait_for_gate, second, 2)
                first.open()
                assert running.result(timeout=60) == 1
                # the second starts on the thread the first left: only its start event
                # (on the new scheduler) tells corral
                testing.wait_until(
                    lambda: (ex.statistics().running, ex.statistics().pending) == (1, 0),
                    60,
                    message="the start of the task sent ahead",
                )
                addresses = ex.client.run(os.getpid)
                for pid in addresses.values():
                    os.kill(pid, signal.SIGKILL)
                with pytest.raises(corral.WorkerCrashed, match="left the cluster"):
                    ahead.result(timeout=60)
        finally:
            ex.shutdown(wait=True, kill=True)
    finally:
        cluster.stop()
