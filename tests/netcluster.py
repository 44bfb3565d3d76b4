"""A Dask cluster of separate hosts on this machine: one network namespace per host.

Topology (Linux network namespaces, made with ``ip``; needs root)::

      sched 10.77.0.1        w1 10.77.0.11      w2 10.77.0.12      client 10.77.0.100
         eth0                   eth0               eth0               eth0
          |  veth                |                  |                  |
    [ switch namespace: bridge br0, ports "sched", "w1", "w2", "client" ]

Each host sees only its own loopback and its own address; there is no route out of the
switch and no default route, so nothing outside is reachable (nor can reach in). The
scheduler and each worker (under its nanny) run in their hosts' namespaces as ``dask
scheduler`` / ``dask worker`` processes; the client side runs in a driver process in
the client namespace (:class:`Driver`): a test sends it a function, which runs there
and returns a value or raises, with its traceback. ``cut(host)``/``restore(host)``
take a host's port on the switch down and up, as a pulled and replugged cable.

Names carry this process's pid (``corral<pid>x<n>-<host>``): parallel runs never
collide, and :func:`clean_stale` removes what a killed run left (its processes and
namespaces). :meth:`NetCluster.stop` always removes everything it made, whatever
failed; the cluster's processes also die with the test process (PR_SET_PDEATHSIG).

Run as ``python -m tests.netcluster`` it is the driver (see :class:`Driver`).
"""

from __future__ import annotations

import itertools
import json
import os
import pickle
import re
import select
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

from corral import testing
from tests.conftest import (
    DaskCluster,
    TLSFiles,
    _die_with_parent,
    semaphore_names,
    unlink_orphan_semaphores,
)

ROOT = Path(__file__).resolve().parent.parent
PREFIX = "corral"
SUBNET = "10.77.0"


def address_of(host: str) -> str:
    """The host's address: sched .1, worker host wN .(10+N), client .100."""
    if host == "sched":
        return f"{SUBNET}.1"
    if host == "client":
        return f"{SUBNET}.100"
    return f"{SUBNET}.{10 + int(host[1:])}"


#: Dask settings for a cluster whose failures show within seconds: a TCP connection that
#: gets no answer is dead after 11 s (Dask's floor: keepalive probes; default 30 s). The
#: kernel times that, so a busy machine does not make a live host look dead, as a short
#: heartbeat timeout (distributed.scheduler.worker-ttl, 5 s at the least) could.
FAST_FAILURE_ENV = {
    "DASK_DISTRIBUTED__COMM__TIMEOUTS__TCP": "11s",
}

_serial = itertools.count()


def unavailable() -> str | None:
    """Why namespaces cannot be made here (for a skip), or None when they can."""
    if not sys.platform.startswith("linux"):
        return "network namespaces are a Linux feature"
    if os.geteuid() != 0:
        return "making network namespaces needs root (ip netns add)"
    if shutil.which("ip") is None:
        return "the `ip` command (iproute2) is not installed"
    name = f"{PREFIX}{os.getpid()}x{next(_serial)}-probe"
    made = _ip("netns", "add", name, check=False)
    if made.returncode != 0:
        return f"`ip netns add` failed: {made.stderr.strip()}"
    _ip("netns", "del", name, check=False)
    return None


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if check and done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)} failed: {done.stderr.strip()}")
    return done


def _namespaces() -> list[str]:
    out = _ip("netns", "list", check=False).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def _kill_namespaces(names: list[str]) -> None:
    """Kills every process in the namespaces ``names``, then deletes them (and their veths)."""
    for _ in range(100):
        procs = []
        for name in names:
            for pid in _ip("netns", "pids", name, check=False).stdout.split():
                try:
                    procs.append(psutil.Process(int(pid)))
                    procs[-1].kill()
                except psutil.Error:
                    pass
        if not procs:
            break
        psutil.wait_procs(procs, timeout=1)  # (reaps those that are our children)
    for name in names:
        _ip("netns", "del", name, check=False)


