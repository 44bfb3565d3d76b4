"""How many tasks DaskExecutor keeps out on the cluster at once: the window.

One task per live thread of the cluster, plus tasks sent ahead, which wait there (in
the scheduler's queue, or held by a worker) so that a thread that ends a task finds
the next one instead of waiting a round trip to the client. The window follows the
cluster's threads as workers join and leave; an explicit ``max_workers`` caps it.
"""

from __future__ import annotations

#: Send-ahead (``prefetch=None``): per thread, about AHEAD_SECONDS of work (by the mean
#: run time measured so far), START_AHEAD before any measure, at most MAX_AHEAD; slow
#: tasks get none, so that none waits behind a long one while a thread is free.
#: AHEAD_BYTES bounds the arguments waiting on the cluster (they sit in the
#: scheduler's memory).
AHEAD_SECONDS = 0.5
START_AHEAD = 4
MAX_AHEAD = 32
AHEAD_BYTES = 16 * 1024 * 1024

#: With the default send-ahead, the share of it that must have room before it is
#: refilled (see Window.room). Half: bursts of 2000 no-ops on two threads go out in
#: about 60 Client.map calls instead of 650; measured against a quarter and against
#: refilling at once, half was the fastest (docs/dask.md, "Performance").
REFILL = 0.5

#: Weight of the newest measure in the send-ahead's running means.
SMOOTHING = 0.1


class Window:
    """The cluster's threads and the send-ahead's measures; the window they make.

    Guarded by the pool's lock, except the measures, which the client's event loop
    alone writes (a stale read only sizes the window a little off for a moment).
    """

    __slots__ = ("_max_workers", "_mean_bytes", "_mean_run", "_prefetch", "threads")

    def __init__(self, prefetch: int | None, max_workers: int | None) -> None:
        self._prefetch = prefetch
        self._max_workers = max_workers
        self.threads: dict[str, int] = {}  # worker -> its threads
        self._mean_run: float | None = None  # seconds of a run
        self._mean_bytes = 0.0  # of a pickled call

    def size(self) -> int:
        """Most tasks out on the cluster at once: one per thread, and ``prefetch`` (or
        the send-ahead above) waiting there for a thread; never more than an explicit
        ``max_workers``, so that no more than that run at once."""
        threads = sum(self.threads.values())
        if not threads:
            return 0
        if self._prefetch is not None:
            ahead = self._prefetch
        else:
            mean = self._mean_run
            per_thread = START_AHEAD if mean is None else int(AHEAD_SECONDS / max(mean, 1e-6))
            ahead = min(per_thread, MAX_AHEAD) * threads
            ahead = min(ahead, int(AHEAD_BYTES / max(self._mean_bytes, 1.0)))
        window = threads + ahead
        return window if self._max_workers is None else min(window, self._max_workers)

    def room(self, out: int, queued: int) -> int:
        """How many of the ``queued`` tasks to send now, ``out`` being out already.

        With the default send-ahead, a window that a few ends opened is refilled only
        once REFILL of the send-ahead has room, unless that sends every queued task: the
        tasks still ahead keep the threads busy meanwhile, and a burst goes out in a
        few large ``Client.map`` calls instead of one per few tasks (each is a graph
        update on the scheduler). An explicit ``prefetch`` is kept full.
        """
        size = self.size()
        room = size - out
        if room <= 0 or queued <= room or self._prefetch is not None:
            return room
        threads = sum(self.threads.values())
        return room if room >= (size - threads) * REFILL else 0

    def set_threads(self, threads: dict[str, int]) -> int:
        """The cluster's workers now. Returns the pool's size: what may run at once,
        the cluster's threads unless ``max_workers`` caps them (at least 1)."""
        self.threads = threads
        total = sum(threads.values())
        cap = total if self._max_workers is None else min(total, self._max_workers)
        return max(1, cap)

    def ran(self, seconds: float) -> None:
        """A run took ``seconds`` on a worker."""
        mean = seconds if self._mean_run is None else self._mean_run
        self._mean_run = mean + (seconds - mean) * SMOOTHING

    def sending(self, count: int, size: int) -> None:
        """``count`` calls of ``size`` bytes in all go out."""
        self._mean_bytes += (size / count - self._mean_bytes) * SMOOTHING
