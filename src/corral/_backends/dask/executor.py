"""corral.DaskExecutor: the executor contract on a Dask cluster.

Data flow::

    submit() --pickle the call (at the call site)--push--> front queue (the same as the
       |          local pools: max_pending, priority, retries, task_timeout are the front's)
       +--dispatch: while fewer than the window are out (a task per live thread of the
          cluster, and a send-ahead sized by the measured run time), pop them and
          Client.map(run_task, keys, ..., key=keys, pure=False), one call per batch
                         |
          Dask scheduler --> Dask worker thread: run_task (worker.py)
                         |      logs "started" on the executor's event topic, submits
                         |      the call to the worker's own corral ProcessPoolExecutor
                         |      and waits for it
          Client event loop: a watcher per task awaits its Dask future; the futures
          done together are gathered in one call and resolve the corral Futures
          (then dispatch more)

A task sent to a free thread runs (for statistics, task_timeout and hooks) from when
it is sent, as on the local pools; one sent ahead is pending until its start event
comes back (``Core.hand_ahead_locked``), so that ``max_pending`` and statistics stay
exact and its task_timeout clock starts only then.

Stopping running work (cancel, task_timeout, shutdown(kill=True), Ctrl+C): the corral
future is resolved at once by the front; then, on the client's event loop, the Dask
future is cancelled (a task not started yet never starts) and ``stop_tasks(key)``
runs, through ``Client.run``, on the worker whose start event named it: that worker
kills the inner process running it (docs/dask.md has the measured delay). A task
stopped before its start event came is remembered: if the event comes after all, the
stop goes to that worker then. Dask alone would only forget the task and leave its
thread running.

Worker deaths. An inner process that dies fails its task with corral's WorkerCrashed
(the Dask worker survives). A Dask worker process that dies takes the tasks it held
with it: the scheduler either fails them with KilledWorker (after
``distributed.scheduler.allowed-failures`` deaths; a cluster that DaskExecutor starts
sets it to 0) or re-runs them elsewhere. corral subscribes to the scheduler's
``remove-worker`` events: the task that had started there fails with WorkerCrashed
(corral stops a re-run Dask may already have started, so that corral's ``retries``
decide), and the tasks it held without starting them are sent again, as the same
attempt (DESIGN §3.4). KilledWorker maps the same way. Workers joining and leaving
(the same events) resize the window; a client that reconnected to a restarted
scheduler is subscribed again before the next task is sent.

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
from ..._clock import now
from ..._core import Core
from ..._errors import BrokenExecutor, SerializationError, WorkerCrashed
from ..._executor import BaseExecutor
from ..._map import Units
from ..._options import TaskOptions
from ..._pickling import FunctionPickler, dumps_call, load_exception
from ..._task import ENDED, RUNNING, Run, Task
from . import compat
from . import worker as dask_worker
from .events import ClusterEvents

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

#: Send-ahead (``prefetch=None``): tasks sent beyond the cluster's threads wait there,
#: so that a thread that ends a task finds the next one instead of waiting a round
#: trip to this client. Per thread, about AHEAD_SECONDS of work (by the mean run time
#: measured so far), START_AHEAD before any measure, at most MAX_AHEAD; slow tasks get
#: none, so that none waits behind a long one while a thread is free. AHEAD_BYTES
#: bounds the arguments waiting on the cluster (they sit in the scheduler's memory).
AHEAD_SECONDS = 0.5
START_AHEAD = 4
MAX_AHEAD = 32
AHEAD_BYTES = 16 * 1024 * 1024

#: Weight of the newest measure in the send-ahead's running means.
_SMOOTHING = 0.1

#: Seconds between two questions to the scheduler while work waits and the cluster
#: has no worker (a joining worker's event asks at once: this is the safety net).
NO_WORKER_RECHECK = 2.0

#: Seconds a stop of a task corral had not seen start is remembered: a start event
#: that comes later sends the stop to that worker.
REVOKED_MEMORY = 300.0


class _KilledWorker(WorkerCrashed):
    """Dask's KilledWorker, as corral reports it: the worker running the task died."""