def clean_stale() -> list[str]:
    """Removes the namespaces (and their processes) and the folders that runs whose
    process is gone left behind; returns the namespaces removed."""

    def stale(name: str) -> bool:  # named "corral<pid>x<n>-...": is that run gone?
        found = re.match(rf"{PREFIX}(\d+)x\d+-", name)
        return found is not None and not psutil.pid_exists(int(found.group(1)))

    removed = [name for name in _namespaces() if stale(name)]
    _kill_namespaces(removed)
    for folder in Path(tempfile.gettempdir()).glob(f"{PREFIX}*-netcluster*"):
        if stale(folder.name):
            shutil.rmtree(folder, ignore_errors=True)
    return removed


class Topology:
    """The namespaces and links; picklable (names only), so a driver can cut links too."""

    def __init__(self, hosts: list[str]) -> None:
        self.tag = f"{PREFIX}{os.getpid()}x{next(_serial)}"
        self.hosts = hosts
        self.switch = f"{self.tag}-switch"

    def ns(self, host: str) -> str:
        return f"{self.tag}-{host}"

    def all_namespaces(self) -> list[str]:
        return [self.ns(h) for h in self.hosts] + [self.switch]

    def build(self) -> None:
        _ip("netns", "add", self.switch)
        _ip("-n", self.switch, "link", "add", "br0", "type", "bridge")
        _ip("-n", self.switch, "link", "set", "br0", "up")
        for host in self.hosts:
            ns = self.ns(host)
            _ip("netns", "add", ns)
            _ip("-n", ns, "link", "set", "lo", "up")
            # created straight in the namespaces: no name ever appears on the host
            _ip("link", "add", "eth0", "netns", ns, "type", "veth", "peer", "name", host,
                "netns", self.switch)  # fmt: skip
            _ip("-n", ns, "addr", "add", f"{address_of(host)}/24", "dev", "eth0")
            _ip("-n", ns, "link", "set", "eth0", "up")
            _ip("-n", self.switch, "link", "set", host, "master", "br0")
            _ip("-n", self.switch, "link", "set", host, "up")

    def exec_prefix(self, host: str) -> list[str]:
        return ["ip", "netns", "exec", self.ns(host)]

    def cut(self, host: str) -> None:
        """Takes the host's switch port down: its packets go nowhere, silently."""
        _ip("-n", self.switch, "link", "set", host, "down")

    def restore(self, host: str) -> None:
        _ip("-n", self.switch, "link", "set", host, "up")

    def pids(self) -> set[int]:
        found: set[int] = set()
        for ns in self.all_namespaces():
            found.update(int(p) for p in _ip("netns", "pids", ns, check=False).stdout.split())
        return found

    def host_pids(self, host: str) -> set[int]:
        return {int(p) for p in _ip("netns", "pids", self.ns(host), check=False).stdout.split()}

    def teardown(self) -> None:
        _kill_namespaces(self.all_namespaces())


