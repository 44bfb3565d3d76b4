"""Following the Dask cluster's size: its workers' threads, asked of the scheduler
when workers join or leave, and a cluster with no worker watched until one joins."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..._clock import now
from . import compat

if TYPE_CHECKING:
    from .backend import DaskBackend

LOGGER = logging.getLogger("corral")

#: Seconds between two questions to the scheduler while work waits and the cluster
#: has no worker (a joining worker's event asks at once: this is the safety net).
NO_WORKER_RECHECK = 2.0


class ClusterSize:
    """Keeps the backend's window and the pool's size (``Core.max_workers``) on the
    cluster's threads; warns once while work waits on a cluster with no worker."""

    def __init__(self, backend: DaskBackend) -> None:
        self._backend = backend
        self._core = backend.core
        self._window = backend.window
        self._no_workers_since: float | None = None
        self._polling = False

    def set_threads_locked(self, threads: dict[str, int]) -> None:
        """The cluster's workers now (lock held): the window follows them."""
        self._core.max_workers = self._window.set_threads(threads)
        if sum(threads.values()):
            self._no_workers_since = None

    def refresh_soon(self) -> None:
        """Asks the scheduler for its workers' threads, on the client's loop."""
        try:
            self._backend.loop.add_callback(self._refresh)
        except Exception:  # pragma: no cover - the loop is closed: nothing to size
            pass

    async def _refresh(self) -> None:
        try:
            threads = await compat.worker_threads(self._backend.client)
        except Exception as error:  # the scheduler is gone: the next event says more
            LOGGER.debug("corral: asking the Dask scheduler for its workers failed: %r", error)
            return
        with self._core.lock:
            self.set_threads_locked(threads)
            wake = self._backend.work_available_locked()
        if wake is not None:
            wake()

    def no_workers(self) -> Callable[[], None] | None:
        """Work waits and the cluster has no worker (lock held): what warns and
        watches for one, unless that is under way."""
        return None if self._polling else self._no_workers

    def _no_workers(self) -> None:
        core = self._core
        with core.lock:
            if self._window.threads or self._polling or not core.pending:
                return
            self._polling = True
            first = self._no_workers_since is None
            if first:
                self._no_workers_since = now()
            waiting = core.pending
        if first:
            LOGGER.warning(
                "corral: the Dask cluster at %s has no worker: %d task(s) wait "
                "in corral's queue until one joins. Start workers (dask worker ADDRESS) "
                "or scale the cluster; shutdown(wait=True) waits for that work, "
                "shutdown(cancel_futures=True) or Ctrl+C cancels it",
                getattr(self._backend.client.scheduler, "address", "?"),
                waiting,
            )
        try:
            self._backend.loop.add_callback(self._watch_for_workers)
        except Exception:  # pragma: no cover - the loop is closed
            with core.lock:
                self._polling = False

    async def _watch_for_workers(self) -> None:
        """While work waits for a worker: asks the scheduler now and then. A joining
        worker's event asks at once; this covers a client whose events stopped (a
        handler set for "all" after the executor, a scheduler restarted)."""
        backend, core = self._backend, self._core
        try:
            while True:
                await self._refresh()
                with core.lock:
                    if (
                        self._window.threads
                        or not core.pending
                        or core.broken is not None
                        or not backend.client_usable()
                    ):
                        return
                await asyncio.sleep(NO_WORKER_RECHECK)
        finally:
            with core.lock:
                self._polling = False
                wake = backend.work_available_locked()
            if wake is not None:
                wake()
