"""DaskExecutor across several hosts: one network namespace per host (tests/netcluster.py).

The scheduler, two worker hosts and the client each have their own network stack and
address, joined by a switch; nothing else is reachable. Each test body runs in the
client's namespace (``net.client.call``: a driver process there), the way a user's
program on another machine would. Here: the contract's key cases across the network,
then a worker host whose link is cut while it runs tasks.

Skipped where namespaces cannot be made (not root, no ``ip``, not Linux).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

import corral
from corral import testing

pytest.importorskip("distributed")
cloudpickle = pytest.importorskip("cloudpickle")

from tests import netcluster  # noqa: E402
from tests.conftest import TLSFiles, gone  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

# the test bodies travel by value to the driver in the client namespace
cloudpickle.register_pickle_by_value(sys.modules[__name__])


def _cluster(tls: TLSFiles | None = None, **worker_env: str) -> Iterator[netcluster.NetCluster]:
    why_not = netcluster.unavailable()  # here, not at collection: `make quick` makes none
    if why_not is not None:
        pytest.skip(f"no network namespaces: {why_not}")
    cluster = netcluster.NetCluster(
        workers=2, nthreads=2, env=netcluster.FAST_FAILURE_ENV, worker_env=worker_env, tls=tls
    )
    try:
        yield cluster
    finally:
        cluster.stop()


#: For the worker hosts, Dask's default TCP timeout: a cut host is dropped by the
#: scheduler (11 s) well before it would give up on the scheduler itself, so its tasks
#: are still running when its link comes back.
PATIENT_WORKERS = {"DASK_DISTRIBUTED__COMM__TIMEOUTS__TCP": "30s"}


@pytest.fixture(scope="class")
def net() -> Iterator[netcluster.NetCluster]:
    """The cluster of TestAcrossHosts (stopped at the class's end: two clusters never
    share the CPUs)."""
    yield from _cluster(**PATIENT_WORKERS)


@pytest.fixture
def fresh_net() -> Iterator[netcluster.NetCluster]:
    """A cluster for one test that takes a host away."""
    yield from _cluster(**PATIENT_WORKERS)


@pytest.fixture
def impatient_net() -> Iterator[netcluster.NetCluster]:
    """A cluster whose workers too give up on a silent scheduler after 11 s."""
    yield from _cluster()


@pytest.fixture
def tls_net(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[netcluster.NetCluster, TLSFiles]]:
    """A cluster whose scheduler and workers speak only TLS, with its credentials."""
    pytest.importorskip("cryptography", reason="TLS credentials need the cryptography package")
    credentials = TLSFiles.temporary(str(tmp_path_factory.mktemp("tls")))
    for cluster in _cluster(tls=credentials):
        yield cluster, credentials


def my_network() -> str:
    """The network namespace of this process (``net:[inode]``): which host it is on."""
    return os.readlink("/proc/self/ns/net")


def report_and_wait(path: str, gate: testing.Gate, value: Any) -> tuple[Any, str]:
    """Writes its pid to ``path``, waits for the gate; returns ``(value, my_network())``."""
    with open(path + ".tmp", "w") as f:
        f.write(str(os.getpid()))
    os.replace(path + ".tmp", path)
    if not gate.wait(120):
        raise TimeoutError("the test never opened the gate")
    return value, my_network()


def network_after(seconds: float) -> str:
    """``my_network()``, after ``seconds`` (so that a burst spreads over the hosts)."""
    time.sleep(seconds)
    return my_network()


def read_pid(path: str) -> int:
    testing.wait_until(lambda: os.path.exists(path), testing.slack(30), 0.005, path)
    with open(path) as f:
        return int(f.read().split()[0])


def host_of(topology: netcluster.Topology, pid: int) -> str:
    """The worker host (w1, w2) whose namespace the live process ``pid`` runs in."""
    for host in ("w1", "w2"):
        if pid in topology.host_pids(host):
            return host
    raise AssertionError(f"process {pid} is in no worker host's namespace")


def host_named(topology: netcluster.Topology, network: str) -> str:
    """The host whose network namespace is ``network`` (from ``my_network()``)."""
    for host in topology.hosts:
        if f"net:[{os.stat(f'/run/netns/{topology.ns(host)}').st_ino}]" == network:
            return host
    raise AssertionError(f"{network} is no host's network namespace")


def tasks_on_both_hosts(
    ex: corral.DaskExecutor, topology: netcluster.Topology, folder: str, gate: testing.Gate
) -> tuple[list[corral.Future[Any]], list[int], list[str]]:
    """Four tasks waiting on ``gate``, two per host: their futures, pids and hosts."""
    paths = [os.path.join(folder, f"task{i}") for i in range(4)]
    futs = [ex.submit(report_and_wait, p, gate, i) for i, p in enumerate(paths)]
    pids = [read_pid(p) for p in paths]
    hosts = [host_of(topology, pid) for pid in pids]
    assert sorted(hosts) == ["w1", "w1", "w2", "w2"], hosts
    return futs, pids, hosts


#: Seconds after which the scheduler gives up on a silent host under FAST_FAILURE_ENV:
#: its connection to the worker times out (measured 10.7-11.2 s).
SILENT_HOST_DROPPED = 11.0


# --------------------------------------------------------------------- the contract


class TestAcrossHosts:
    """The contract's key cases, the client and the workers on different hosts."""

    def test_the_cluster_is_separate_hosts(self, net: netcluster.NetCluster) -> None:
        def body(address: str, outside: str | None) -> dict[str, Any]:
            import errno
            import socket
            import subprocess

            import distributed

            with distributed.Client(address, set_as_default=False) as client:
                workers = sorted(client.scheduler_info()["workers"])
            own = subprocess.run(["ip", "-4", "-o", "addr"], capture_output=True, text=True)
            routes = subprocess.run(["ip", "route"], capture_output=True, text=True)
            reach = None
            if outside is not None:  # this machine's own address, outside the switch
                with socket.socket() as probe:
                    probe.settimeout(5)
                    reach = errno.errorcode.get(probe.connect_ex((outside, 22)), "connected")
            return {
                "workers": workers,
                "addresses": sorted(line.split()[3] for line in own.stdout.splitlines()),
                "routes": routes.stdout.strip(),
                "outside": reach,
            }

        found = netcluster._ip("-4", "-o", "addr", "show", "scope", "global").stdout.split()
        outside = found[3].split("/")[0] if len(found) > 3 else None
        seen = net.client.call(body, net.address, outside)
        assert net.address.startswith("tcp://10.77.0.1:")
        assert [w.split(":")[1] for w in seen["workers"]] == ["//10.77.0.11", "//10.77.0.12"]
        assert seen["addresses"] == ["10.77.0.100/24", "127.0.0.1/8"]
        assert seen["routes"].splitlines() == [
            "10.77.0.0/24 dev eth0 proto kernel scope link src 10.77.0.100"
        ]
        assert seen["outside"] in (None, "ENETUNREACH"), seen["outside"]

    def test_submit_and_map_across_hosts(self, net: netcluster.NetCluster) -> None:
        def body(address: str) -> dict[str, Any]:
            with corral.DaskExecutor(address) as ex:
                one = ex.submit(testing.square, 7).result(timeout=60)
                mapped = list(ex.map(testing.square, range(20), buffersize=8))
                networks = set(ex.map(network_after, [0.1] * 12))
                return {"one": one, "mapped": mapped, "networks": sorted(networks)}

        got = net.client.call(body, net.address)
        assert got["one"] == 49
        assert got["mapped"] == [x * x for x in range(20)]
        hosts = {host_named(net.topology, network) for network in got["networks"]}
        assert hosts == {"w1", "w2"}, "the tasks should have run on both hosts"

    def test_cancel_kills_the_task_process_on_its_host(
        self, net: netcluster.NetCluster, tmp_path: Any
    ) -> None:
        def body(address: str, path: str) -> int:
            with corral.DaskExecutor(address) as ex:
                fut = ex.submit(testing.write_pids_and_hang, path)
                inner = read_pid(path)
                assert fut.cancel()
                testing.wait_until(lambda: gone(inner), testing.slack(10), 0.005, "the task's end")
                assert ex.submit(testing.square, 3).result(timeout=60) == 9
                return inner

        inner = net.client.call(body, net.address, str(tmp_path / "pid"))
        assert gone(inner)

    def test_task_timeout_kills_the_task_process(
        self, net: netcluster.NetCluster, tmp_path: Any
    ) -> None:
        def body(address: str, path: str) -> int:
            with corral.DaskExecutor(address, task_timeout=testing.slack(3)) as ex:
                fut = ex.submit(testing.write_pids_and_hang, path)
                inner = read_pid(path)
                try:
                    fut.result(timeout=testing.slack(60))
                except corral.TaskTimeout:
                    pass
                else:
                    raise AssertionError("no TaskTimeout")
                testing.wait_until(lambda: gone(inner), testing.slack(10), 0.005, "the task's end")
                assert ex.statistics().timed_out == 1
                return inner

        assert gone(net.client.call(body, net.address, str(tmp_path / "pid")))

    def test_an_exception_comes_back_with_the_worker_traceback(
        self, net: netcluster.NetCluster
    ) -> None:
        def body(address: str) -> BaseException:
            with corral.DaskExecutor(address) as ex:
                error = ex.submit(testing.fail, "broken on the host").exception(timeout=60)
                assert error is not None
                return error

        error = net.client.call(body, net.address)
        assert isinstance(error, ValueError) and str(error) == "broken on the host"
        cause = error.__cause__
        assert isinstance(cause, corral.WorkerTraceback), cause
        assert "in fail" in cause.tb and "corral/testing.py" in cause.tb, cause.tb

    def test_retries_run_a_crashed_task_again(
        self, net: netcluster.NetCluster, tmp_path: Any
    ) -> None:
        def body(address: str, counter: str) -> tuple[int, int]:
            with corral.DaskExecutor(address, retries=2) as ex:
                fut = ex.submit(testing.crash_times, counter, 2)
                return fut.result(timeout=testing.slack(60)), fut.attempts

        assert net.client.call(body, net.address, str(tmp_path / "count")) == (3, 3)

    # --------------------------------------------------------------------- a host cut off

    def test_a_short_cut_fails_nothing(self, net: netcluster.NetCluster, tmp_path: Any) -> None:
        """A host's link down for less than the TCP timeout: TCP resends what was lost,
        and its tasks end as if nothing had happened."""

        def body(address: str, topology: netcluster.Topology, folder: str) -> dict[str, Any]:
            with corral.DaskExecutor(address) as ex, testing.Gate() as gate:
                futs, _, hosts = tasks_on_both_hosts(ex, topology, folder, gate)
                topology.cut("w1")
                gate.open()  # w1's tasks end and send their results into the cut
                time.sleep(1)  # (the outage itself, not a synchronisation)
                topology.restore("w1")
                values = [f.result(timeout=testing.slack(30))[0] for f in futs]
                return {
                    "values": values,
                    "attempts": [f.attempts for f in futs],
                    "hosts": hosts,
                    "stats": ex.statistics(),
                }

        got = net.client.call(body, net.address, net.topology, str(tmp_path))
        assert got["values"] == [0, 1, 2, 3]
        assert got["attempts"] == [1, 1, 1, 1]
        assert (got["stats"].crashed, got["stats"].workers) == (0, 2)

    def test_the_client_cut_off_ends_its_futures_and_its_tasks(
        self, net: netcluster.NetCluster, tmp_path: Any
    ) -> None:
        """The client's own link goes down: every future fails with BrokenExecutor once
        Dask gives up on the scheduler, and the scheduler, which lost the client, has
        its tasks stopped on the workers; back online, a new executor works."""

        def body(address: str, topology: netcluster.Topology, folder: str) -> dict[str, Any]:
            out: dict[str, Any] = {}
            ex = corral.DaskExecutor(address, connect_timeout=5)
            try:
                paths = [os.path.join(folder, f"task{i}") for i in range(2)]
                futs = [ex.submit(testing.write_pids_and_hang, p) for p in paths]
                pids = [read_pid(p) for p in paths]
                begin = time.monotonic()
                topology.cut("client")
                done, _ = corral.wait(futs, timeout=testing.slack(60))
                out["failed_after"] = time.monotonic() - begin
                out["errors"] = [repr(f.exception()) for f in done]
                testing.wait_until(
                    lambda: all(map(gone, pids)),
                    testing.slack(60),
                    0.05,
                    "the tasks of the lost client to end",
                )
                out["tasks_gone_after"] = time.monotonic() - begin
            finally:
                topology.restore("client")
                begin = time.monotonic()
                ex.shutdown(wait=True, kill=True)
                out["shutdown"] = time.monotonic() - begin
            with corral.DaskExecutor(address) as again:
                out["again"] = again.submit(testing.square, 4).result(timeout=60)
            return out

        got = net.client.call(body, net.address, net.topology, str(tmp_path), timeout=110)
        print(f"\n{got}")
        assert len(got["errors"]) == 2, got
        assert all("BrokenExecutor" in e and "lost the scheduler" in e for e in got["errors"])
        assert got["shutdown"] < testing.slack(10)
        assert got["again"] == 16

    # last: it takes w1 out of the class's cluster
    def test_a_cut_host_fails_only_its_tasks_which_stop_when_it_is_back(
        self, net: netcluster.NetCluster, tmp_path: Any
    ) -> None:
        def body(address: str, topology: netcluster.Topology, folder: str) -> dict[str, Any]:
            out: dict[str, Any] = {}
            ex = corral.DaskExecutor(address)
            try:
                with testing.Gate() as gate:
                    futs, pids, hosts = tasks_on_both_hosts(ex, topology, folder, gate)
                    cut = [f for f, h in zip(futs, hosts, strict=True) if h == "w1"]
                    kept = [f for f, h in zip(futs, hosts, strict=True) if h == "w2"]
                    begin = time.monotonic()
                    topology.cut("w1")
                    done, _ = corral.wait(cut, timeout=testing.slack(60))
                    out["failed_after"] = time.monotonic() - begin
                    out["errors"] = [type(f.exception()).__name__ for f in done]
                    out["messages"] = [str(f.exception()) for f in done]
                    out["kept_running"] = [not f.done() for f in kept]
                    # the cut host's task processes still run: nothing can reach them
                    out["orphans"] = [p for p, h in zip(pids, hosts, strict=True) if h == "w1"]
                    out["orphans_alive"] = [not gone(p) for p in out["orphans"]]
                    gate.open()
                    out["kept"] = [f.result(timeout=testing.slack(30))[0] for f in kept]
                    out["more"] = ex.submit(testing.square, 6).result(timeout=testing.slack(30))
                    begin = time.monotonic()
                    topology.restore("w1")
                    testing.wait_until(
                        lambda: all(gone(p) for p in out["orphans"]),
                        testing.slack(30),
                        0.01,
                        "the cut host's task processes to end once it is back",
                    )
                    out["orphans_gone_after"] = time.monotonic() - begin
                    out["stats"] = ex.statistics()
                    out["hosts"] = hosts
            finally:
                begin = time.monotonic()
                ex.shutdown(wait=True, kill=True)
                out["shutdown"] = time.monotonic() - begin
            return out

        got = net.client.call(body, net.address, net.topology, str(tmp_path), timeout=100)
        print(f"\n{got}")
        assert got["errors"] == ["WorkerCrashed", "WorkerCrashed"], got["messages"]
        assert all("left the cluster" in m for m in got["messages"]), got["messages"]
        # (11 s after the last answer, or after the first message that got none: up to 16)
        assert got["failed_after"] < testing.slack(2 * SILENT_HOST_DROPPED), got["failed_after"]
        assert got["kept_running"] == [True, True]  # the other host's tasks went on
        assert got["orphans_alive"] == [True, True]  # (nothing can reach them yet)
        assert sorted(got["kept"]) == [i for i, h in enumerate(got["hosts"]) if h == "w2"]
        assert got["more"] == 36
        stats = got["stats"]
        assert (stats.crashed, stats.failed, stats.completed) == (2, 2, 3)
        assert got["shutdown"] < testing.slack(5)


