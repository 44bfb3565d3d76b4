"""Shared fixtures: the leak check every test runs under, and the backend matrix."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import glob
import importlib.util
import os
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from typing import Any

import psutil
import pytest

import corral
from corral import testing

HAVE_DASK = importlib.util.find_spec("distributed") is not None


def _die_with_parent() -> None:
    """In a cluster process before exec: SIGKILL it when the test process dies.

    Without it, a test run killed or aborted (a hang broken with SIGABRT, say) left
    the scheduler and workers running, as they sit in sessions of their own. The
    nannies' worker processes follow their nanny, the task processes their worker.
    (Linux counts the death of the *thread* that started the process: clusters are
    started from the test's main thread.)
    """
    if sys.platform == "linux":
        import ctypes

        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def gone(pid: int) -> bool:
    """True once the process ``pid`` has ended (a zombie not yet reaped counts as ended)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@dataclasses.dataclass(frozen=True)
class TLSFiles:
    """TLS credentials as files, as the Dask command-line tools take them."""

    ca_file: str
    cert: str
    key: str

    @classmethod
    def temporary(cls, folder: str) -> TLSFiles:
        """A new self-signed certificate (its own CA) and key, written to ``folder``.

        Made by ``distributed.security.Security.temporary()`` (needs ``cryptography``).
        """
        from distributed.security import Security

        made = Security.temporary()
        paths = []
        for name, text in [("ca.pem", made.tls_ca_file), ("cert.pem", made.tls_client_cert),
                           ("key.pem", made.tls_client_key)]:  # fmt: skip
            path = os.path.join(folder, name)
            with open(path, "w") as f:
                f.write(text)
            paths.append(path)
        return cls(*paths)

    def options(self) -> list[str]:
        return [f"--tls-ca-file={self.ca_file}", f"--tls-cert={self.cert}", f"--tls-key={self.key}"]

    def security(self) -> Any:
        """The client's ``distributed.security.Security`` for these files."""
        from distributed.security import Security

        return Security(
            tls_ca_file=self.ca_file,
            tls_client_cert=self.cert,
            tls_client_key=self.key,
            require_encryption=True,
        )


def semaphore_names() -> set[str]:
    """multiprocessing's named semaphores in /dev/shm now."""
    try:
        return {n for n in os.listdir("/dev/shm") if n.startswith("sem.mp-")}
    except OSError:  # pragma: no cover - no /dev/shm
        return set()


def unlink_orphan_semaphores(before: set[str]) -> None:
    """Removes the multiprocessing semaphores made since ``before`` that no process
    maps anymore. A Dask cluster's processes make them (nannies, their queues and
    locks) and, killed at the end of a test, leave them behind: their resource tracker
    dies with them. One still mapped belongs to a live process and stays."""
    new = semaphore_names() - before
    if not new:
        return
    for maps in glob.glob("/proc/[0-9]*/maps"):
        try:
            with open(maps) as f:
                text = f.read()
        except OSError:
            continue
        new = {n for n in new if n not in text}
        if not new:
            return
    for name in new:
        with contextlib.suppress(OSError):
            os.unlink(os.path.join("/dev/shm", name))


class DaskCluster:
    """A Dask scheduler and workers, each its own process, listening on 127.0.0.1 only.

    Started as the command-line tools start them (``python -m distributed.cli.dask_scheduler``
    and ``...dask_worker``, each worker under its nanny), in their own sessions, so
    ``stop()`` kills every process of theirs, the inner corral pools included.
    While it runs, the leak check ignores its processes (and only those).
    """

    live: set[DaskCluster] = set()  # noqa: RUF012 - the registry the leak check reads

    def __init__(
        self, workers: int = 2, nthreads: int = 2, tls: TLSFiles | None = None, **env: str
    ) -> None:
        self._dir = tempfile.mkdtemp(prefix="corral-dask-")
        self._semaphores = semaphore_names()
        # TLS: every process gets the CA and the one certificate (all must present one)
        self._tls = [] if tls is None else tls.options()
        self.security = None if tls is None else tls.security()
        self.scheduler_file = os.path.join(self._dir, "scheduler.json")
        self.nthreads = nthreads
        self.procs: list[subprocess.Popen[bytes]] = []
        # daemonic workers are Dask's default, said here because the inner corral pools
        # must cope with them (multiprocessing refuses children to daemons)
        self._env = {**os.environ, "DASK_DISTRIBUTED__WORKER__DAEMON": "True", **env}
        DaskCluster.live.add(self)
        try:
            self._spawn(
                "distributed.cli.dask_scheduler",
                "--host=127.0.0.1",
                "--port=0",
                "--no-dashboard",
                "--dashboard-address=127.0.0.1:0",  # its HTTP server (health) too
                f"--scheduler-file={self.scheduler_file}",
                *(["--protocol=tls", *self._tls] if self._tls else []),
            )
            testing.wait_until(self._read_address, 60, 0.01, "the scheduler file")
            for i in range(workers):
                self.add_worker(f"w{i}")
            if workers:
                self.wait_for_workers(workers)
        except BaseException:
            self.stop()
            raise

    def _read_address(self) -> bool:
        """True once the scheduler has written its file (whole: it may be mid-write)."""
        import json

        try:
            with open(self.scheduler_file) as f:
                self.address: str = json.load(f)["address"]
        except (OSError, ValueError, KeyError):
            return False
        return True

    def _spawn(self, module: str, *args: str) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            [sys.executable, "-m", module, *args],
            env=self._env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        self.procs.append(proc)
        return proc

    def restart_scheduler(self) -> None:
        """Kills the scheduler and starts a new one at the same address (no workers:
        those of the old one may leave, or join the new one)."""
        scheduler = self.procs[0]
        os.killpg(scheduler.pid, signal.SIGKILL)
        scheduler.wait()
        os.remove(self.scheduler_file)
        port = self.address.rsplit(":", 1)[1]
        self.procs[0] = self._spawn(
            "distributed.cli.dask_scheduler",
            "--host=127.0.0.1",
            f"--port={port}",
            "--no-dashboard",
            "--dashboard-address=127.0.0.1:0",
            f"--scheduler-file={self.scheduler_file}",
        )
        self.procs.pop()  # (_spawn appended it: it is the scheduler now)
        testing.wait_until(self._read_address, 60, 0.01, "the new scheduler's file")

    def add_worker(self, name: str) -> None:
        self._spawn(
            "distributed.cli.dask_worker",
            f"--scheduler-file={self.scheduler_file}",
            "--host=127.0.0.1",
            "--no-dashboard",
            "--dashboard-address=127.0.0.1:0",
            f"--nthreads={self.nthreads}",
            f"--name={name}",
            *self._tls,
        )

    def wait_for_workers(self, count: int, timeout: float = 60.0) -> None:
        import distributed

        with distributed.Client(
            self.address, set_as_default=False, security=self.security
        ) as client:
            client.wait_for_workers(count, timeout=timeout)

    def pids(self) -> set[int]:
        """Every process of the cluster now: scheduler, nannies, workers, inner pools."""
        found = set()
        for proc in self.procs:
            try:
                root = psutil.Process(proc.pid)
                found.add(root.pid)
                found.update(p.pid for p in root.children(recursive=True))
            except psutil.Error:
                continue
        return found

    def stop(self) -> None:
        """Kills every process of the cluster (their whole sessions) and waits for them."""
        for proc in self.procs:
            for sig in (signal.SIGTERM, signal.SIGKILL):
                try:
                    os.killpg(proc.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    proc.wait(5 if sig == signal.SIGTERM else None)
                    break
                except subprocess.TimeoutExpired:
                    continue
            proc.wait()
        for proc in self.procs:  # grandchildren left in the sessions (inner pools)
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        DaskCluster.live.discard(self)
        unlink_orphan_semaphores(self._semaphores)
        import shutil

        shutil.rmtree(self._dir, ignore_errors=True)


_session_cluster: list[DaskCluster] = []
_session_lock = threading.Lock()


def session_dask_cluster() -> DaskCluster:
    """The cluster the contract suite's dask backend connects to (started once)."""
    with _session_lock:
        if not _session_cluster:
            _session_cluster.append(DaskCluster(workers=2, nthreads=2))
        return _session_cluster[0]


def _dask_executor(max_workers: int | None = None, **kwargs: Any) -> Any:
    """A DaskExecutor on the session cluster; it does not own the cluster."""
    return corral.DaskExecutor(session_dask_cluster().address, max_workers=max_workers, **kwargs)


#: Every backend the contract suite runs against: name -> factory(**kwargs).
BACKENDS: dict[str, Callable[..., Any]] = {
    "thread": corral.ThreadPoolExecutor,
    "process-forkserver": functools.partial(corral.ProcessPoolExecutor, mp_context="forkserver"),
    "process-spawn": functools.partial(corral.ProcessPoolExecutor, mp_context="spawn"),
    "process-fork": functools.partial(corral.ProcessPoolExecutor, mp_context="fork"),
}
if HAVE_DASK:
    BACKENDS["dask"] = _dask_executor


def _stop_session_cluster() -> None:
    with _session_lock:
        while _session_cluster:
            _session_cluster.pop().stop()


@pytest.fixture(scope="session", autouse=True)
def _stop_session_dask_cluster() -> Iterator[None]:
    yield
    _stop_session_cluster()


def pytest_configure(config: pytest.Config) -> None:
    """Gives SIGINT its default handler back if the run was started with it ignored.

    A shell without job control (a script's ``make test &``, some CI runners) starts
    background commands with SIGINT ignored, and every program a test starts inherits
    that: Python then leaves SIGINT ignored, and the tests that press Ctrl+C on a program
    (test_interrupt, test_dask, test_seeds) waited out their timeouts for an exit that
    could not come. Programs started from here get SIGINT as a terminal gives it.
    """
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    """Stops the session cluster once the run leaves the contract suite (its only user).

    Its idle processes would otherwise share the CPUs with the rest of the run; it
    starts again if a later test needs it.
    """
    if _session_cluster and (nextitem is None or nextitem.path.parent != item.path.parent):
        _stop_session_cluster()


def _dask_threads() -> set[int]:
    """Threads of the process-wide machinery of distributed (made once, kept for good)."""
    return {
        t.ident
        for t in threading.enumerate()
        if t.ident is not None and t.name.startswith(_DASK_GLOBAL_THREADS)
    }


#: The thread distributed starts once per process, on first use, and never ends: the
#: one-thread pool of distributed.utils.offload (deserialising large messages).
_DASK_GLOBAL_THREADS = ("Dask-Offload",)


@pytest.fixture(autouse=True)
def no_leaks() -> Iterator[None]:
    """Fails a test that leaves a thread, child process or shared-memory segment behind.

    The processes of a running DaskCluster (the session's, or one a test still holds)
    are not ours to reap per test, nor are distributed's process-wide threads.
    """
    before = testing.snapshot()
    yield
    if not DaskCluster.live and not sys.modules.get("distributed"):
        testing.assert_no_leaks(before, timeout=5.0)
        return

    def baseline() -> testing.Snapshot:
        cluster = set().union(*(c.pids() for c in DaskCluster.live))
        return dataclasses.replace(
            before,
            processes=before.processes | cluster,
            threads=before.threads | _dask_threads(),
        )

    try:
        testing.wait_until(lambda: not testing._leaks(baseline()), 5.0, 0.005, "cleanup")
    except AssertionError:
        raise AssertionError(f"leaked after the test: {testing._leaks(baseline())}") from None


@pytest.fixture(params=sorted(BACKENDS))
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def make_executor(backend: str) -> Iterator[Callable[..., Any]]:
    """Makes executors of the backend under test; shuts them all down afterwards."""
    made: list[Any] = []

    def make(*args: Any, **kwargs: Any) -> Any:
        executor = BACKENDS[backend](*args, **kwargs)
        made.append(executor)
        return executor

    yield make
    for executor in made:
        executor.shutdown(wait=True, kill=True)


@pytest.fixture
def gate() -> Iterator[testing.Gate]:
    with testing.Gate() as g:
        yield g


@pytest.fixture
def started() -> Iterator[testing.Gate]:
    with testing.Gate() as g:
        yield g
