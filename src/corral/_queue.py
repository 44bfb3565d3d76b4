"""The queue of tasks submitted but not started: FIFO, with priorities, O(1) cancel.

Tasks of priority 0 (the default) wait in a deque; any other priority, and a task put
back after a worker was handed it but never started it, waits in a heap ordered by
(-priority, submission order). A cancelled task is not removed: it stays as a
tombstone (its state is no longer QUEUED) and ``pop`` skips it, so cancel costs O(1).
Owned by the pool's lock (``Core.lock``): nothing here locks.
"""

from __future__ import annotations

import heapq
import itertools
from collections import deque

from ._task import QUEUED, Task


class TaskQueue:
    """The tasks waiting for a worker, in the order they start (see the module docs)."""

    __slots__ = ("_fifo", "_heap", "_seq")

    def __init__(self) -> None:
        self._fifo: deque[Task] = deque()  # priority 0, FIFO
        self._heap: list[tuple[int, int, Task]] = []  # others: (-priority, seq, task)
        self._seq = itertools.count()

    def push(self, task: Task, front: bool = False) -> None:
        """Queues a task; ``front`` puts it back ahead of its equals (it was taken early
        and never started), in its first place by its submission order."""
        priority = task.opts.priority
        if not front:
            task.seq = next(self._seq)
            if priority == 0:
                self._fifo.append(task)
                return
        heapq.heappush(self._heap, (-priority, task.seq, task))

    def pop(self) -> Task | None:
        """The next task still QUEUED (tombstones are dropped), or None."""
        fifo, heap = self._fifo, self._heap
        while True:
            if heap and (not fifo or heap[0][:2] < (0, fifo[0].seq)):
                task = heapq.heappop(heap)[2]
            elif fifo:
                task = fifo.popleft()
            else:
                return None
            if task.state is QUEUED:
                return task

    def queued(self) -> list[Task]:
        """The tasks still QUEUED, in no particular order."""
        tasks = [t for t in self._fifo if t.state is QUEUED]
        tasks += [entry[2] for entry in self._heap if entry[2].state is QUEUED]
        return tasks

    def clear(self) -> None:
        self._fifo.clear()
        self._heap.clear()
