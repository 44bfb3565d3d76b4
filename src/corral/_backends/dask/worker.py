"""The Dask worker side of DaskExecutor: runs each task in a corral process pool.

Dask can only *forget* a running task: its thread keeps running the user's code. So
the function that DaskExecutor sends to Dask (:func:`run_task`) does not run the call
itself. Each Dask worker process keeps one corral ProcessPoolExecutor (made on first
use, ``max_workers`` = the Dask worker's thread count), and ``run_task`` submits the
call to it and waits, while the inner future is registered under the task's key. To
stop a running task, the parent calls :func:`stop_tasks` on the workers (through
``Client.run``): it cancels the inner future, which kills that inner process (with its
process group) and lets the Dask thread return at once. The Dask worker itself is never
touched: a crash of the inner process (segfault, ``os._exit``, OOM kill) comes back as
corral's own WorkerCrashed and the Dask worker carries on.

The inner pool lives as long as the Dask worker process: its workers die with it
(PR_SET_PDEATHSIG and EOF on their pipes), and corral's interpreter-exit hook shuts it
down when the worker exits normally.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.util
import pickle
import signal
import threading
import time
from typing import Any

from ... import _stdlib
from ..._future import Future
from ..._pickling import dump_exception
from ..process.executor import ProcessPoolExecutor

#: Seconds a stop request for a task that has not started yet is remembered.
_EARLY_STOP_MEMORY = 300.0

_lock = threading.Lock()
_pool: ProcessPoolExecutor | None = None
_running: dict[str, Future[Any]] = {}
_stopped_early: dict[str, float] = {}  # key -> when the stop arrived


def _inner_pool(size: int, multiprocessing_context: str | None) -> ProcessPoolExecutor:
    global _pool
    with _lock:
        if _pool is None:
            # Dask's nanny starts worker processes as daemons (distributed.worker.daemon),
            # and multiprocessing refuses to let a daemon have children. Our children are
            # tied to this process anyway (PDEATHSIG, pipe EOF), which is what the flag
            # is for, so the worker is told it is not a daemon.
            multiprocessing.current_process()._config.pop("daemon", None)  # type: ignore[attr-defined]
            _pool = ProcessPoolExecutor(max(1, size), mp_context=multiprocessing_context)
            # A Dask worker under a nanny ends in multiprocessing's exit function, which
            # joins child processes before threading's exit hooks (corral's among them)
            # run: stop the pool first, or the worker would hang until the nanny kills it.
            multiprocessing.util.Finalize(None, _close_pool, exitpriority=100)
        return _pool


def _close_pool() -> None:
    """At the Dask worker's exit: kills the inner pool's processes and waits for them."""
    with _lock:
        pool = _pool
    if pool is not None:
        pool.shutdown(wait=True, kill=True)


def dask_setup(worker: Any) -> None:
    """Dask preload hook, run in each worker of a cluster that DaskExecutor starts.

    The worker processes of a LocalCluster share the terminal's process group, so
    Ctrl+C reached them too and each printed a KeyboardInterrupt traceback: they ignore
    SIGINT now, and the parent alone decides (DESIGN.md §3.6), as for corral's own
    workers. Called on the worker's event loop, in its main thread.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def run_task(key: str, mp_context: str | None, topic: str, fn_data: bytes, call_data: bytes) -> Any:
    """Runs the pickled call in this Dask worker's inner process pool.

    ``fn_data`` is the pickled function, ``call_data`` the pickled ``(args, kwargs)``
    (see DaskBackend.prepare). As it starts, the task says so on the scheduler's event
    ``topic`` (see :func:`_note_start`): the client counts a task sent ahead as pending
    until then, starts its task_timeout clock then, and learns which worker to send a
    stop to. As it ends, a small outcome goes the same way (see :func:`_note_done`).

    Returns ``(True, result, seconds)``, or ``(False, pickled exception, seconds)``
    (WorkerCrashed if the inner process died), ``seconds`` the time it ran (the
    client sizes its send-ahead by it): a failing call is a *result* for Dask, so Dask
    neither logs it as a failed computation nor loses its traceback, which travels as
    text and tblib frames (see _pickling.dump_exception). A task stopped by
    :func:`stop_tasks` returns ``(True, None, seconds)`` at once: the parent has already
    resolved its future and drops this value.
    """
    import distributed

    try:
        worker: Any = distributed.get_worker()
    except ValueError:  # not in a Dask worker (a test calling this directly)
        worker = None
        size = 1
    else:
        size = getattr(getattr(worker, "state", worker), "nthreads", 1)
    with _lock:  # stopped before it started: nothing runs, not even for a moment
        if _stopped_early.pop(key, None) is not None:
            return True, None, 0.0
    if worker is not None and topic:
        _note_start(worker, topic, key)
    began = time.perf_counter()
    ok, value = _run_call(worker, key, size, mp_context, fn_data, call_data)
    seconds = time.perf_counter() - began
    if worker is not None and topic:
        _note_done(worker, topic, key, ok, value, seconds)
    return ok, value, seconds


