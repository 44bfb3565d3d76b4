"""The backends: what runs the tasks the front (``corral._executor``) queues.

    thread.py      worker threads in this process
    process/       worker processes, one manager thread, pipes and shared memory
    dask/          a Dask cluster, each task in a process of its own on a worker

Each is held by its executor through the small ``Backend`` protocol of
``corral._core`` and reaches the pool's state only through the ``Core`` handle it is
given (take the next task, book how a run ended, report workers). Nothing here is
imported by ``import corral``; a worker process imports ``process/worker.py`` only.
"""
