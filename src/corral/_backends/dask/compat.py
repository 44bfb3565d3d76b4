"""Every private part of ``distributed`` that corral relies on, in one place.

Each is used because the public API has no equivalent; each is checked by the Dask
test suite on the oldest (2023.1) and newest ``distributed`` the extra allows, so a
release that changes one fails here, in one function, not across the backend.
"""

from __future__ import annotations

from typing import Any


async def wait_done(dfut: Any) -> None:
    """Waits until a Dask future is finished, *without* fetching its result.

    ``Future.result()`` would fetch it; corral must first learn whether the run is still
    wanted (a result fetched after a cancel makes Dask 2023.1 compute the task again).
    """
    await dfut._state.wait()


async def fetch_result(dfut: Any) -> Any:
    """What the task of a finished Dask future returned, fetched from the cluster, on
    the client's loop (``Future.result()`` would block that loop); raises what Dask
    raises for it (KilledWorker, CancelledError)."""
    return await dfut._result()


def event_handler(client: Any, topic: str) -> Any:
    """The handler a Client has for a scheduler event topic, or None: corral keeps the
    user's own handler working when it subscribes the client to that topic too."""
    return getattr(client, "_event_handlers", {}).get(topic)


def stop_failed_client(distributed: Any, error: BaseException) -> None:
    """Stops the event-loop thread of the Client whose constructor raised ``error``.

    A Client that fails to connect marks itself closed, but ``Client.close()`` then
    returns at once and its loop thread is never stopped (distributed 2023.1 to 2026.8):
    each failed connection would leave a thread behind for good. The caller never got
    the object; the constructor's frames in the traceback hold it. Best effort: never
    raises, so that ``error`` is what the caller sees.
    """
    client_class = getattr(getattr(distributed, "client", None), "Client", None)
    if not isinstance(client_class, type):
        return
    tb = error.__traceback__
    while tb is not None:
        found = tb.tb_frame.f_locals.get("self")
        tb = tb.tb_next
        if not isinstance(found, client_class):
            continue
        client: Any = found
        try:
            if client.status not in ("closed", "newly-created"):
                client.close(timeout=5)  # interrupted while connecting
            runner = getattr(client, "_loop_runner", None)
            if runner is not None:
                runner.stop()
        except Exception:  # pragma: no cover - best effort: the error is what matters
            pass
        return


def scheduler_id(client: Any) -> Any:
    """The id of the scheduler the Client last (re)connected to: it changes when the
    Client reconnects to a restarted scheduler, which holds none of the old
    subscriptions to its events."""
    identity = getattr(client, "_scheduler_identity", None) or {}
    try:
        return identity.get("id")
    except AttributeError:  # pragma: no cover - another shape
        return None


async def worker_threads(client: Any) -> dict[str, int]:
    """Threads of each worker the scheduler has, asked on the client's loop (what
    ``Client.nthreads`` returns, which would block the loop). Workers that are
    starting or paused count too: the scheduler announces no event when a worker
    becomes "running", so a count of running workers taken at its "add-worker" event
    could miss it for good."""
    found = await client.scheduler.ncores()
    return {str(address): int(n) for address, n in found.items()}
