"""DaskExecutor's backend: the core's tasks on a Dask cluster.

Data flow::

    submit() --pickle the call (at the call site)--push--> front queue (the same as the
       |          local pools: max_pending, priority, retries, task_timeout are the front's)
       +--Dispatcher (dispatch.py): while fewer than the window (window.py) are out,
          pop them and Client.map(run_task, keys, ..., key=keys, pure=False), one
          call per batch
                         |
          Dask scheduler --> Dask worker thread: run_task (worker.py)
                         |      logs "started" on the executor's event topic, submits
                         |      the call to the worker's own corral ProcessPoolExecutor
                         |      and waits for it
          Client event loop: the worker's notes (its events) say which tasks started
          and carry small outcomes, booked here at once (``complete``, which resolves
          the corral Futures and dispatches more); a watcher per task awaits its Dask
          future (outcomes.py) and gathers, in one call for those done together, the
          outcomes no note carried

A task sent to a free thread runs (for statistics, task_timeout and hooks) from when
it is sent, as on the local pools; one sent ahead is pending until its start event
comes back (``Core.hand_ahead_locked``), so that ``max_pending`` and statistics stay
exact and its task_timeout clock starts only then.

Stopping running work (cancel, task_timeout, shutdown(kill=True), Ctrl+C): the corral
future is resolved at once by the front; then, on the client's event loop, the Dask
future is cancelled (a task not started yet never starts) and ``stop_tasks(key)``
runs, through ``Client.run``, on the worker whose start event named it (stops.py).
Dask alone would only forget the task and leave its thread running.

Worker deaths. An inner process that dies fails its task with corral's WorkerCrashed
(the Dask worker survives). A Dask worker process that dies takes the tasks it held
with it: the scheduler either fails them with KilledWorker (after
``distributed.scheduler.allowed-failures`` deaths; a cluster that DaskExecutor starts
sets it to 0) or re-runs them elsewhere. corral subscribes to the scheduler's
``remove-worker`` events: the task that had started there fails with WorkerCrashed
(corral stops a re-run Dask may already have started, so that corral's ``retries``
decide), and the tasks it held without starting them are sent again, as the same
attempt (DESIGN §3.4). KilledWorker maps the same way. Workers joining and leaving
(the same events) resize the window (cluster.py); a client that reconnected to a
restarted scheduler is subscribed again before the next task is sent.
"""

from __future__ import annotations

import functools
import heapq
import logging
import pickle
import threading
import uuid
from collections.abc import Callable
from typing import Any

from ..._core import Core
from ..._errors import BrokenExecutor, SerializationError, WorkerCrashed
from ..._map import Units
from ..._options import TaskOptions
from ..._pickling import FunctionPickler, dumps_call
from ..._task import ENDED, RUNNING, Run, Task
from . import compat
from .cluster import ClusterSize
from .connect import close_cluster
from .dispatch import Dispatcher
from .events import ClusterEvents
from .outcomes import DASK_CANCELLED, NOT_RUN, Collector, KilledWorker, Outcome, cancelled_outside
from .stops import Stops
from .window import Window

LOGGER = logging.getLogger("corral")