class NetCluster:
    """A scheduler, ``workers`` worker hosts and a client host, each its own namespace.

    ``env``: extra environment of every process (Dask settings, e.g.
    :data:`FAST_FAILURE_ENV`); ``worker_env``: more, for the worker hosts' processes.
    ``client`` is the driver in the client host (see :class:`Driver`), ``address`` the
    scheduler's. While it runs, the leak check of tests/conftest.py ignores its processes.
    """

    def __init__(
        self,
        workers: int = 2,
        nthreads: int = 2,
        env: dict[str, str] | None = None,
        worker_env: dict[str, str] | None = None,
        tls: TLSFiles | None = None,
    ) -> None:
        self._registry = DaskCluster.live  # the leak check's registry
        # TLS: the scheduler and every worker get the CA and the one certificate (each
        # must present one); the client passes ``tls.security()`` itself
        self._tls = [] if tls is None else tls.options()
        clean_stale()
        self.worker_hosts = [f"w{i + 1}" for i in range(workers)]
        self.topology = Topology(["sched", *self.worker_hosts, "client"])
        self.nthreads = nthreads
        self._dir = tempfile.mkdtemp(prefix=f"{self.topology.tag}-netcluster")
        self._semaphores = semaphore_names()
        self._env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
        self._worker_env = {**self._env, **(worker_env or {})}
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self._drivers: list[Driver] = []
        self._registry.add(self)
        try:
            self.topology.build()
            self._scheduler_file = os.path.join(self._dir, "scheduler.json")
            # everything starts at once (the workers wait for the scheduler's file)
            self.client = self.driver()
            self._spawn(
                "sched",
                "distributed.cli.dask_scheduler",
                f"--host={address_of('sched')}",
                "--port=0",
                "--no-dashboard",
                f"--dashboard-address={address_of('sched')}:0",
                f"--scheduler-file={self._scheduler_file}",
                *(["--protocol=tls", *self._tls] if self._tls else []),
            )
            for host in self.worker_hosts:
                self.start_worker(host)
            self.address = self._wait_for_address(self._scheduler_file)
            security = None if tls is None else tls.security()
            self.client.call(_wait_for_workers, self.address, workers, security, timeout=120)
        except BaseException as error:
            if hasattr(error, "add_note"):  # Python 3.11+
                for host in ["sched", *self.worker_hosts]:
                    error.add_note(f"--- {host}'s log:\n{self.log(host)}")
            self.stop()
            raise

    def _wait_for_address(self, path: str) -> str:
        found: list[str] = []

        def written() -> bool:
            try:
                with open(path) as f:
                    found.append(json.load(f)["address"])
            except (OSError, ValueError, KeyError):
                if self.procs["sched"].poll() is not None:
                    raise RuntimeError(f"the scheduler exited: {self.log('sched')}") from None
                return False
            return True

        testing.wait_until(written, testing.slack(60), 0.01, "the scheduler file")
        return found[-1]

    def _spawn(self, host: str, module: str, *args: str, env: dict[str, str] | None = None) -> None:
        with open(os.path.join(self._dir, f"{host}.log"), "wb") as log:
            self.procs[host] = subprocess.Popen(
                [*self.topology.exec_prefix(host), sys.executable, "-m", module, *args],
                env=env or self._env,
                cwd=ROOT,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )

    def start_worker(self, host: str) -> None:
        self._spawn(
            host,
            "distributed.cli.dask_worker",
            f"--scheduler-file={self._scheduler_file}",
            f"--host={address_of(host)}",
            "--no-dashboard",
            f"--dashboard-address={address_of(host)}:0",
            f"--nthreads={self.nthreads}",
            f"--name={host}",
            *self._tls,
            env=self._worker_env,
        )

    def log(self, host: str) -> str:
        """The last lines a host's Dask process wrote (for failure messages)."""
        try:
            text = Path(self._dir, f"{host}.log").read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-80:])

    def driver(self) -> Driver:
        """A new driver process in the client namespace (stopped with the cluster)."""
        made = Driver(self.topology, self._env, self._dir)
        self._drivers.append(made)
        return made

    def pids(self) -> set[int]:
        """Every process of the cluster: those in its namespaces and the drivers'."""
        found = self.topology.pids()
        for proc in [*self.procs.values(), *(d.proc for d in self._drivers)]:
            if proc.poll() is None:
                found.add(proc.pid)
        return found

    def stop(self) -> None:
        """Kills every process of the cluster, deletes its namespaces; never raises."""
        try:
            for proc in [*self.procs.values(), *(d.proc for d in self._drivers)]:
                if proc.poll() is not None:
                    continue  # reaped: its pid may be another process's now
                try:
                    os.killpg(proc.pid, signal.SIGKILL)  # (the rest: by namespace below)
                except ProcessLookupError:
                    pass
            self.topology.teardown()
            for drv in self._drivers:
                drv.close()
            for proc in self.procs.values():
                proc.wait()
        finally:
            self._registry.discard(self)
            unlink_orphan_semaphores(self._semaphores)
            shutil.rmtree(self._dir, ignore_errors=True)


