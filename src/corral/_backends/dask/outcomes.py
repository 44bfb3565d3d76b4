"""The outcomes of the runs DaskExecutor sent: those the workers' notes carried, and
the Dask futures watched on the client's event loop for the others, whose results are
fetched (those done together in one gather); Dask's errors put in corral's terms."""

from __future__ import annotations

import asyncio
import pickle
import threading
from collections.abc import Callable
from typing import Any

from ... import _stdlib
from ..._errors import BrokenExecutor, WorkerCrashed
from ..._pickling import load_exception
from ..._task import Run
from . import compat
from .window import Window

#: What a watcher reports when the Dask future was cancelled, not run to an end.
DASK_CANCELLED = _stdlib.CancelledError("the Dask future was cancelled")

#: Outcomes of a run that may never have started on a worker.
NOT_RUN = (BrokenExecutor, WorkerCrashed, _stdlib.CancelledError)

#: (run, Dask key, result, error) of a run that ended.
Outcome = tuple[Run, str, Any, BaseException | None]


class KilledWorker(WorkerCrashed):
    """Dask's KilledWorker, as corral reports it: the worker running the task died."""


class Collector:
    """Waits for the Dask futures of the runs sent, and hands their outcomes, in
    batches, to ``complete`` (on the client's loop)."""

    def __init__(
        self,
        distributed: Any,
        client: Any,
        lock: Any,
        window: Window,
        complete: Callable[[list[Outcome]], None],
    ) -> None:
        self._distributed = distributed
        self._client = client
        self._loop = client.loop
        self._lock = lock  # the pool's: whether a run is still current
        self._window = window
        self._complete = complete
        self._watchers: set[asyncio.Future[Any]] = set()
        self._done: list[tuple[Run, str, Any]] = []  # Dask futures done, to book (loop)
        self._collecting = False
        self._unwatched: list[tuple[Run, str, Any]] = []  # sent, no watcher yet
        self._unwatched_lock = threading.Lock()

    def watch(self, sent: list[tuple[Run, str, Any]]) -> None:
        """Watches the runs sent as ``(run, key, Dask future)``, from any thread: one hop
        to the loop for what is sent meanwhile."""
        with self._unwatched_lock:
            hop = not self._unwatched
            self._unwatched.extend(sent)
        if hop:
            self._loop.add_callback(self._watch_all)

    async def _watch_all(self) -> None:
        with self._unwatched_lock:
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
            self._complete([(run, key, None, DASK_CANCELLED)])
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
                with self._lock:
                    current = [run.task.is_current(run) for run, _, _ in batch]
                outcomes: list[Outcome] = []
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
                        values = await self._client.gather(
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

    async def _outcome(self, run: Run, key: str, dfut: Any) -> Outcome:
        """The outcome of one done Dask future (its result fetched alone)."""
        try:
            value = await compat.fetch_result(dfut)
        except asyncio.CancelledError:
            return run, key, None, DASK_CANCELLED
        except BaseException as exc:
            error = DASK_CANCELLED if dfut.status == "cancelled" else self._translate(exc)
            return run, key, None, error
        return self._unpack(run, key, value)

    def noted(self, run: Run, note: list[Any]) -> Outcome:
        """The outcome a worker's note carried: ``[key, ok, pickled result or error,
        seconds]`` (worker.py ``_note_done``). The Dask future of that run, once done,
        is then dropped unfetched (the run is no longer current)."""
        key, ok, payload, seconds = note
        try:
            value = pickle.loads(payload) if ok else payload
        except BaseException as exc:  # as a fetch of the result would fail
            return run, key, None, exc
        return self._unpack(run, key, (ok, value, seconds))

    def _unpack(self, run: Run, key: str, value: Any) -> Outcome:
        """What run_task returned: (ok, result or pickled error, seconds it ran)."""
        ok, result, seconds = value
        self._window.ran(seconds)
        if ok:
            return run, key, result, None
        return run, key, None, load_exception(result)

    def _translate(self, exc: BaseException) -> BaseException:
        if isinstance(exc, self._distributed.KilledWorker):
            crashed = KilledWorker(
                f"the Dask worker running this task died (Dask: KilledWorker: {exc}); "
                "its process exited or was killed (out of memory?). Use retries= to "
                "run the task again"
            )
            crashed.__cause__ = exc
            return crashed
        return exc


def cancelled_outside(client: Any) -> BaseException:
    """The error of a task whose Dask future was cancelled, not by corral."""
    status = getattr(client, "status", "unknown")
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
