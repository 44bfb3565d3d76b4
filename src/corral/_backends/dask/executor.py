"""corral.DaskExecutor: the executor contract on a Dask cluster.

Data flow::

    submit() --pickle the call (at the call site)--push--> front queue (the same as the
       |          local pools: max_pending, priority, retries, task_timeout are the front's)
       +--dispatch: while fewer than max_workers (+ prefetch) tasks are out, pop one and
          Client.submit(run_task, key, fn_bytes, call_bytes, key=key, pure=False)
                         |
          Dask scheduler --> Dask worker thread: run_task (worker.py)
                         |      submits the call to the worker's own corral
                         |      ProcessPoolExecutor and waits for it
          Client event loop: a watcher coroutine per task awaits its Dask future,
          gathers the result and resolves the corral Future (then dispatches more)

Stopping running work (cancel, task_timeout, shutdown(kill=True), Ctrl+C): the corral
future is resolved at once by the front; then, on the client's event loop, the Dask
future is cancelled (so a task not started yet never starts) and ``stop_tasks(key)``
runs on every worker through ``Client.run``: the worker that runs the task kills the
inner process running it (docs/dask.md has the measured delay). Dask alone would
only forget the task and leave its thread running.

Worker deaths. An inner process that dies fails its task with corral's WorkerCrashed
(the Dask worker survives). A Dask worker process that dies takes the tasks it was
processing with it: the scheduler either fails them with KilledWorker (after
``distributed.scheduler.allowed-failures`` deaths; a cluster that DaskExecutor starts
sets it to 0) or re-runs them elsewhere. corral subscribes to the scheduler's
``remove-worker`` events and fails exactly those tasks with WorkerCrashed (stopping a
re-run Dask may already have started), and maps KilledWorker to WorkerCrashed too, so
corral's ``retries`` decide what runs again; tasks on other workers are untouched.

(Longer than corral's usual 500 lines: the front's docstring is the user's reference
for the contract on a cluster, and the backend's dispatch, watchers, stops and cluster
events share one state, every change of which must wake the shutdown's wait.)
"""

from __future__ import annotations

import asyncio
import functools
import heapq
import itertools
import logging
import threading
import uuid
from collections.abc import Callable
from typing import Any

from ... import _stdlib
from ..._checks import check_count, check_start_method, check_timeout
from ..._core import Core
from ..._errors import BrokenExecutor, SerializationError, WorkerCrashed
from ..._executor import BaseExecutor
from ..._map import Units
from ..._options import TaskOptions
from ..._pickling import FunctionPickler, dumps_call, load_exception
from ..._task import ENDED, RUNNING, Run, Task
from . import compat
from . import worker as dask_worker

LOGGER = logging.getLogger("corral")

#: Seconds a stop broadcast may take before corral stops waiting for it (a frozen or
#: unreachable worker would otherwise hold shutdown until the scheduler drops it).
STOP_TIMEOUT = 5.0

_INSTALL_HINT = (
    "corral.DaskExecutor needs the 'distributed' package, which is not installed in "
    "this environment ({error}); install the extra: pip install 'corral[dask]'"
)

_ids = itertools.count()

#: What a watcher reports when the Dask future was cancelled, not run to an end.
_DASK_CANCELLED = _stdlib.CancelledError("the Dask future was cancelled")


def _import_distributed() -> Any:
    try:
        import distributed
    except ImportError as error:
        raise ImportError(_INSTALL_HINT.format(error=error)) from error
    return distributed


def _check_arguments(distributed: Any, client: Any, security: Any, mp_context: Any) -> None:
    """The DaskExecutor arguments whose checks need ``distributed`` (or a look at
    the start methods). Raises TypeError or ValueError."""
    if client is not None and not isinstance(client, distributed.client.Client):
        raise TypeError(
            f"client must be a distributed.Client, not {type(client).__name__}; "
            "or pass the scheduler's address instead of a client"
        )
    allowed_security = (bool, dict, distributed.security.Security)
    if security is not None and not isinstance(security, allowed_security):
        raise TypeError(
            "security must be a distributed.security.Security (or True for temporary "
            f"credentials, or None), not {type(security).__name__} {security!r:.80}"
        )
    if mp_context is not None:
        if not isinstance(mp_context, str):
            raise TypeError(
                "mp_context must be a start method name (the workers' inner pools get it) "
                f"or None, not {type(mp_context).__name__} {mp_context!r:.80}"
            )
        check_start_method(mp_context)