def _wait_for_workers(address: str, count: int, security: Any = None) -> None:
    import distributed

    with distributed.Client(address, set_as_default=False, timeout=60, security=security) as client:
        client.wait_for_workers(count, timeout=60)


# --------------------------------------------------------------------- the driver

_HEADER = struct.Struct("!Q")


class Driver:
    """A Python process in the client namespace that runs the functions it is sent.

    ``call(fn, *args, timeout=)`` pickles ``fn`` (cloudpickle: a test's function
    travels by value) with its arguments, runs it in the driver and returns its value
    or raises its exception, the driver's traceback chained as ``__cause__``. A call
    that has not answered in ``timeout`` seconds kills the driver (TimeoutError, with
    the driver's output): a test never hangs on it.
    """

    def __init__(self, topology: Topology, env: dict[str, str], folder: str) -> None:
        self._log_path = os.path.join(folder, f"driver{next(_serial)}.log")
        with open(self._log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [*topology.exec_prefix("client"), sys.executable, "-m", "tests.netcluster"],
                env=env,
                cwd=ROOT,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )

    def call(self, fn: Callable[..., Any], *args: Any, timeout: float = 60, **kwargs: Any) -> Any:
        import cloudpickle

        from corral._pickling import load_exception

        assert self.proc.stdin is not None and self.proc.stdout is not None
        data = cloudpickle.dumps((fn, args, kwargs))
        self.proc.stdin.write(_HEADER.pack(len(data)) + data)
        self.proc.stdin.flush()
        reply = self._read(testing.slack(timeout))
        ok, value = pickle.loads(reply)
        if ok:
            return value
        raise load_exception(value)

    def _read(self, timeout: float) -> bytes:
        deadline = time.monotonic() + timeout
        fd = self.proc.stdout.fileno()  # type: ignore[union-attr]
        buf = b""
        need = _HEADER.size
        header = True
        while True:
            while len(buf) < need:
                left = deadline - time.monotonic()
                ready = select.select([fd], [], [], max(0.0, left))[0]
                chunk = os.read(fd, 1 << 20) if ready else None
                if not chunk:
                    self.close(kill=True)
                    why = "did not answer in time" if chunk is None else "exited"
                    raise TimeoutError(
                        f"the driver in the client namespace {why} ({timeout:g}s); "
                        f"its output:\n{self.output()}"
                    )
                buf += chunk
            if not header:
                return buf
            (need,) = _HEADER.unpack(buf[: _HEADER.size])
            buf = buf[_HEADER.size :]
            header = False

    def output(self) -> str:
        try:
            return Path(self._log_path).read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def close(self, kill: bool = False) -> None:
        """Ends the driver: at EOF of its input, or killed (at once with ``kill``, else
        if it does not end in time)."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        if kill and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        try:
            self.proc.stdin.close()  # the driver's loop ends at EOF
        except OSError:
            pass  # it was killed with data still in the pipe
        try:
            self.proc.wait(testing.slack(10))
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.proc.stdout.close()


def _serve() -> None:
    """The driver's loop: read a call, run it, answer; ends at EOF."""
    import cloudpickle

    from corral._pickling import dump_exception

    requests = sys.stdin.buffer
    replies = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # what a call prints goes to the log
    while True:
        header = requests.read(_HEADER.size)
        if len(header) < _HEADER.size:
            return
        (size,) = _HEADER.unpack(header)
        fn, args, kwargs = cloudpickle.loads(requests.read(size))
        try:
            answer = pickle.dumps((True, fn(*args, **kwargs)))
        except BaseException as exc:
            answer = pickle.dumps((False, dump_exception(exc)))
        replies.write(_HEADER.pack(len(answer)) + answer)
        replies.flush()


if __name__ == "__main__":
    _serve()
