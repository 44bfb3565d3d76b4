"""corral.DaskExecutor: the executor contract on a Dask cluster (the front).

It checks the arguments, reaches the cluster (connect.py) and hands the core's tasks
to the backend (backend.py, which says how they travel). The class docstring is the
user's reference for the contract on a cluster.
"""

from __future__ import annotations

from typing import Any

from ..._checks import check_count, check_start_method, check_timeout
from ..._core import Core
from ..._executor import BaseExecutor
from .backend import DaskBackend
from .connect import open_client

_INSTALL_HINT = (
    "corral.DaskExecutor needs the 'distributed' package, which is not installed in "
    "this environment ({error}); install the extra: pip install 'corral[dask]'"
)


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
            own_client = client is None
            cluster = None
            if own_client:
                client, cluster = open_client(
                    distributed,
                    address,
                    security=security,
                    n_workers=n_workers,
                    threads_per_worker=threads_per_worker,
                    connect_timeout=connect_timeout,
                )
            backend = DaskBackend(
                core,
                distributed,
                client,
                cluster,
                own_client=own_client,
                max_workers=max_workers,
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