def _run_call(
    worker: Any, key: str, size: int, mp_context: str | None, fn_data: bytes, call_data: bytes
) -> tuple[bool, Any]:
    """run_task's call, in the inner pool: (True, result) or (False, pickled error)."""
    pool = _inner_pool(size, mp_context)
    try:
        fn = pickle.loads(fn_data)
        args, kwargs = pickle.loads(call_data)
        inner = pool.submit(fn, *args, **kwargs)
    except BaseException as exc:  # an argument that will not unpickle here
        return False, dump_exception(exc)
    del fn, args, kwargs
    with _lock:
        _running[key] = inner
        stop = _stopped_early.pop(key, None) is not None
    if stop:
        inner.cancel()
    try:
        while True:
            try:
                return True, inner.result(timeout=_ORPHAN_CHECK)
            except (TimeoutError, _stdlib.TimeoutError):
                # the client may be gone (killed, closed, or it cancelled the Dask
                # future itself) without a stop_tasks: then nobody wants this result
                if _forgotten(worker, key):
                    inner.cancel()
                    return True, None
    except _stdlib.CancelledError:
        return True, None
    except BaseException as exc:
        return False, dump_exception(exc)
    finally:
        with _lock:
            _running.pop(key, None)


#: Seconds the start notes of tasks wait to go out together (one event per topic).
START_NOTE_DELAY = 0.004

#: Outcomes that travel in the notes (see :func:`_note_done`): at most INLINE_MAX bytes
#: pickled, and INLINE_BUDGET bytes of them in one event (the scheduler keeps the last
#: events of each topic: ``distributed.admin.low-level-log-length``, 1000 by default).
INLINE_MAX = 1024
INLINE_BUDGET = 8192


class _Notes:
    """What this worker has to tell one client: tasks started, and outcomes."""

    __slots__ = ("done", "size", "started")

    def __init__(self) -> None:
        self.started: list[str] = []
        self.done: list[list[Any]] = []  # [key, ok, pickled result or error, seconds]
        self.size = 0  # bytes of the outcomes in ``done``


_notes: dict[str, _Notes] = {}  # topic -> what is not told yet
_queued: set[Any] = set()  # the senders below queued or running on the worker's loop


def _note_start(worker: Any, topic: str, key: str) -> None:
    """Tells the client (through the scheduler's events) that task ``key`` starts.

    The starts of a few milliseconds go out together, one event on each topic (the
    scheduler adds this worker's address; see :func:`_tell`): a burst of small tasks
    costs the worker, the scheduler and the client one event per batch, not one per
    task, and the worker's loop is woken once per batch, not once per task.
    """
    with _lock:
        _notes.setdefault(topic, _Notes()).started.append(key)
        if not _first_locked(_send_notes_later):
            return
    _queue(worker, _send_notes_later)


def _note_done(worker: Any, topic: str, key: str, ok: bool, value: Any, seconds: float) -> None:
    """Tells the client the outcome of task ``key`` in the notes, if it is small.

    A small outcome then needs no gather (a request from the client through the
    scheduler to this worker, and back), which for small tasks cost more than the
    tasks. The note is queued on the worker's loop before run_task returns, so it
    leaves on the worker's stream to the scheduler ahead of Dask's own "task
    finished", and the scheduler passes both to the client in that order: the client
    books the outcome before it sees the Dask future done, and does not fetch it. A
    larger outcome, or one that will not pickle, is fetched by the client as Dask
    results are, and so is any outcome whose note comes late.
    """
    payload = value if not ok else _small_pickle(value)
    if payload is None or len(payload) > INLINE_MAX:
        return
    with _lock:
        notes = _notes.setdefault(topic, _Notes())
        if notes.size + len(payload) > INLINE_BUDGET:
            return
        notes.done.append([key, ok, payload, seconds])
        notes.size += len(payload)
        if not _first_locked(_send_notes):
            return
    _queue(worker, _send_notes)