def _close_cluster(cluster: Any) -> None:
    """Closes a LocalCluster and stops its event-loop thread.

    ``close()`` alone leaves the loop thread (and the in-process scheduler's
    threads and sockets) running on distributed 2023.1; ``__exit__`` stops them.
    """
    cluster.__exit__(None, None, None)


class _ClusterEvents:
    """One subscription to the scheduler's "all" events per Client, shared.

    A Client holds one handler per topic: the executors on one client (and a handler
    the user had set before) are called in turn by this one; the last executor to
    leave puts the user's handler back, or unsubscribes.
    """

    _lock = threading.Lock()
    _by_client: dict[int, tuple[Any, list[Callable[[Any], None]]]] = {}  # noqa: RUF012

    @classmethod
    def join(cls, client: Any, handler: Callable[[Any], None]) -> None:
        with cls._lock:
            entry = cls._by_client.get(id(client))
            if entry is None:
                previous = compat.event_handler(client, "all")
                entry = cls._by_client[id(client)] = (previous, [])
                first = True
            else:
                first = False
            entry[1].append(handler)
        if first:
            client.subscribe_topic("all", lambda event: cls._fan_out(client, event))

    @classmethod
    def leave(cls, client: Any, handler: Callable[[Any], None]) -> None:
        with cls._lock:
            entry = cls._by_client.get(id(client))
            if entry is None:
                return
            entry[1].remove(handler)
            if entry[1]:
                return
            del cls._by_client[id(client)]
        previous = entry[0]
        if previous is not None:
            client.subscribe_topic("all", previous)
        else:
            client.unsubscribe_topic("all")

    @classmethod
    def _fan_out(cls, client: Any, event: Any) -> None:
        with cls._lock:
            previous, handlers = cls._by_client.get(id(client), (None, []))
            handlers = list(handlers)
        for handler in [previous, *handlers]:
            if handler is None:
                continue
            try:
                handler(event)
            except Exception:  # pragma: no cover - a handler's own bug
                LOGGER.exception("corral: a Dask event handler failed")


