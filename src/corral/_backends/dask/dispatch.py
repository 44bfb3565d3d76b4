"""Sending the core's queued tasks to Dask while the window has room.

The tasks that leave corral's queue together go in one ``Client.map`` per priority,
so that a burst of submits makes a few graph updates on the scheduler, not one per
task. Dispatching happens on the client's event loop: a wake from another thread (a
submit, a map's feeder) makes one hop there for every task queued meanwhile.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
from typing import TYPE_CHECKING, Any

from ..._task import ENDED, Run, Task
from . import worker as dask_worker

if TYPE_CHECKING:
    from .backend import DaskBackend


class Dispatcher:
    """Pops tasks while fewer than the window are out, and sends them.

    ``soon()`` (any thread) asks for a dispatch. What it uses of its backend: the core,
    the client and its loop, the window, the stop of a run that ended while it was
    being sent, and the watchers that book what it sent.
    """

    def __init__(self, backend: DaskBackend, mp_context: str | None) -> None:
        self._backend = backend
        self._core = backend.core
        self._mp_context = mp_context
        self._prefix = backend.id
        self._tids = itertools.count(1)
        self._lock = threading.Lock()
        self._hopping = False  # a _dispatch_on_loop is on its way to the loop

    def soon(self) -> None:
        """Dispatches on the client's loop: from there now; from another thread (a
        submit, a map's feeder) through one hop to the loop for every task queued
        meanwhile, so that a burst of submits goes out in a few Client.map calls."""
        loop = self._backend.loop
        try:
            on_loop = asyncio.get_running_loop() is getattr(loop, "asyncio_loop", None)
        except RuntimeError:  # no loop runs in this thread
            on_loop = False
        if on_loop:
            self._dispatch()
            return
        with self._lock:
            if self._hopping:
                return
            self._hopping = True
        try:
            loop.add_callback(self._dispatch_on_loop)
        except Exception:  # pragma: no cover - the loop is closed
            with self._lock:
                self._hopping = False
            self._dispatch()  # (it finds the client closed and breaks the executor)

    def _dispatch_on_loop(self) -> None:
        with self._lock:
            self._hopping = False
        self._dispatch()

    def _dispatch(self) -> None:
        """Sends queued tasks to Dask while fewer than the window are out (the tasks
        popped in one hold of the lock in one message to the scheduler)."""
        backend, core = self._backend, self._core
        backend.check_scheduler()
        doomed: list[Any] = []
        while not doomed:
            batch: list[tuple[Task, Run, str]] = []
            with core.lock:
                room = backend.window.room(len(core.running), core.pending)
                while room > 0 and core.broken is None:
                    task = core.pop_locked()
                    if task is None:
                        break
                    if not backend.client_usable():
                        core.unstart_locked(task)
                        doomed = backend.break_locked()
                        break
                    run = task.run  # this run: a retry of it may be sent before we book it
                    assert run is not None
                    self._sending_locked(task, run)
                    batch.append((task, run, f"{self._prefix}-{next(self._tids)}"))
                    room -= 1
            if not batch:
                break
            self._send(batch)
        for fut in doomed:  # (the client became unusable)
            fut._resolve(exception=backend.broken_error())

    def _sending_locked(self, task: Task, run: Run) -> None:
        """``run`` is about to be sent. To a thread free (none waits ahead of it, fewer
        than max_workers run): it runs from now, as on the local pools. Otherwise it
        is sent ahead: pending (``max_pending``, statistics), its task_timeout clock
        not running, until it says that it started (``DaskBackend.on_started``)."""
        core = self._core
        running = len(core.running) - 1 - core.waiting  # (it is in running)
        if core.waiting or running >= core.max_workers:
            core.hand_ahead_locked(run)
            return
        self._backend.starts_locked(task)

    def _send(self, batch: list[tuple[Task, Run, str]]) -> None:
        """Submits popped tasks to Dask, one ``Client.map`` per run of equal priority."""
        backend = self._backend
        sent: list[tuple[Run, str, Any]] = []
        try:
            for priority, group in itertools.groupby(batch, lambda item: item[0].opts.priority):
                tasks = list(group)
                keys = [key for _, _, key in tasks]
                size = sum(len(task.payload[0]) + len(task.payload[1]) for task, _, _ in tasks)
                backend.window.sending(len(tasks), size)
                try:
                    dfuts = backend.client.map(
                        dask_worker.run_task,
                        keys,
                        [self._mp_context] * len(keys),
                        [backend.topic] * len(keys),
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
                with self._core.lock:
                    for (task, run, key), dfut in zip(tasks, dfuts, strict=True):
                        if task.is_current(run):
                            backend.sent_locked(run, key, dfut)
                            sent.append((run, key, dfut))
                        else:  # counted now: shutdown must not close the client first
                            backend.stops.stop_locked(key)
                            stops.append((key, dfut))
                for key, dfut in stops:  # cancelled or timed out while being sent
                    backend.stops.send(key, dfut, None)
                del dfuts, stops
        finally:
            if sent:
                backend.collector.watch(sent)

    def _not_sent(self, tasks: list[tuple[Task, Run, str]], error: BaseException | None) -> None:
        """Tasks Client.map did not take: they fail with ``error``, or (None: Ctrl+C in
        the thread that sent them) go back to the queue, as if never popped."""
        core = self._core
        resolve = []
        with core.lock:
            for task, run, _ in tasks:
                if not task.is_current(run):
                    continue
                if error is None:
                    core.unstart_locked(task)
                    continue
                core.finished_locked(task, error)
                if task.state is ENDED:
                    resolve.append(task)
            self._backend.drained.notify_all()
        for task in resolve:
            task.fut._resolve(exception=error)
