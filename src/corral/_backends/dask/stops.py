"""Stopping DaskExecutor's running tasks: which worker runs each, and the stop
messages on their way to the workers (shutdown waits for them)."""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

from ..._clock import now
from . import worker as dask_worker

LOGGER = logging.getLogger("corral")

#: Seconds a stop broadcast may take before corral stops waiting for it (a frozen or
#: unreachable worker would otherwise hold shutdown until the scheduler drops it).
STOP_TIMEOUT = 5.0

#: Seconds a stop of a task corral had not seen start is remembered: a start event
#: that comes later sends the stop to that worker.
REVOKED_MEMORY = 300.0


class Stops:
    """Where each task started, and the stops sent to workers.

    A stop is booked (``stop_locked``, lock held) in the same hold of the pool's lock
    that ended the run: shutdown never sees a moment with the run gone and its stop not
    yet on its way (it would close the client first). ``send`` then cancels the Dask
    future and, on the worker that runs the task, kills its process. A task stopped
    before corral learnt where it runs is remembered: its late start event sends the
    stop to that worker (``started_locked``).
    """

    def __init__(self, client: Any, drained: threading.Condition) -> None:
        self._client = client
        self._loop = client.loop
        self._drained = drained  # on the pool's lock: told when a stop went out
        self.where: dict[str, str] = {}  # key -> the worker it started on
        # keys stopped before corral learnt where they run
        self._revoked: dict[str, float] = {}
        self.on_the_way = 0  # stop requests on their way to the workers

    def stop_locked(self, key: str) -> str | None:
        """Books a stop of the Dask task ``key`` (lock held). Returns the worker it
        started on, if corral knows it."""
        self.on_the_way += 1
        clock = now()
        if len(self._revoked) > 1024:  # old ones: Dask forgot those tasks long ago
            for old, when in list(self._revoked.items()):
                if clock - when > REVOKED_MEMORY:
                    del self._revoked[old]
        self._revoked[key] = clock
        return self.where.pop(key, None)

    def started_locked(self, key: str, worker: str) -> bool:
        """A task corral has no run for started on ``worker``: True when it was
        stopped before and a stop must now go there (booked; ``send`` it)."""
        if self._revoked.pop(key, None) is None:
            return False
        self.on_the_way += 1
        return True

    def send(self, key: str, dfut: Any, worker: str | None) -> None:
        """Stops the Dask task ``key``: cancels it on Dask and, on the ``worker`` that
        runs it, kills its process."""
        asyncio_loop = getattr(self._loop, "asyncio_loop", None)
        if asyncio_loop is not None and asyncio_loop.is_closed():
            self._done()  # the client is gone: nobody can send it (and add_callback
            return  # on a closed loop drops the call without a word)
        try:
            self._loop.add_callback(self._stop_async, key, dfut, worker)
        except Exception:  # the loop is closed: the cluster is gone anyway
            self._done()

    async def _stop_async(self, key: str, dfut: Any, worker: str | None) -> None:
        client = self._client
        try:
            if dfut is not None:  # first: a task still waiting on the cluster never starts
                await client.cancel([dfut], asynchronous=True)
            if worker is not None:
                # bounded: a frozen or unreachable worker must not hold shutdown for minutes
                await asyncio.wait_for(
                    client.run(
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
            self._done()

    def _done(self) -> None:
        with self._drained:
            self.on_the_way -= 1
            self._drained.notify_all()
