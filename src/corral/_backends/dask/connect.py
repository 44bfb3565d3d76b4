"""Reaching a Dask cluster: a LocalCluster DaskExecutor starts, a Client it connects,
and closing both again, leaving no thread behind when a step fails."""

from __future__ import annotations

import logging
from typing import Any

from . import compat


def open_client(
    distributed: Any,
    address: str | None,
    *,
    security: Any,
    n_workers: int | None,
    threads_per_worker: int | None,
    connect_timeout: float,
) -> tuple[Any, Any]:
    """A new Client to ``address``, or to a LocalCluster started for it (address None).

    Returns ``(client, cluster)``, the cluster None for an address. Raises what the
    connection raised (OSError, TimeoutError), or ValueError for a ``tls://`` address
    without credentials; a cluster it started is closed first.
    """
    cluster = None
    if address is None:
        cluster = _start_local_cluster(distributed, security, n_workers, threads_per_worker)
        address = cluster.scheduler_address
        # security=True made the cluster's temporary credentials: use those
        security = cluster.security
    try:
        client = distributed.Client(
            address, security=security, timeout=connect_timeout, set_as_default=False
        )
    except BaseException as error:
        compat.stop_failed_client(distributed, error)
        if cluster is not None:
            close_cluster(cluster)
        if isinstance(error, TypeError) and "ssl_context" in str(error):
            raise ValueError(
                f"{address} is a TLS address, but no TLS credentials were given "
                "(security=None and none in the Dask configuration): pass "
                "security=distributed.security.Security(tls_ca_file=..., "
                "tls_client_cert=..., tls_client_key=..., require_encryption=True)"
                " with the cluster's CA and a certificate it trusts"
            ) from error
        raise
    return client, cluster


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


def close_cluster(cluster: Any) -> None:
    """Closes a LocalCluster and stops its event-loop thread.

    ``close()`` alone leaves the loop thread (and the in-process scheduler's
    threads and sockets) running on distributed 2023.1; ``__exit__`` stops them.
    """
    cluster.__exit__(None, None, None)