# --------------------------------------------------------------------- a host cut off (more)


def test_a_cut_hosts_tasks_run_again_elsewhere_with_retries(
    impatient_net: netcluster.NetCluster, tmp_path: Any
) -> None:
    def body(address: str, topology: netcluster.Topology, folder: str) -> dict[str, Any]:
        with corral.DaskExecutor(address, retries=1) as ex, testing.Gate() as gate:
            futs, pids, hosts = tasks_on_both_hosts(ex, topology, folder, gate)
            begin = time.monotonic()
            topology.cut("w1")
            gate.open()  # the runs on w2 end; the reruns of w1's tasks pass at once
            values = [f.result(timeout=testing.slack(60)) for f in futs]
            stats = ex.statistics()
        # w1 never comes back: its Dask worker gives up on the scheduler by itself
        # (distributed.comm.timeouts.tcp) and takes the first runs with it
        orphans = [p for p, h in zip(pids, hosts, strict=True) if h == "w1"]
        testing.wait_until(
            lambda: all(map(gone, orphans)),
            testing.slack(60),
            0.05,
            "the cut host's task processes to end on their own",
        )
        return {
            "hosts": hosts,
            "values": [v for v, _ in values],
            "ran_on": [host_named(topology, network) for _, network in values],
            "attempts": [f.attempts for f in futs],
            "stats": stats,
            "orphans_gone_after": time.monotonic() - begin,
        }

    net = impatient_net
    got = net.client.call(body, net.address, net.topology, str(tmp_path), timeout=100)
    print(f"\n{got}")
    assert got["values"] == [0, 1, 2, 3]
    assert got["ran_on"] == ["w2"] * 4
    assert got["attempts"] == [2 if h == "w1" else 1 for h in got["hosts"]]
    stats = got["stats"]
    assert (stats.crashed, stats.retried, stats.failed, stats.completed) == (2, 2, 0, 4)