class DaskExecutor(BaseExecutor):
    """The corral executor contract on a Dask cluster.

    Exactly one of three ways to reach a cluster:

    * ``DaskExecutor("tcp://scheduler:8786")`` connects a new Client to that scheduler
      (closed by shutdown; the cluster is not).
    * ``DaskExecutor(client=client)`` uses a Client you made (left open by shutdown).
    * ``DaskExecutor()`` starts a LocalCluster of worker processes that it owns and
      closes on shutdown. It listens on 127.0.0.1 only, with no dashboard.

    Every task runs in a corral process pool inside the Dask worker (see the module
    docs), so that cancel and ``task_timeout`` really stop it. The workers need corral
    installed, and the same Python packages your tasks import.

    Args:
        address: a scheduler address (``tcp://host:port``, ``tls://host:port``).
            A scheduler file is not accepted: pass the address it contains.
        client: a ``distributed.Client`` to use instead of ``address``.
        max_workers: most tasks running at once; default: the cluster's thread count
            when the executor starts (at least 1).
        max_pending: most tasks waiting to start; submit() blocks beyond it and
            submit_nowait() raises QueueFull. None: unbounded.
        task_timeout: default seconds a task may run; on overrun its future fails
            with TaskTimeout at once and the process running it is killed.
        retries: default re-runs of a task that failed with a retryable error
            (WorkerCrashed by default: an inner process or a Dask worker died).
        security: ``distributed.security.Security`` (or True for temporary TLS
            credentials on a local cluster), passed to the Client and LocalCluster.
        n_workers: worker processes of a local cluster (default: CPU count, capped
            at 4 by Dask's own defaults).
        threads_per_worker: threads (hence inner processes) of each local worker.
        connect_timeout: seconds to wait for the scheduler when connecting.
        mp_context: start method of the inner process pools (default: corral's).
        prefetch: tasks sent to Dask beyond ``max_workers``, so that a worker finds
            its next task already there instead of waiting a round trip to the client
            (more throughput for short tasks). Such tasks count as running for corral
            (statistics, ``running()``) while they wait on the cluster, and corral's
            priorities no longer order them; cancelling one kills nothing. Default 0:
            at most max_workers tasks are out of corral's queue.
        hooks: observers of task events, as for the local pools (docs/observability.md).
            A run starts, for hooks, when corral sends it to the cluster, and its
            ``worker`` is a lane ("dask lane 0", ...): one of the runs corral has in
            flight, not a Dask worker (the client does not learn which worker runs a
            task). No worker events: the cluster's workers are not corral's.

    Raises:
        ImportError: ``distributed`` is not installed (the message names the extra).
        ValueError: both ``address`` and ``client`` were given, an asynchronous
            client, a bad count, an unknown start method, or a ``tls://`` address
            without TLS credentials.
        TypeError: an argument of the wrong type (a ``client`` that is not a
            ``distributed.Client``, a ``security`` that is not a ``Security``).
            Every argument is checked before a cluster starts or anything connects.
        OSError / TimeoutError: the scheduler could not be reached in time, or refused
            the TLS certificate. A failed connection leaves no thread behind.

    The constructor blocks while it starts a local cluster or connects (up to
    ``connect_timeout``, then OSError/TimeoutError); Ctrl+C meanwhile raises
    KeyboardInterrupt, and a cluster it had started is closed.

    Once running, Ctrl+C cancels pending tasks and kills running ones, as for the
    local pools; ``shutdown(wait=True)`` waits for queued and running work, then
    closes the Client (and the cluster it started). To learn of dead Dask workers,
    the executor subscribes the Client to the scheduler's "all" events; a handler you
    set for that topic *before* making the executor keeps being called, one you set
    after replaces corral's (and dead workers are then seen only through KilledWorker).
    """

    _kind = "DaskExecutor"

    def __init__(
        self,
        address: str | None = None,
        *,
        client: Any = None,
        max_workers: int | None = None,
        max_pending: int | None = None,
        task_timeout: float | None = None,
        retries: int = 0,
        security: Any = None,
        n_workers: int | None = None,
        threads_per_worker: int | None = None,
        connect_timeout: float = 30.0,
        mp_context: str | None = None,
        prefetch: int = 0,
        hooks: object | None = None,
    ) -> None:
        if address is not None and client is not None:
            raise ValueError(
                "pass either a scheduler address or a client to DaskExecutor, not both"
            )
        if client is not None and getattr(client, "asynchronous", False) is True:
            raise ValueError(
                "DaskExecutor needs a synchronous distributed.Client (asynchronous=False): "
                "its futures are awaitable anyway; pass a client made without "
                "asynchronous=True, or an address"
            )
        distributed = _import_distributed()
        # every argument is checked before anything connects, or starts a cluster
        _check_arguments(distributed, client, security, mp_context)
        check_count("n_workers", n_workers, minimum=1, allow_none=True)
        check_count("threads_per_worker", threads_per_worker, minimum=1, allow_none=True)
        prefetch = check_count("prefetch", prefetch, minimum=0) or 0
        check_timeout("connect_timeout", connect_timeout, allow_none=False)
        core = self._core = Core(
            kind=self._kind,
            max_workers=1 if max_workers is None else max_workers,
            min_workers=0,
            idle_timeout=None,
            max_pending=max_pending,
            task_timeout=task_timeout,
            retries=retries,
            hooks=hooks,
        )
        try:
            backend = DaskBackend(
                core,
                distributed,
                address,
                client,
                size_from_cluster=max_workers is None,
                security=security,
                n_workers=n_workers,
                threads_per_worker=threads_per_worker,
                connect_timeout=connect_timeout,
                mp_context=mp_context,
                prefetch=prefetch,
            )
        except BaseException:
            if core.hooks is not None:
                core.hooks.finish()  # a pool that never was: its hooks thread ends too
            raise
        self._backend = backend
        self._attach(backend)

    @property
    def client(self) -> Any:
        """The ``distributed.Client`` this executor submits through."""
        return self._backend.client


