"""The iterator that ``executor.map()`` returns: ordered or not, bounded or not, sync and async.

Work is submitted in *units*: one item per future (the thread pool), or a chunk of
items per future (the process pool batches tiny tasks; see ``_chunks.py``). The user
sees items either way: one result or exception per item, in input order (or in
completion order with ``ordered=False``).

With ``buffersize=None`` all the input is submitted before map() returns, as the stdlib
does. With ``buffersize=N``, about N items are submitted up front and more as results
are handed to the consumer, so at most N results wait ahead of it and an infinite input
runs in bounded memory. Closing the iterator, or dropping it after iteration began (or
with a buffersize), cancels every future it still holds; an iterator never iterated
leaves its work running, as the stdlib's does.
"""

from __future__ import annotations

import asyncio
import itertools
import queue
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from typing import Any, Generic, TypeVar

from ._errors import WaitTimeout
from ._future import Future
from ._timer import now

T = TypeVar("T")

#: What a chunk's future returns: the seconds the chunk ran, the value of each item
#: (None where it failed), and {position in the chunk: pickled exception}.
ChunkResult = tuple[float, list[Any], dict[int, bytes]]


class Units:
    """How a map submits its work: one item per future, or chunks of items."""

    chunked = False

    def __init__(self, submit_one: Callable[[tuple[Any, ...]], Future[Any]]) -> None:
        self._submit_one = submit_one

    def prepare(self, iterables: tuple[Iterable[Any], ...]) -> Iterator[Any]:
        """The items to cut into units (argument tuples unless a backend says otherwise)."""
        return zip(*iterables, strict=False)

    def size(self) -> int:
        """How many items the next unit takes."""
        return 1

    def submit(self, items: list[tuple[Any, ...]]) -> Future[Any]:
        return self._submit_one(items[0])

    def error(self, data: bytes) -> BaseException:
        """Rebuilds the exception of one failed item of a chunk."""
        raise NotImplementedError


class MapIterator(Generic[T]):
    """Results of ``executor.map()``; iterate with ``for`` or ``async for``."""

    def __init__(
        self,
        units: Units,
        items: Iterator[Any],
        deadline: float | None,
        buffersize: int | None,
        ordered: bool,
    ) -> None:
        self._units = units
        self._items: Iterator[Any] | None = items
        self._deadline = deadline
        self._buffersize = buffersize
        self._ordered = ordered
        self._queue: deque[tuple[Future[Any], int]] = deque()  # ordered: units in order
        self._done: queue.SimpleQueue[tuple[Future[Any], int]] = queue.SimpleQueue()
        self._unyielded: dict[Future[Any], int] = {}  # unordered: units not yet taken
        self._held = 0  # items submitted and not yet yielded
        self._wakeup: Callable[[], None] | None = None
        self._started = buffersize is not None
        self._chain: Iterator[T] = itertools.chain.from_iterable(self._values())
        try:
            while self._refill():
                pass
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------------ feeding

    def _refill(self) -> bool:
        """Submits one more unit if the buffer allows; False when nothing was submitted."""
        if self._items is None:
            return False
        size = self._units.size()
        if self._buffersize is not None:
            size = min(size, self._buffersize - self._held)
            if size <= 0:
                return False
        try:
            chunk = list(itertools.islice(self._items, size))
        except BaseException:
            self._items = None
            raise
        if not chunk:
            self._items = None
            return False
        fut = self._units.submit(chunk)
        self._held += len(chunk)
        if self._ordered:
            self._queue.append((fut, len(chunk)))
        else:
            self._unyielded[fut] = len(chunk)
            fut.add_done_callback(self._on_done)  # type: ignore[arg-type]
        return True

    def _on_done(self, fut: Future[Any]) -> None:
        self._done.put((fut, 0))
        wakeup = self._wakeup
        if wakeup is not None:
            wakeup()

    def _remaining(self) -> float | None:
        return None if self._deadline is None else max(0.0, self._deadline - now())

    # ------------------------------------------------------------------ iteration

    def __iter__(self) -> Iterator[T]:
        # A C-level chain over each unit's values: a chunk of 10,000 results is handed
        # out at the speed of iterating a list, not one Python call per item.
        self._started = True
        return self._chain

    def __next__(self) -> T:
        self._started = True
        return next(self._chain)

    def _values(self) -> Iterator[Iterable[T]]:
        """Yields the values of each unit in turn, waiting for it; the chain flattens them."""
        try:
            while True:
                try:
                    fut = self._next_unit(block=True)
                except StopIteration:
                    return
                yield self._take(fut, self._remaining())
        except BaseException:
            self.close()
            raise

    def _next_unit(self, block: bool) -> Future[Any]:
        """The next unit to take, in input or completion order; StopIteration at the end."""
        if self._ordered:
            if not self._queue:
                raise StopIteration
            return self._queue[0][0]
        if not self._unyielded:
            raise StopIteration
        try:
            fut, _ = self._done.get(block, self._remaining() if block else None)
        except queue.Empty:
            raise WaitTimeout("map() results not ready within its timeout") from None
        return fut

    def _take(self, fut: Future[Any], timeout: float | None) -> Iterable[T]:
        """A unit's values (raising for a unit that failed as a whole); feeds more input."""
        count = self._queue[0][1] if self._ordered else self._unyielded[fut]
        try:
            value = fut.result(timeout)
        except TimeoutError:
            raise WaitTimeout("map() results not ready within its timeout") from None
        finally:
            if fut.done():
                if self._ordered:
                    self._queue.popleft()
                else:
                    del self._unyielded[fut]
                self._held -= count
                if self._items is not None:
                    while self._refill():
                        pass
        if not self._units.chunked:
            return (value,)
        _, values, errors = value
        return self._with_errors(values, errors) if errors else values

    def _with_errors(self, values: list[T], errors: dict[int, bytes]) -> Iterator[T]:
        for position, value in enumerate(values):
            if position in errors:
                self.close()  # as for any failing item: the rest is cancelled
                raise self._units.error(errors[position])
            yield value

    def close(self) -> None:
        """Cancels the work behind this iterator that has not been yielded yet."""
        self._items = None
        futures = [f for f, _ in self._queue] + list(self._unyielded)
        self._queue.clear()
        self._unyielded.clear()
        for fut in futures:
            fut.cancel()

    def __del__(self) -> None:
        if self._started and (self._queue or self._unyielded):
            self.close()

    # ------------------------------------------------------------------ async iteration

    def __aiter__(self) -> AsyncIterator[T]:
        return self._aiter()

    async def _aiter(self) -> AsyncIterator[T]:
        self._started = True
        loop = asyncio.get_running_loop()
        event = asyncio.Event()

        def wakeup() -> None:
            loop.call_soon_threadsafe(event.set)

        self._wakeup = wakeup
        try:
            while True:
                if self._ordered:
                    if not self._queue:
                        return
                    fut = self._queue[0][0]
                    if not fut.done():
                        waiter = asyncio.wrap_future(fut)
                        await asyncio.wait({waiter}, timeout=self._remaining())
                        if not waiter.done():
                            raise WaitTimeout
                        if not waiter.cancelled():
                            waiter.exception()  # seen here; _take() raises it
                else:
                    if not self._unyielded:
                        return
                    while self._done.empty():
                        event.clear()
                        if not self._done.empty():
                            break
                        await asyncio.wait_for(event.wait(), self._remaining())
                    fut = self._next_unit(block=False)
                for value in self._take(fut, 0):
                    yield value
        except (asyncio.TimeoutError, TimeoutError):
            raise WaitTimeout("map() results not ready within its timeout") from None
        finally:
            self._wakeup = None
            self.close()