def test_shutdown_with_a_host_cut_off_returns_and_its_tasks_stop_when_it_is_back(
    fresh_net: netcluster.NetCluster, tmp_path: Any
) -> None:
    """shutdown(kill=True) cannot reach the cut host: it returns anyway, after corral's
    bounded wait for its stop messages; the host's tasks stop once it is back (its Dask
    worker learns that the scheduler dropped it and exits)."""

    def body(address: str, topology: netcluster.Topology, folder: str) -> dict[str, Any]:
        ex = corral.DaskExecutor(address)
        with testing.Gate() as gate:
            futs, pids, hosts = tasks_on_both_hosts(ex, topology, folder, gate)
            topology.cut("w1")
            begin = time.monotonic()
            ex.shutdown(wait=True, kill=True)
            took = time.monotonic() - begin
            assert all(f.cancelled() for f in futs)
            orphans = [p for p, h in zip(pids, hosts, strict=True) if h == "w1"]
            stopped = [p for p, h in zip(pids, hosts, strict=True) if h == "w2"]
            testing.wait_until(
                lambda: all(map(gone, stopped)), testing.slack(10), 0.01, "w2's tasks to end"
            )
            alive = [not gone(p) for p in orphans]
            topology.restore("w1")
            begin = time.monotonic()
            testing.wait_until(
                lambda: all(map(gone, orphans)),
                testing.slack(60),
                0.01,
                "the cut host's task processes to end once it is back",
            )
            return {"shutdown": took, "alive": alive, "gone_after": time.monotonic() - begin}

    net = fresh_net
    got = net.client.call(body, net.address, net.topology, str(tmp_path), timeout=100)
    print(f"\n{got}")
    assert got["alive"] == [True, True]
    # corral waits at most STOP_TIMEOUT (5 s) for its stop messages
    assert got["shutdown"] < testing.slack(8), got