class DaskBackend:
    """Sends the core's tasks to a Dask cluster (see the module docstring)."""

    inline_helper = None
    kill_grace = 0.0

    def __init__(
        self,
        core: Core,
        distributed: Any,
        address: str | None,
        client: Any,
        *,
        size_from_cluster: bool,
        security: Any,
        n_workers: int | None,
        threads_per_worker: int | None,
        connect_timeout: float,
        mp_context: str | None,
        prefetch: int,
    ) -> None:
        self.core = core
        self._distributed = distributed
        self._mp_context = mp_context
        self._prefetch = prefetch
        # unique across processes too: forked copies of a program must never share keys
        # on one scheduler (it would merge their tasks and hand one the other's result)
        self._id = self._new_id()
        self._tids = itertools.count(1)
        self._cluster: Any = None
        self._own_client = client is None
        self._by_key: dict[str, Run] = {}
        # hooks: each run in flight holds a lane (0, 1, ...), the "worker" events name
        self._free_lanes: list[int] = []
        self._lanes = 0
        self._lane_of: dict[Task, int] = {}
        self._stops = 0  # stop requests on their way to the workers
        self._drained = threading.Condition(core.lock)
        self._closer: threading.Thread | None = None
        self._closer_lock = threading.Lock()
        self._functions = FunctionPickler()
        if client is None:
            if address is None:
                self._cluster = self._start_local_cluster(
                    distributed, security, n_workers, threads_per_worker
                )
                address = self._cluster.scheduler_address
                # security=True made the cluster's temporary credentials: use those
                security = self._cluster.security
            try:
                client = distributed.Client(
                    address, security=security, timeout=connect_timeout, set_as_default=False
                )
            except BaseException as error:
                compat.stop_failed_client(distributed, error)
                if self._cluster is not None:
                    _close_cluster(self._cluster)
                if isinstance(error, TypeError) and "ssl_context" in str(error):
                    raise ValueError(
                        f"{address} is a TLS address, but no TLS credentials were given "
                        "(security=None and none in the Dask configuration): pass "
                        "security=distributed.security.Security(tls_ca_file=..., "
                        "tls_client_cert=..., tls_client_key=..., require_encryption=True)"
                        " with the cluster's CA and a certificate it trusts"
                    ) from error
                raise
        self.client = client
        self._loop = client.loop
        try:
            if size_from_cluster:
                # the one pool-wide setting a backend writes: before the pool runs
                core.max_workers = max(1, sum(client.nthreads().values()))
            self._in_flight = core.max_workers + self._prefetch
            # a Dask worker leaving fails the tasks it was processing (see module docs)
            _ClusterEvents.join(client, self._on_cluster_event)
        except BaseException:
            if self._own_client:
                client.close()
            if self._cluster is not None:
                _close_cluster(self._cluster)
            raise

    @staticmethod
    def _start_local_cluster(
        distributed: Any, security: Any, n_workers: int | None, threads: int | None
    ) -> Any:
        import dask

        # allowed-failures 0: a dying worker fails its tasks (KilledWorker, which
        # corral turns into WorkerCrashed) instead of Dask re-running them behind
        # corral's back; corral's retries decide.
        with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
            return distributed.LocalCluster(
                n_workers=n_workers,
                threads_per_worker=threads,
                processes=True,
                host="127.0.0.1",
                # no dashboard pages; the HTTP servers that remain (health, metrics)
                # listen on 127.0.0.1 too (distributed 2023.1 bound them to 0.0.0.0)
                dashboard_address=None,
                scheduler_kwargs={"dashboard": False, "dashboard_address": "127.0.0.1:0"},
                worker_dashboard_address="127.0.0.1:0",
                security=security,
                silence_logs=logging.ERROR,
                preload=["corral._backends.dask.worker"],  # workers ignore Ctrl+C (dask_setup)
            )

    # ------------------------------------------------------------------ backend seam

    def work_available_locked(self, shutdown: bool = False) -> Callable[[], None] | None:
        if shutdown:
            self._drained.notify_all()
            if not self.core.pending:
                return None
            # a retry requeued once shutdown began still runs (the closer waits for it)
        if (
            self.core.pending
            and len(self.core.running) < self._in_flight
            and self.core.broken is None
        ):
            return self._dispatch
        return None

    def stop_running_locked(self, task: Task, run: Run, why: str) -> Callable[[], None] | None:
        key = run.token
        if key is None:
            return None  # popped but not sent yet: _dispatch sees it ended and never sends it
        self._stop_locked(key)
        return functools.partial(self._send_stop, key, run.worker)

    def shutdown(self, wait: bool) -> None:
        with self._closer_lock:
            if self._closer is None:
                self._closer = threading.Thread(
                    target=self._close_when_drained,
                    name=f"{self._id}-closer",
                    daemon=True,
                )
                self._closer.start()
            closer = self._closer
        if wait and closer is not threading.current_thread():
            closer.join()

    def counts(self) -> tuple[int, int]:
        try:
            workers = len(self.client.scheduler_info().get("workers", {}))
        except Exception:  # closed client
            workers = 0
        with self.core.lock:
            idle = max(0, self.core.max_workers - len(self.core.running))
        return workers, idle

    # ------------------------------------------------------------------ dispatch

    def broken_error(self) -> BaseException:
        return BrokenExecutor(self.core.broken or "the Dask executor is broken")

    def signal_workers(self, signum: int) -> list[int]:
        return []  # the cluster's processes are not this program's to signal

    def map_units(
        self, opts: TaskOptions, fn: Callable[..., Any], chunksize: int, eager: bool
    ) -> Units | None:
        return None  # one Dask task per item

    def prepare(self, task: Task) -> BaseException | None:
        """At submit: pickles the call once, so that what won't pickle fails here.

        The error names the argument (SerializationError, a PicklingError); Dask then
        carries two byte strings, which it sends as they are.
        """
        try:
            fn_data, data, _ = dumps_call(self._functions, task.fn, task.args, task.kwargs, None)
        except SerializationError as error:
            return error
        task.payload = (fn_data, data)
        task.args = task.kwargs = None  # type: ignore[assignment]  # the payload has them
        return None

    def _dispatch(self) -> None:
        """Sends queued tasks to Dask while fewer than max_workers run."""
        doomed: list[Any] = []
        while True:
            with self.core.lock:
                if len(self.core.running) >= self._in_flight or self.core.broken is not None:
                    return
                task = self.core.pop_locked()
                if task is None:
                    return
                if not self._client_usable():
                    self.core.unstart_locked(task)
                    doomed = self._break_locked()
                    break
                key = f"{self._id}-{next(self._tids)}"
                run = task.run  # this run: a retry of it may be sent before we book it
                assert run is not None
                self.core.arm_timeout_locked(task)
                if self.core.hooks is not None:
                    self.core.task_started(task, f"dask lane {self._take_lane(task)}")
            try:
                dfut = self.client.submit(
                    dask_worker.run_task,
                    key,
                    self._mp_context,
                    *task.payload,
                    key=key,
                    pure=False,
                    retries=0,
                    priority=task.opts.priority,
                )
            except Exception as error:  # the client is closed, the call won't pickle
                with self.core.lock:
                    live = task.is_current(run)
                    if live:
                        self.core.finished_locked(task, error)
                    resolve = live and task.state is ENDED
                    self._drained.notify_all()
                if resolve:
                    task.fut._resolve(exception=error)
                continue
            except BaseException:  # Ctrl+C (or SystemExit) in this thread: not the task's
                with self.core.lock:
                    if task.is_current(run):
                        self.core.unstart_locked(task)  # back in the queue, as if never popped
                    self._drained.notify_all()
                raise
            with self.core.lock:
                live = task.is_current(run)
                if live:
                    run.token = key
                    run.worker = dfut
                    self._by_key[key] = run
                else:  # counted now: shutdown must not close the client first
                    self._stop_locked(key)
            if not live:  # cancelled or timed out while being sent
                self._send_stop(key, dfut)
                continue
            self._loop.add_callback(self._watch, run, key, dfut)
        for fut in doomed:  # (the loop ends here only when the client became unusable)
            fut._resolve(exception=self.broken_error())

    def _client_usable(self) -> bool:
        """False once the Client is closing or closed: it would take work and never run it."""
        status = getattr(self.client, "status", "running")
        return status in ("running", "connecting", "newly-created")

    def _break_locked(self) -> list[Any]:
        """Marks the executor broken (its client is gone); returns the queued futures to fail."""
        status = getattr(self.client, "status", "unknown")
        self._drained.notify_all()
        return self.core.break_locked(
            f"the Dask client of this executor was closed (status {status!r}) while work "
            "was queued or running: nothing more can be sent. Keep a Client you pass "
            "open until the executor is shut down, or make a new DaskExecutor"
        )

    @staticmethod
    def _new_id() -> str:
        """The prefix of this executor's Dask keys: unique across processes too."""
        return f"corral-{uuid.uuid4().hex}"

    def _take_lane(self, task: Task) -> int:
        """The lowest lane free (lock held): runs in flight never share one."""
        if self._free_lanes:
            lane = heapq.heappop(self._free_lanes)
        else:
            lane = self._lanes
            self._lanes += 1
        self._lane_of[task] = lane
        return lane

    def run_ended_locked(self, task: Task) -> None:
        lane = self._lane_of.pop(task, None)
        if lane is not None:
            heapq.heappush(self._free_lanes, lane)

    async def _watch(self, run: Run, key: str, dfut: Any) -> None:
        """On the client's loop: waits for the Dask future and books the outcome."""
        result: Any = None
        error: BaseException | None = None
        try:
            await compat.wait_done(dfut)  # done, without fetching the result yet
            with self.core.lock:
                current = run.task.is_current(run)
            if not current and dfut.status != "error":
                # stopped, timed out or failed by a worker's death: its result is not
                # wanted, and fetching it would race the Dask future's cancel (Dask
                # 2023.1 then asked the scheduler to compute the task again)
                del dfut
                self._complete(run, key, None, None)
                return
            ok, result = await compat.fetch_result(dfut)
            if not ok:
                error, result = load_exception(result), None
        except asyncio.CancelledError:
            error = _DASK_CANCELLED  # the client is closing
        except BaseException as exc:
            error = _DASK_CANCELLED if dfut.status == "cancelled" else self._translate(exc)
        del dfut  # the result stays on the cluster while a Dask future refers to it
        self._complete(run, key, result, error)

    def _translate(self, exc: BaseException) -> BaseException:
        distributed = self._distributed
        if isinstance(exc, distributed.KilledWorker):
            crashed = WorkerCrashed(
                f"the Dask worker running this task died (Dask: KilledWorker: {exc}); "
                "its process exited or was killed (out of memory?). Use retries= to "
                "run the task again"
            )
            crashed.__cause__ = exc
            return crashed
        return exc

    def _complete(self, run: Run, key: str, result: Any, error: BaseException | None) -> None:
        task = run.task
        with self.core.lock:
            self._by_key.pop(key, None)
            current = task.is_current(run)
            doomed: list[Any] = []
            if current and error is _DASK_CANCELLED:
                error = self._cancelled_outside()
                if not self._client_usable():
                    doomed = self._break_locked()
            if current:
                if isinstance(error, WorkerCrashed):
                    self.core.counts["crashed"] += 1
                self.core.finished_locked(task, error)
            resolve = current and task.state is ENDED
            wake = self.work_available_locked() if self.core.pending else None
            self._drained.notify_all()
        if wake is not None:
            wake()
        for fut in doomed:
            fut._resolve(exception=self.broken_error())
        if resolve:
            task.fut._resolve(result, error)

    def _cancelled_outside(self) -> BaseException:
        """The error of a task whose Dask future was cancelled, not by corral."""
        status = getattr(self.client, "status", "unknown")
        if status in ("closing", "closed"):
            return BrokenExecutor(
                f"the Dask client was closed (status {status!r}) while this task was out; "
                "the task may or may not have run. Keep a Client you pass open until the "
                "executor is shut down"
            )
        if status != "running":
            return BrokenExecutor(
                f"the Dask client lost the scheduler (client status {status!r}) while "
                "this task was out: the scheduler died or the network failed, and the "
                "task may or may not have run. Check the scheduler, then make a new "
                "DaskExecutor"
            )
        return BrokenExecutor(
            "the Dask future of this task was cancelled outside corral (Client.cancel "
            "or Client.restart on the same client?); the task may or may not have run"
        )

    # ------------------------------------------------------------------ stopping

    def _stop_locked(self, key: str) -> None:
        """Books a stop of the Dask task ``key`` (lock held), in the same hold that ended
        its run: shutdown never sees a moment with the run gone and its stop not yet on
        its way (it would close the client first). ``_send_stop`` sends it."""
        self._by_key.pop(key, None)
        self._stops += 1

    def _send_stop(self, key: str, dfut: Any) -> None:
        """Stops the Dask task ``key``: cancel it on Dask, kill its process on the worker."""
        asyncio_loop = getattr(self._loop, "asyncio_loop", None)
        if asyncio_loop is not None and asyncio_loop.is_closed():
            self._stop_done()  # the client is gone: nobody can send it (and add_callback
            return  # on a closed loop drops the call without a word)
        try:
            self._loop.add_callback(self._stop_async, key, dfut)
        except Exception:  # the loop is closed: the cluster is gone anyway
            self._stop_done()

    async def _stop_async(self, key: str, dfut: Any) -> None:
        try:
            # a worker that fails here (it is dying) does not keep the others from it
            # bounded: a frozen or unreachable worker must not hold shutdown for minutes
            await asyncio.wait_for(
                self.client.run(
                    dask_worker.stop_tasks, [key], asynchronous=True, wait=True, on_error="ignore"
                ),
                STOP_TIMEOUT,
            )
            if dfut is not None:
                await self.client.cancel([dfut], asynchronous=True)
        except Exception as error:
            LOGGER.debug("corral: stopping Dask task %s failed: %r", key, error)
        finally:
            self._stop_done()

    def _stop_done(self) -> None:
        with self.core.lock:
            self._stops -= 1
            self._drained.notify_all()

    def _on_cluster_event(self, event: Any) -> None:
        """Scheduler events (topic "all"): a worker that left fails its running tasks."""
        try:
            _, msg = event
            if not isinstance(msg, dict) or msg.get("action") != "remove-worker":
                return
            # also the tasks that had finished there but whose result was not fetched
            # yet: Dask would compute them again, behind corral's retries
            keys = [*(msg.get("processing-tasks") or ()), *(msg.get("lost-computed-tasks") or ())]
            worker = msg.get("worker", "?")
            expected = msg.get("expected", False)
        except Exception:  # pragma: no cover - an event of another shape
            return
        doomed: list[tuple[Task, str, Any, WorkerCrashed, bool]] = []
        with self.core.lock:
            for key in keys:
                run = self._by_key.get(key) if isinstance(key, str) else None
                if run is None or not run.task.is_current(run):
                    continue
                task = run.task
                error = WorkerCrashed(
                    f"the Dask worker {worker} left the cluster while running this task "
                    "(or holding its result, not yet fetched) "
                    f"({'retired' if expected else 'it died or lost its connection'}); "
                    "use retries= to run it again on another worker"
                )
                self.core.counts["crashed"] += 1
                self.core.finished_locked(task, error)
                self._stop_locked(key)
                doomed.append((task, key, run.worker, error, task.state is ENDED))
            wake = self.work_available_locked() if doomed and self.core.pending else None
        for task, key, dfut, crash, ended in doomed:
            self._send_stop(key, dfut)  # Dask may be re-running it already
            if ended:
                task.fut._resolve(exception=crash)
        if wake is not None:
            wake()

    # ------------------------------------------------------------------ shutdown

    def _close_when_drained(self) -> None:
        """Waits for queued, running and retrying work, then closes what we own.

        Every change that can end the wait notifies ``_drained`` (a task ends, a cancel
        or timeout has sent its stop, a stop went out); the timeout is only a safety
        net against a change that does not.
        """
        with self.core.lock:
            while (
                (self.core.pending or self.core.running or self.core.backoff or self._stops)
                and self.core.broken is None
                and self._client_usable()
            ):
                self._drained.wait(5.0)
            if not self._client_usable():  # closed under us: what is out will never report
                self._break_locked()
                stranded = [t for t in self.core.running if t.state is RUNNING]
                for task in stranded:
                    self.core.finished_locked(task, BrokenExecutor(self.core.broken or "closed"))
                self._stops = 0
            else:
                stranded = []
        for task in stranded:
            if task.state is ENDED:
                task.fut._resolve(exception=BrokenExecutor(self.core.broken or "closed"))
        try:
            _ClusterEvents.leave(self.client, self._on_cluster_event)
        except Exception as error:  # pragma: no cover - a bug in corral
            LOGGER.warning("corral: leaving the Dask cluster events failed: %r", error)
        try:  # on its own: a client we own is closed whatever happened above
            if self._own_client:
                self.client.close()
        except Exception as error:  # pragma: no cover - a client already closed
            LOGGER.debug("corral: closing the Dask client failed: %r", error)
        if self._cluster is not None:
            _close_cluster(self._cluster)
        if self.core.hooks is not None:
            self.core.hooks.finish()  # every run has ended: no event will come