#: Outcomes of a run that may never have started on a worker.
_NOT_RUN = (BrokenExecutor, WorkerCrashed, _stdlib.CancelledError)


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
        max_workers: most tasks running at once. Default None: the cluster's live
            thread count, followed as workers join and leave (``cluster.adapt()``,
            ``dask worker`` started later); a number caps it (and then no more than
            that many tasks are out on the cluster at once).
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
        prefetch: tasks sent to the cluster beyond one per thread, so that a thread
            that ends a task finds the next one there instead of waiting a round trip
            to this client. Default None: sized by the measured run time (about 0.5 s
            of work per thread, at most 32 tasks per thread, none for slow tasks) and
            by the size of the calls (16 MB at most wait on the cluster). 0: never
            more tasks out than threads. A task sent ahead is pending (statistics,
            ``max_pending``) until it starts on a worker; its task_timeout clock starts
            then; cancelling it takes it back from Dask before it runs. Dask's own
            queue orders what was sent ahead (by the same priorities); corral's
            priorities order what is still in its queue.
        hooks: observers of task events, as for the local pools (docs/observability.md).
            A run starts, for hooks, when corral sends it to a free thread of the
            cluster, or when a task sent ahead starts there; its ``worker`` is a lane
            ("dask lane 0", ...): one of the runs under way, not a Dask worker. No
            worker events: the cluster's workers are not corral's.

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
    closes the Client (and the cluster it started). A cluster with no worker
    runs nothing: the tasks wait in corral's queue, a warning on the "corral" logger
    says so (once, until a worker joins), and they start when one joins;
    ``shutdown(wait=True)`` then waits for that, and Ctrl+C or
    ``shutdown(cancel_futures=True)`` cancels them. To learn of dead Dask workers,
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
        prefetch: int | None = None,
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
        prefetch = check_count("prefetch", prefetch, minimum=0, allow_none=True)
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
                max_workers=max_workers,
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
        max_workers: int | None,
        security: Any,
        n_workers: int | None,
        threads_per_worker: int | None,
        connect_timeout: float,
        mp_context: str | None,
        prefetch: int | None,
    ) -> None:
        self.core = core
        self._distributed = distributed
        self._mp_context = mp_context
        self._prefetch = prefetch
        self._max_workers = max_workers
        # unique across processes too: forked copies of a program must never share keys
        # on one scheduler (it would merge their tasks and hand one the other's result)
        self._id = self._new_id()
        self._topic = f"{self._id}-started"  # where its tasks say that they started
        self._tids = itertools.count(1)
        self._cluster: Any = None
        self._own_client = client is None
        self._by_key: dict[str, Run] = {}
        self._where: dict[str, str] = {}  # key -> the worker it started on
        # keys stopped before corral learnt where they run: a late start event of one
        # gets a stop sent to that worker (see _on_started)
        self._revoked: dict[str, float] = {}
        self._threads: dict[str, int] = {}  # worker -> its threads
        self._scheduler: Any = None  # id of the scheduler the subscriptions are on
        self._no_workers_since: float | None = None
        self._polling = False
        self._watchers: set[asyncio.Future[Any]] = set()
        self._done: list[tuple[Run, str, Any]] = []  # Dask futures done, to book (loop)
        self._unwatched: list[tuple[Run, str, Any]] = []  # sent, no watcher yet
        self._sent_lock = threading.Lock()
        self._dispatching = False  # a _dispatch_on_loop is on its way to the loop
        # the send-ahead's measures: mean seconds of a run, mean bytes of a call
        self._mean_run: float | None = None
        self._mean_bytes = 0.0
        self._collecting = False
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
            self._scheduler = compat.scheduler_id(client)
            # workers joining and leaving (see module docs), then the cluster's size
            ClusterEvents.join(client, self._on_cluster_event)
            client.subscribe_topic(self._topic, self._on_started)
            threads = {str(w): int(n) for w, n in client.nthreads().items()}
            with core.lock:
                self._set_threads_locked(threads)
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
        if self.core.pending and self.core.broken is None:
            if len(self.core.running) < self._window_locked():
                return self._dispatch_soon
            if not self._threads and not self._polling:
                return self._no_workers  # nothing can run: say so, and watch for workers
        return None

    def stop_running_locked(self, task: Task, run: Run, why: str) -> Callable[[], None] | None:
        key = run.token
        if key is None:
            return None  # popped but not sent yet: _dispatch sees it ended and never sends it
        worker = self._stop_locked(key)
        return functools.partial(self._send_stop, key, run.worker, worker)

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
        with self.core.lock:
            running = len(self.core.running) - self.core.waiting
            return len(self._threads), max(0, self.core.max_workers - running)

    # ------------------------------------------------------------------ the cluster's size

    def _window_locked(self) -> int:
        """Most tasks out on the cluster at once: one per thread, and ``prefetch`` (or
        the send-ahead above) waiting there for a thread; never more than an explicit
        ``max_workers``, so that no more than that run at once."""
        threads = sum(self._threads.values())
        if not threads:
            return 0
        if self._prefetch is not None:
            ahead = self._prefetch
        else:
            mean = self._mean_run
            per_thread = START_AHEAD if mean is None else int(AHEAD_SECONDS / max(mean, 1e-6))
            ahead = min(per_thread, MAX_AHEAD) * threads
            ahead = min(ahead, int(AHEAD_BYTES / max(self._mean_bytes, 1.0)))
        window = threads + ahead
        return window if self._max_workers is None else min(window, self._max_workers)

    def _set_threads_locked(self, threads: dict[str, int]) -> None:
        """The cluster's workers now (lock held): the window follows them."""
        self._threads = threads
        total = sum(threads.values())
        # max_workers: what runs at once, the cluster's threads unless capped
        cap = total if self._max_workers is None else min(total, self._max_workers)
        self.core.max_workers = max(1, cap)
        if total:
            self._no_workers_since = None

    def _refresh_soon(self) -> None:
        """Asks the scheduler for its workers' threads, on the client's loop."""
        try:
            self._loop.add_callback(self._refresh)
        except Exception:  # pragma: no cover - the loop is closed: nothing to size
            pass

    async def _refresh(self) -> None:
        try:
            threads = await compat.worker_threads(self.client)
        except Exception as error:  # the scheduler is gone: the next event says more
            LOGGER.debug("corral: asking the Dask scheduler for its workers failed: %r", error)
            return
        with self.core.lock:
            self._set_threads_locked(threads)
            wake = self.work_available_locked()
        if wake is not None:
            wake()

    def _no_workers(self) -> None:
        """Work waits and the cluster has no worker: warn once, and watch for one."""
        with self.core.lock:
            if self._threads or self._polling or not self.core.pending:
                return
            self._polling = True
            first = self._no_workers_since is None
            if first:
                self._no_workers_since = now()
            waiting = self.core.pending
        if first:
            LOGGER.warning(
                "corral: the Dask cluster at %s has no worker: %d task(s) wait "
                "in corral's queue until one joins. Start workers (dask worker ADDRESS) "
                "or scale the cluster; shutdown(wait=True) waits for that work, "
                "shutdown(cancel_futures=True) or Ctrl+C cancels it",
                getattr(self.client.scheduler, "address", "?"),
                waiting,
            )
        try:
            self._loop.add_callback(self._watch_for_workers)
        except Exception:  # pragma: no cover - the loop is closed
            with self.core.lock:
                self._polling = False

    async def _watch_for_workers(self) -> None:
        """While work waits for a worker: asks the scheduler now and then. A joining
        worker's event asks at once; this covers a client whose events stopped (a
        handler set for "all" after the executor, a scheduler restarted)."""
        try:
            while True:
                await self._refresh()
                with self.core.lock:
                    if (
                        self._threads
                        or not self.core.pending
                        or self.core.broken is not None
                        or not self._client_usable()
                    ):
                        return
                await asyncio.sleep(NO_WORKER_RECHECK)
        finally:
            with self.core.lock:
                self._polling = False
                wake = self.work_available_locked()
            if wake is not None:
                wake()

    def _check_scheduler(self) -> None:
        """Subscribes again to the scheduler's events after the Client reconnected to a
        restarted one (the new scheduler has none of the old subscriptions)."""
        scheduler = compat.scheduler_id(self.client)
        if scheduler == self._scheduler or getattr(self.client, "status", None) != "running":
            return
        self._scheduler = scheduler
        try:
            ClusterEvents.renew(self.client, scheduler)
            self.client.subscribe_topic(self._topic, self._on_started)
        except Exception as error:  # pragma: no cover - the client closed meanwhile
            LOGGER.debug("corral: subscribing to the new Dask scheduler failed: %r", error)
        self._refresh_soon()

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

    def _dispatch_soon(self) -> None:
        """Dispatches on the client's loop: from there now; from another thread (a
        submit, a map's feeder) through one hop to the loop for every task queued
        meanwhile, so that a burst of submits goes out in a few Client.map calls."""
        try:
            on_loop = asyncio.get_running_loop() is getattr(self._loop, "asyncio_loop", None)
        except RuntimeError:  # no loop runs in this thread
            on_loop = False
        if on_loop:
            self._dispatch()
            return
        with self._sent_lock:
            if self._dispatching:
                return
            self._dispatching = True
        try:
            self._loop.add_callback(self._dispatch_on_loop)
        except Exception:  # pragma: no cover - the loop is closed
            with self._sent_lock:
                self._dispatching = False
            self._dispatch()  # (it finds the client closed and breaks the executor)

    def _dispatch_on_loop(self) -> None:
        with self._sent_lock:
            self._dispatching = False
        self._dispatch()

    def _dispatch(self) -> None:
        """Sends queued tasks to Dask while fewer than the window are out (the tasks
        popped in one hold of the lock in one message to the scheduler)."""
        self._check_scheduler()
        doomed: list[Any] = []
        while not doomed:
            batch: list[tuple[Task, Run, str]] = []
            with self.core.lock:
                room = self._window_locked() - len(self.core.running)
                while room > 0 and self.core.broken is None:
                    task = self.core.pop_locked()
                    if task is None:
                        break
                    if not self._client_usable():
                        self.core.unstart_locked(task)
                        doomed = self._break_locked()
                        break
                    run = task.run  # this run: a retry of it may be sent before we book it
                    assert run is not None
                    self._sending_locked(task, run)
                    batch.append((task, run, f"{self._id}-{next(self._tids)}"))
                    room -= 1
            if not batch:
                break
            self._send(batch)
        for fut in doomed:  # (the client became unusable)
            fut._resolve(exception=self.broken_error())

    def _sending_locked(self, task: Task, run: Run) -> None:
        """``run`` is about to be sent. To a thread free (none waits ahead of it, fewer
        than max_workers run): it runs from now, as on the local pools. Otherwise it
        is sent ahead: pending (``max_pending``, statistics), its task_timeout clock
        not running, until it says that it started (``_on_started``)."""
        running = len(self.core.running) - 1 - self.core.waiting  # (it is in running)
        if self.core.waiting or running >= self.core.max_workers:
            self.core.hand_ahead_locked(run)
            return
        self.core.arm_timeout_locked(task)
        if self.core.hooks is not None:
            self.core.task_started(task, f"dask lane {self._take_lane(task)}")

    def _send(self, batch: list[tuple[Task, Run, str]]) -> None:
        """Submits popped tasks to Dask, one ``Client.map`` per run of equal priority."""
        sent: list[tuple[Run, str, Any]] = []
        try:
            for priority, group in itertools.groupby(batch, lambda item: item[0].opts.priority):
                tasks = list(group)
                keys = [key for _, _, key in tasks]
                size = sum(len(task.payload[0]) + len(task.payload[1]) for task, _, _ in tasks)
                self._mean_bytes += (size / len(tasks) - self._mean_bytes) * _SMOOTHING
                try:
                    dfuts = self.client.map(
                        dask_worker.run_task,
                        keys,
                        [self._mp_context] * len(keys),
                        [self._topic] * len(keys),
                        [task.payload[0] for task, _, _ in tasks],
                        [task.payload[1] for task, _, _ in tasks],
                        key=keys,
                        pure=False,
                        retries=0,
                        priority=priority,
                    )
                except Exception as error:  # the client is closed
                    self._not_sent(tasks, error)
                    continue
                except BaseException:  # Ctrl+C (or SystemExit) in this thread: not the tasks'
                    self._not_sent(tasks, None)
                    raise
                stops = []
                with self.core.lock:
                    for (task, run, key), dfut in zip(tasks, dfuts, strict=True):
                        if task.is_current(run):
                            run.token = key
                            run.worker = dfut
                            self._by_key[key] = run
                            sent.append((run, key, dfut))
                        else:  # counted now: shutdown must not close the client first
                            self._stop_locked(key)
                            stops.append((key, dfut))
                for key, dfut in stops:  # cancelled or timed out while being sent
                    self._send_stop(key, dfut, None)
                del dfuts, stops
        finally:
            if sent:
                with self._sent_lock:  # one hop to the loop for what is sent meanwhile
                    hop = not self._unwatched
                    self._unwatched.extend(sent)
                if hop:
                    self._loop.add_callback(self._watch_all)

    def _not_sent(self, tasks: list[tuple[Task, Run, str]], error: BaseException | None) -> None:
        """Tasks Client.map did not take: they fail with ``error``, or (None: Ctrl+C in
        the thread that sent them) go back to the queue, as if never popped."""
        resolve = []
        with self.core.lock:
            for task, run, _ in tasks:
                if not task.is_current(run):
                    continue
                if error is None:
                    self.core.unstart_locked(task)
                    continue
                self.core.finished_locked(task, error)
                if task.state is ENDED:
                    resolve.append(task)
            self._drained.notify_all()
        for task in resolve:
            task.fut._resolve(exception=error)

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

    # ------------------------------------------------------------------ runs

    def _on_started(self, event: Any) -> None:
        """Tasks of this executor started on a worker (its event, on the client's loop)."""
        try:
            _, msg = event
            keys, worker = list(msg["keys"]), msg.get("worker")
        except Exception:  # pragma: no cover - an event of another shape
            return
        late = []
        with self.core.lock:
            for key in keys:
                run = self._by_key.get(key)
                if run is not None and run.task.is_current(run):
                    self._began_locked(run, key, worker)
                # stopped before corral knew where it runs: that worker must kill it
                elif self._revoked.pop(key, None) is not None and worker is not None:
                    self._stops += 1
                    late.append(key)
        for key in late:
            self._send_stop(key, None, worker)

    def _began_locked(self, run: Run, key: str, worker: str | None) -> None:
        """``run`` started (on ``worker``, if known): it runs now, its clock starts."""
        if worker is not None:
            self._where[key] = worker
        if not run.waiting:
            return  # (Dask ran it again elsewhere: only where it runs changed)
        task = run.task
        self.core.run_began_locked(run)
        self.core.arm_timeout_locked(task)
        if self.core.hooks is not None:
            self.core.task_started(task, f"dask lane {self._take_lane(task)}")

    async def _watch_all(self) -> None:
        with self._sent_lock:
            sent, self._unwatched = self._unwatched, []
        for run, key, dfut in sent:
            watcher = asyncio.ensure_future(self._watch(run, key, dfut))
            self._watchers.add(watcher)
            watcher.add_done_callback(self._watchers.discard)

    async def _watch(self, run: Run, key: str, dfut: Any) -> None:
        """On the client's loop: waits for the Dask future, then hands it to
        ``_collect``, which books the Dask futures done meanwhile together."""
        try:
            await compat.wait_done(dfut)  # done, without fetching the result yet
        except asyncio.CancelledError:  # the client is closing
            self._complete([(run, key, None, _DASK_CANCELLED)])
            return
        self._done.append((run, key, dfut))
        if not self._collecting:
            self._collecting = True
            self._loop.add_callback(self._collect)  # after the other watchers woken now

    async def _collect(self) -> None:
        """Books the Dask futures done: their results fetched in one gather."""
        try:
            while self._done:
                batch, self._done = self._done, []
                with self.core.lock:
                    current = [run.task.is_current(run) for run, _, _ in batch]
                outcomes: list[tuple[Run, str, Any, BaseException | None]] = []
                fetch: list[tuple[Run, str, Any]] = []
                for (run, key, dfut), live in zip(batch, current, strict=True):
                    if not live and dfut.status != "error":
                        # stopped, timed out or sent again: its result is not wanted,
                        # and fetching it would race the Dask future's cancel (Dask
                        # 2023.1 then asked the scheduler to compute the task again)
                        outcomes.append((run, key, None, None))
                    elif dfut.status == "finished":
                        fetch.append((run, key, dfut))
                    else:
                        outcomes.append(await self._outcome(run, key, dfut))
                del batch
                if fetch:
                    try:
                        values = await self.client.gather(
                            [dfut for _, _, dfut in fetch], asynchronous=True
                        )
                    except BaseException:  # one of them went meanwhile: one by one
                        for run, key, dfut in fetch:
                            outcomes.append(await self._outcome(run, key, dfut))
                    else:
                        for (run, key, _), value in zip(fetch, values, strict=True):
                            outcomes.append(self._unpack(run, key, value))
                        del values
                    del fetch  # a result stays on the cluster while a Dask future refers to it
                self._complete(outcomes)
        finally:
            self._collecting = False

    async def _outcome(
        self, run: Run, key: str, dfut: Any
    ) -> tuple[Run, str, Any, BaseException | None]:
        """The outcome of one done Dask future (its result fetched alone)."""
        try:
            value = await compat.fetch_result(dfut)
        except asyncio.CancelledError:
            return run, key, None, _DASK_CANCELLED
        except BaseException as exc:
            error = _DASK_CANCELLED if dfut.status == "cancelled" else self._translate(exc)
            return run, key, None, error
        return self._unpack(run, key, value)

    def _unpack(self, run: Run, key: str, value: Any) -> tuple[Run, str, Any, BaseException | None]:
        """What run_task returned: (ok, result or pickled error, seconds it ran)."""
        ok, result, seconds = value
        mean = seconds if self._mean_run is None else self._mean_run
        self._mean_run = mean + (seconds - mean) * _SMOOTHING  # (the loop's alone)
        if ok:
            return run, key, result, None
        return run, key, None, load_exception(result)

    def _translate(self, exc: BaseException) -> BaseException:
        distributed = self._distributed
        if isinstance(exc, distributed.KilledWorker):
            crashed = _KilledWorker(
                f"the Dask worker running this task died (Dask: KilledWorker: {exc}); "
                "its process exited or was killed (out of memory?). Use retries= to "
                "run the task again"
            )
            crashed.__cause__ = exc
            return crashed
        return exc

    def _complete(self, outcomes: list[tuple[Run, str, Any, BaseException | None]]) -> None:
        """Books the ends of runs, in one hold of the lock; then resolves their futures."""
        resolve: list[tuple[Task, Any, BaseException | None]] = []
        doomed: list[Any] = []
        with self.core.lock:
            for run, key, result, error in outcomes:
                task = run.task
                self._by_key.pop(key, None)
                self._where.pop(key, None)
                if not task.is_current(run):
                    continue
                if error is _DASK_CANCELLED:
                    error = self._cancelled_outside()
                    if not self._client_usable() and not doomed:
                        doomed = self._break_locked()
                if run.waiting and isinstance(error, _KilledWorker):
                    # its worker died before it started there: sent again, not failed
                    self.core.unstart_locked(task)
                    continue
                if run.waiting and not isinstance(error, _NOT_RUN):
                    self._began_locked(run, key, None)  # it ran: its start event is late
                if isinstance(error, WorkerCrashed):
                    self.core.counts["crashed"] += 1
                self.core.finished_locked(task, error)
                if task.state is ENDED:
                    resolve.append((task, result, error))
            wake = self.work_available_locked() if self.core.pending else None
            self._drained.notify_all()
        if wake is not None:
            wake()
        for fut in doomed:
            fut._resolve(exception=self.broken_error())
        for task, result, error in resolve:
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

    def _stop_locked(self, key: str) -> str | None:
        """Books a stop of the Dask task ``key`` (lock held), in the same hold that ended
        its run: shutdown never sees a moment with the run gone and its stop not yet on
        its way (it would close the client first). ``_send_stop`` sends it. Returns the
        worker the task started on, if corral knows it; otherwise a start event that
        comes later sends the stop there (``_on_started``)."""
        self._by_key.pop(key, None)
        self._stops += 1
        clock = now()
        if len(self._revoked) > 1024:  # old ones: Dask forgot those tasks long ago
            for old, when in list(self._revoked.items()):
                if clock - when > REVOKED_MEMORY:
                    del self._revoked[old]
        self._revoked[key] = clock
        return self._where.pop(key, None)

    def _send_stop(self, key: str, dfut: Any, worker: str | None) -> None:
        """Stops the Dask task ``key``: cancels it on Dask and, on the ``worker`` that
        runs it, kills its process."""
        asyncio_loop = getattr(self._loop, "asyncio_loop", None)
        if asyncio_loop is not None and asyncio_loop.is_closed():
            self._stop_done()  # the client is gone: nobody can send it (and add_callback
            return  # on a closed loop drops the call without a word)
        try:
            self._loop.add_callback(self._stop_async, key, dfut, worker)
        except Exception:  # the loop is closed: the cluster is gone anyway
            self._stop_done()

    async def _stop_async(self, key: str, dfut: Any, worker: str | None) -> None:
        try:
            if dfut is not None:  # first: a task still waiting on the cluster never starts
                await self.client.cancel([dfut], asynchronous=True)
            if worker is not None:
                # bounded: a frozen or unreachable worker must not hold shutdown for minutes
                await asyncio.wait_for(
                    self.client.run(
                        dask_worker.stop_tasks,
                        [key],
                        workers=[worker],
                        asynchronous=True,
                        wait=True,
                        on_error="ignore",
                    ),
                    STOP_TIMEOUT,
                )
        except Exception as error:
            LOGGER.debug("corral: stopping Dask task %s failed: %r", key, error)
        finally:
            self._stop_done()

    def _stop_done(self) -> None:
        with self.core.lock:
            self._stops -= 1
            self._drained.notify_all()

    def _on_cluster_event(self, event: Any) -> None:
        """Scheduler events (topic "all"): workers join and leave; the window follows,
        and a worker that left fails the tasks that had started there and sends again
        those that had not."""
        try:
            _, msg = event
            action = msg.get("action") if isinstance(msg, dict) else None
            if action not in ("add-worker", "remove-worker", "retire-workers"):
                return
            self._refresh_soon()
            if action != "remove-worker":
                return
            processing = [k for k in msg.get("processing-tasks") or () if isinstance(k, str)]
            # also the tasks that had finished there but whose result was not fetched
            # yet: Dask would compute them again, behind corral's retries
            lost = [k for k in msg.get("lost-computed-tasks") or () if isinstance(k, str)]
            worker = msg.get("worker", "?")
            expected = msg.get("expected", False)
        except Exception:  # pragma: no cover - an event of another shape
            return
        doomed: list[tuple[Task, WorkerCrashed, bool]] = []
        stops: list[tuple[str, Any]] = []
        with self.core.lock:
            for key in [*processing, *lost]:
                run = self._by_key.get(key)
                if run is None or not run.task.is_current(run):
                    continue
                task = run.task
                dfut = run.worker
                if key not in lost and run.waiting:
                    # queued on that worker, not started: sent again (a new Dask key)
                    self.core.unstart_locked(task)
                    self._stop_locked(key)
                    stops.append((key, dfut))
                    continue
                if key not in lost and self._where.get(key, worker) != worker:
                    continue  # Dask runs it again elsewhere already: that run goes on
                error = WorkerCrashed(
                    f"the Dask worker {worker} left the cluster while running this task "
                    "(or holding its result, not yet fetched) "
                    f"({'retired' if expected else 'it died or lost its connection'}); "
                    "use retries= to run it again on another worker"
                )
                self.core.counts["crashed"] += 1
                self.core.finished_locked(task, error)
                self._stop_locked(key)
                self._where.pop(key, None)
                stops.append((key, dfut))
                doomed.append((task, error, task.state is ENDED))
            wake = self.work_available_locked() if stops and self.core.pending else None
        for key, dfut in stops:
            self._send_stop(key, dfut, None)  # Dask may be running it again already
        for task, crash, ended in doomed:
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
            ClusterEvents.leave(self.client, self._on_cluster_event)
        except Exception as error:  # pragma: no cover - a bug in corral
            LOGGER.warning("corral: leaving the Dask cluster events failed: %r", error)
        try:  # a Client you keep must not keep this executor's handler
            self.client.unsubscribe_topic(self._topic)
        except Exception as error:  # a client closed already: nothing to leave
            LOGGER.debug("corral: leaving the Dask start events failed: %r", error)
        try:  # on its own: a client we own is closed whatever happened above
            if self._own_client:
                self.client.close()
        except Exception as error:  # pragma: no cover - a client already closed
            LOGGER.debug("corral: closing the Dask client failed: %r", error)
        if self._cluster is not None:
            _close_cluster(self._cluster)
        if self.core.hooks is not None:
            self.core.hooks.finish()  # every run has ended: no event will come