# --------------------------------------------------------------------- TLS across hosts


def test_tls_across_hosts(tls_net: tuple[netcluster.NetCluster, TLSFiles], tmp_path: Any) -> None:
    """The scheduler and the workers on their own hosts speak only TLS: with the
    credentials, work runs on both hosts and cancel kills the task's process on its
    host; without them, or with another CA's, the client is refused at once."""
    net, credentials = tls_net

    def body(address: str, security: Any, path: str) -> dict[str, Any]:
        with corral.DaskExecutor(address, security=security) as ex:
            workers = sorted(ex.client.scheduler_info()["workers"])
            networks = set(ex.map(network_after, [0.1] * 12))
            fut = ex.submit(testing.write_pids_and_hang, path)
            inner = read_pid(path)
            assert fut.cancel()
            testing.wait_until(lambda: gone(inner), testing.slack(10), 0.005, "the task's end")
            return {
                "workers": workers,
                "networks": sorted(networks),
                "after": ex.submit(testing.square, 5).result(timeout=60),
            }

    def refused(address: str, security: Any) -> str:
        try:
            corral.DaskExecutor(address, security=security, connect_timeout=10).shutdown()
        except Exception as exc:
            return f"{type(exc).__name__}: {exc}"
        return "connected"

    assert net.address.startswith("tls://10.77.0.1:")
    got = net.client.call(body, net.address, credentials.security(), str(tmp_path / "pid"))
    assert [w.split(":")[:2] for w in got["workers"]] == [
        ["tls", "//10.77.0.11"],
        ["tls", "//10.77.0.12"],
    ]
    assert {host_named(net.topology, n) for n in got["networks"]} == {"w1", "w2"}
    assert got["after"] == 25
    stranger = TLSFiles.temporary(str(tmp_path))
    assert net.client.call(refused, net.address, None).startswith("ValueError: tls://10.77.0.1:")
    why = net.client.call(refused, net.address, stranger.security())
    assert "TLS certificate does not match" in why, why