class DaskBackend:
    """Sends the core's tasks to a Dask cluster and books their ends (module docs).

    Its parts: a Dispatcher sends, a Collector watches what was sent, Stops stops it,
    ClusterSize keeps the Window's view of the cluster current. This class holds what
    they share (the runs out, by Dask key), books starts and ends, and shuts down.
    """

    inline_helper = None
    kill_grace = 0.0

    def __init__(
        self,
        core: Core,
        distributed: Any,
        client: Any,
        cluster: Any,
        *,
        own_client: bool,
        max_workers: int | None,
        mp_context: str | None,
        prefetch: int | None,
    ) -> None:
        self.core = core
        self.client = client
        self.loop = client.loop
        self._cluster = cluster
        self._own_client = own_client
        # unique across processes too: forked copies of a program must never share keys
        # on one scheduler (it would merge their tasks and hand one the other's result)
        self.id = self.new_id()
        self.topic = f"{self.id}-started"  # where its tasks say that they started
        self._by_key: dict[str, Run] = {}
        self.drained = threading.Condition(core.lock)  # every change shutdown waits on
        self.window = Window(prefetch, max_workers)
        self.stops = Stops(client, self.drained)
        self.collector = Collector(distributed, client, core.lock, self.window, self.complete)
        self.dispatcher = Dispatcher(self, mp_context)
        self.size = ClusterSize(self)
        self._lanes = Lanes()
        self._closer: threading.Thread | None = None
        self._closer_lock = threading.Lock()
        self._functions = FunctionPickler()
        try:
            self._scheduler = compat.scheduler_id(client)  # the subscriptions' scheduler
            # workers joining and leaving (see module docs), then the cluster's size
            ClusterEvents.join(client, self._on_cluster_event)
            client.subscribe_topic(self.topic, self._on_notes)
            threads = {str(w): int(n) for w, n in client.nthreads().items()}
            with core.lock:
                self.size.set_threads_locked(threads)
        except BaseException:
            if own_client:
                client.close()
            if cluster is not None:
                close_cluster(cluster)
            raise

    @staticmethod
    def new_id() -> str:
        """The prefix of this executor's Dask keys: unique across processes too."""
        return f"corral-{uuid.uuid4().hex}"

    # ------------------------------------------------------------------ backend seam

    def work_available_locked(self, shutdown: bool = False) -> Callable[[], None] | None:
        if shutdown:
            self.drained.notify_all()
            if not self.core.pending:
                return None
            # a retry requeued once shutdown began still runs (the closer waits for it)
        if self.core.pending and self.core.broken is None:
            if self.window.room(len(self.core.running), self.core.pending) > 0:
                return self.dispatcher.soon
            if not self.window.threads:
                return self.size.no_workers()  # nothing runs: say so, watch for workers
        return None

    def stop_running_locked(self, task: Task, run: Run, why: str) -> Callable[[], None] | None:
        key = run.token
        if key is None:
            return None  # popped but not sent yet: the dispatcher sees it ended, never sends
        worker = self._stop_locked(key)
        return functools.partial(self.stops.send, key, run.worker, worker)

    def shutdown(self, wait: bool) -> None:
        with self._closer_lock:
            if self._closer is None:
                self._closer = threading.Thread(
                    target=self._close_when_drained,
                    name=f"{self.id}-closer",
                    daemon=True,
                )
                self._closer.start()
            closer = self._closer
        if wait and closer is not threading.current_thread():
            closer.join()

    def counts(self) -> tuple[int, int]:
        with self.core.lock:
            running = len(self.core.running) - self.core.waiting
            return len(self.window.threads), max(0, self.core.max_workers - running)

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

    def run_ended_locked(self, task: Task) -> None:
        self._lanes.free(task)

    # ------------------------------------------------------------------ the client

    def client_usable(self) -> bool:
        """False once the Client is closing or closed: it would take work and never run it."""
        status = getattr(self.client, "status", "running")
        return status in ("running", "connecting", "newly-created")

    def break_locked(self) -> list[Any]:
        """Marks the executor broken (its client is gone); returns the queued futures to fail."""
        status = getattr(self.client, "status", "unknown")
        self.drained.notify_all()
        return self.core.break_locked(
            f"the Dask client of this executor was closed (status {status!r}) while work "
            "was queued or running: nothing more can be sent. Keep a Client you pass "
            "open until the executor is shut down, or make a new DaskExecutor"
        )

    def check_scheduler(self) -> None:
        """Subscribes again to the scheduler's events after the Client reconnected to a
        restarted one (the new scheduler has none of the old subscriptions)."""
        scheduler = compat.scheduler_id(self.client)
        if scheduler == self._scheduler or getattr(self.client, "status", None) != "running":
            return
        self._scheduler = scheduler
        try:
            ClusterEvents.renew(self.client, scheduler)
            self.client.subscribe_topic(self.topic, self._on_notes)
        except Exception as error:  # pragma: no cover - the client closed meanwhile
            LOGGER.debug("corral: subscribing to the new Dask scheduler failed: %r", error)
        self.size.refresh_soon()

    # ------------------------------------------------------------------ runs

    def sent_locked(self, run: Run, key: str, dfut: Any) -> None:
        """``run`` is out on the cluster as the Dask task ``key``."""
        run.token = key
        run.worker = dfut
        self._by_key[key] = run

    def starts_locked(self, task: Task) -> None:
        """``task``'s run starts now: its task_timeout clock, and the hooks' lane."""
        self.core.arm_timeout_locked(task)
        if self.core.hooks is not None:
            self.core.task_started(task, f"dask lane {self._lanes.take(task)}")

    def _on_notes(self, event: Any) -> None:
        """Tasks of this executor started on a worker, and small outcomes (its notes,
        on the client's loop: worker.py)."""
        try:
            _, msg = event
            keys, done = pickle.loads(msg["notes"])  # str keys, and bytes: no user code
            worker = msg.get("worker")
        except Exception:  # pragma: no cover - an event of another shape
            return
        late = []
        ended: list[tuple[Run, list[Any]]] = []
        with self.core.lock:
            for key in keys:
                run = self._by_key.get(key)
                if run is not None and run.task.is_current(run):
                    self._began_locked(run, key, worker)
                # stopped before corral knew where it runs: that worker must kill it
                elif worker is not None and self.stops.started_locked(key, worker):
                    late.append(key)
            for note in done:
                run = self._by_key.get(note[0])
                if run is not None and run.task.is_current(run):
                    ended.append((run, note))
        for key in late:
            self.stops.send(key, None, worker)
        if ended:  # unpickled outside the lock; complete() books only the runs still current
            self.complete([self.collector.noted(run, note) for run, note in ended])

    def _began_locked(self, run: Run, key: str, worker: str | None) -> None:
        """``run`` started (on ``worker``, if known): it runs now, its clock starts."""
        if worker is not None:
            self.stops.where[key] = worker
        if not run.waiting:
            return  # (Dask ran it again elsewhere: only where it runs changed)
        self.core.run_began_locked(run)
        self.starts_locked(run.task)

    def complete(self, outcomes: list[Outcome]) -> None:
        """Books the ends of runs, in one hold of the lock; then resolves their futures."""
        resolve: list[tuple[Task, Any, BaseException | None]] = []
        doomed: list[Any] = []
        with self.core.lock:
            for run, key, result, error in outcomes:
                task = run.task
                self._by_key.pop(key, None)
                self.stops.where.pop(key, None)
                if not task.is_current(run):
                    continue
                if error is DASK_CANCELLED:
                    error = cancelled_outside(self.client)
                    if not self.client_usable() and not doomed:
                        doomed = self.break_locked()
                if run.waiting and isinstance(error, KilledWorker):
                    # its worker died before it started there: sent again, not failed
                    self.core.unstart_locked(task)
                    continue
                if run.waiting and not isinstance(error, NOT_RUN):
                    self._began_locked(run, key, None)  # it ran: its start event is late
                if isinstance(error, WorkerCrashed):
                    self.core.counts["crashed"] += 1
                self.core.finished_locked(task, error)
                if task.state is ENDED:
                    resolve.append((task, result, error))
            wake = self.work_available_locked() if self.core.pending else None
            self.drained.notify_all()
        if wake is not None:
            wake()
        for fut in doomed:
            fut._resolve(exception=self.broken_error())
        for task, result, error in resolve:
            task.fut._resolve(result, error)

    def _stop_locked(self, key: str) -> str | None:
        """Books a stop of the run out as ``key`` (see Stops); returns its worker, if known."""
        self._by_key.pop(key, None)
        return self.stops.stop_locked(key)

    def _on_cluster_event(self, event: Any) -> None:
        """Scheduler events (topic "all"): workers join and leave; the window follows,
        and a worker that left fails the tasks that had started there and sends again
        those that had not."""
        try:
            _, msg = event
            action = msg.get("action") if isinstance(msg, dict) else None
            if action not in ("add-worker", "remove-worker", "retire-workers"):
                return
            self.size.refresh_soon()
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
        where = self.stops.where
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
                if key not in lost and where.get(key, worker) != worker:
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
                stops.append((key, dfut))
                doomed.append((task, error, task.state is ENDED))
            wake = self.work_available_locked() if stops and self.core.pending else None
        for key, dfut in stops:
            self.stops.send(key, dfut, None)  # Dask may be running it again already
        for task, crash, ended in doomed:
            if ended:
                task.fut._resolve(exception=crash)
        if wake is not None:
            wake()

    # ------------------------------------------------------------------ shutdown

    def _close_when_drained(self) -> None:
        """Waits for queued, running and retrying work, then closes what we own.

        Every change that can end the wait notifies ``drained`` (a task ends, a cancel
        or timeout has sent its stop, a stop went out); the timeout is only a safety
        net against a change that does not.
        """
        core = self.core
        with core.lock:
            while (
                (core.pending or core.running or core.backoff or self.stops.on_the_way)
                and core.broken is None
                and self.client_usable()
            ):
                self.drained.wait(5.0)
            if not self.client_usable():  # closed under us: what is out will never report
                self.break_locked()
                stranded = [t for t in core.running if t.state is RUNNING]
                for task in stranded:
                    core.finished_locked(task, BrokenExecutor(core.broken or "closed"))
                self.stops.on_the_way = 0
            else:
                stranded = []
        for task in stranded:
            if task.state is ENDED:
                task.fut._resolve(exception=BrokenExecutor(core.broken or "closed"))
        try:
            ClusterEvents.leave(self.client, self._on_cluster_event)
        except Exception as error:  # pragma: no cover - a bug in corral
            LOGGER.warning("corral: leaving the Dask cluster events failed: %r", error)
        try:  # a Client you keep must not keep this executor's handler
            self.client.unsubscribe_topic(self.topic)
        except Exception as error:  # a client closed already: nothing to leave
            LOGGER.debug("corral: leaving the Dask start events failed: %r", error)
        try:  # on its own: a client we own is closed whatever happened above
            if self._own_client:
                self.client.close()
        except Exception as error:  # pragma: no cover - a client already closed
            LOGGER.debug("corral: closing the Dask client failed: %r", error)
        if self._cluster is not None:
            close_cluster(self._cluster)
        if core.hooks is not None:
            core.hooks.finish()  # every run has ended: no event will come


class Lanes:
    """Hooks see each run in flight in a lane (0, 1, ...), the "worker" their events
    name: the lowest free one, so that runs in flight never share one (lock held)."""

    __slots__ = ("_count", "_free", "_of")

    def __init__(self) -> None:
        self._free: list[int] = []
        self._count = 0
        self._of: dict[Task, int] = {}

    def take(self, task: Task) -> int:
        if self._free:
            lane = heapq.heappop(self._free)
        else:
            lane = self._count
            self._count += 1
        self._of[task] = lane
        return lane

    def free(self, task: Task) -> None:
        lane = self._of.pop(task, None)
        if lane is not None:
            heapq.heappush(self._free, lane)
