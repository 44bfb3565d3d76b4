"""The process backend (the data flow is drawn in ``executor.py``).

    executor.py    ProcessPoolExecutor: arguments, start method, initargs, pickling of calls
    manager.py     the manager thread: dispatch, prefetch and revocation, kills, crashes
    procs.py       one worker process as the manager sees it, and its process group
    worker.py      the loop that runs in each worker process (and the message table)
    wire.py        shared-memory segments and the framing of messages on the pipe
    chunks.py      automatic chunking of map()

Importing this package imports nothing: a worker process loads ``worker.py`` alone.
"""
