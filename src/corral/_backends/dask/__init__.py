"""The Dask backend (see docs/dask.md).

executor.py    DaskExecutor: the client, dispatch of popped tasks, stops, cluster events
worker.py      what runs in the Dask workers: a process per task, stopped on demand
compat.py      every private attribute of distributed that corral reads, in one place
"""
