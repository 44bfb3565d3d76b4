"""The Dask backend (see docs/dask.md).

executor.py    DaskExecutor, the front: its arguments, then a client and a backend
connect.py     a LocalCluster started, a Client connected, both closed again
backend.py     DaskBackend: the runs out on the cluster, their starts and ends, shutdown
dispatch.py    Dispatcher: pops queued tasks while the window has room, sends them
window.py      Window: how many tasks are out at once (threads + send-ahead)
cluster.py     ClusterSize: the cluster's threads, followed; no worker, watched for
outcomes.py    Collector: the Dask futures watched, results gathered, errors translated
stops.py       Stops: where each task runs, and the stops on their way to workers
events.py      the scheduler's events, one subscription per Client
worker.py      what runs in the Dask workers: a process per task, stopped on demand
compat.py      every private attribute of distributed that corral reads, in one place
"""