def _first_locked(sender: Any) -> bool:
    """True when ``sender`` is not queued on the worker's loop yet (and now counts as
    queued: the caller queues it). A sender takes every note there is when it runs."""
    if sender in _queued:
        return False
    _queued.add(sender)
    return True


def _queue(worker: Any, sender: Any) -> None:
    try:
        worker.loop.add_callback(sender, worker)
    except Exception:  # pragma: no cover - the worker is closing: nobody to tell
        with _lock:
            _queued.discard(sender)


class _Full(Exception):
    """A pickle grew past INLINE_MAX bytes."""


class _Bounded:
    """A file that takes at most INLINE_MAX bytes (a large result is not pickled whole)."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.size = 0

    def write(self, data: Any) -> int:
        self.size += len(memoryview(data).cast("B"))
        if self.size > INLINE_MAX:
            raise _Full
        self.parts.append(bytes(data))
        return len(self.parts[-1])


def _small_pickle(value: Any) -> bytes | None:
    """``value`` pickled as Dask pickles a result (cloudpickle: by value what the
    worker cannot import by name), if it takes INLINE_MAX bytes at most."""
    import cloudpickle

    out = _Bounded()
    try:
        cloudpickle.Pickler(out, protocol=pickle.HIGHEST_PROTOCOL).dump(value)
    except Exception:  # too large (or not picklable: Dask's own result path says so)
        return None
    return b"".join(out.parts)


def _take_notes() -> dict[str, _Notes]:
    """The notes not told yet, taken (lock held)."""
    taken = dict(_notes)
    _notes.clear()
    return taken


def _tell(worker: Any, taken: dict[str, _Notes]) -> None:
    """One event per topic: ``{"notes": pickled (started keys, outcomes)}``, one byte
    string, which Dask's messages carry without looking inside (it measures and
    encodes each element of a nested message: more than the notes cost here)."""
    for topic, notes in taken.items():
        blob = pickle.dumps((notes.started, notes.done), protocol=pickle.HIGHEST_PROTOCOL)
        try:
            worker.log_event(topic, {"notes": blob})
        except Exception:  # pragma: no cover - the worker is closing
            pass


def _send_notes(worker: Any) -> None:
    """On the worker's loop: sends the notes now (an outcome is among them)."""
    with _lock:
        _queued.discard(_send_notes)
        taken = _take_notes()
    _tell(worker, taken)


async def _send_notes_later(worker: Any) -> None:
    """On the worker's loop: sends the start notes, while tasks keep starting."""
    import asyncio

    while True:
        await asyncio.sleep(START_NOTE_DELAY)
        with _lock:
            taken = _take_notes()
            if not taken:
                _queued.discard(_send_notes_later)
                return
        _tell(worker, taken)


#: Seconds between two checks, while a task runs, that Dask still wants its result.
_ORPHAN_CHECK = 0.5


def _forgotten(worker: Any, key: str) -> bool:
    """True when the Dask worker no longer holds ``key`` as a task to compute."""
    if worker is None:
        return False
    try:
        tasks = getattr(getattr(worker, "state", worker), "tasks", None)
        if tasks is None:
            return False
        ts = tasks.get(key)
        return ts is None or getattr(ts, "state", None) in ("cancelled", "released", "forgotten")
    except Exception:  # the worker's structures changed under us: ask again later
        return False


def stop_tasks(keys: list[str]) -> int:
    """Stops the tasks ``keys`` running in this Dask worker (Client.run target).

    Kills their inner processes (SIGTERM to the process group, SIGKILL after the
    pool's grace). A key that has not started here yet is remembered for a while, so
    a task that starts just after its stop request is stopped as it starts. Returns
    how many running tasks were stopped.
    """
    found = []
    now = time.monotonic()
    with _lock:
        for key in keys:
            inner = _running.get(key)
            if inner is not None:
                found.append(inner)
            else:
                _stopped_early[key] = now
        for key, when in list(_stopped_early.items()):
            if now - when > _EARLY_STOP_MEMORY:
                del _stopped_early[key]
    for inner in found:
        inner.cancel()
    return len(found)
