"""The iterator that ``executor.map()`` returns: ordered or not, bounded or not, sync and async.

With ``buffersize=None`` all the input is submitted before map() returns, as the stdlib
does. With ``buffersize=N``, N items are submitted up front and one more each time a
result is handed to the consumer, so at most N results wait ahead of it and an
infinite input runs in bounded memory. Closing the iterator (or letting it be
garbage-collected) cancels every future it still holds.
"""

from __future__ import annotations

import asyncio
import queue
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, Generic, TypeVar

from ._future import Future
from ._timer import now

T = TypeVar("T")


class MapIterator(Generic[T]):
    """Results of ``executor.map()``; iterate with ``for`` or ``async for``."""

    def __init__(
        self,
        submit: Callable[[tuple[Any, ...]], Future[T]],
        items: Iterator[tuple[Any, ...]],
        deadline: float | None,
        buffersize: int | None,
        ordered: bool,
    ) -> None:
        self._submit = submit
        self._items: Iterator[tuple[Any, ...]] | None = items
        self._deadline = deadline
        self._ordered = ordered
        self._futures: deque[Future[T]] = deque()
        self._done: queue.SimpleQueue[Future[T]] = queue.SimpleQueue()
        self._unyielded: set[Future[T]] = set()  # unordered mode
        self._wakeup: Callable[[], None] | None = None
        self._started = buffersize is not None
        try:
            if buffersize is None:
                for args in items:
                    self._add(submit(args))
                self._items = None
            else:
                for _ in range(buffersize):
                    if not self._refill():
                        break
        except BaseException:
            self.close()
            raise

    def _add(self, fut: Future[T]) -> None:
        if self._ordered:
            self._futures.append(fut)
        else:
            self._unyielded.add(fut)
            fut.add_done_callback(self._on_done)  # type: ignore[arg-type]

    def _on_done(self, fut: Future[T]) -> None:
        self._done.put(fut)
        wakeup = self._wakeup
        if wakeup is not None:
            wakeup()

    def _refill(self) -> bool:
        """Submits one more item; False when the input is exhausted."""
        if self._items is None:
            return False
        try:
            args = next(self._items)
        except StopIteration:
            self._items = None
            return False
        except BaseException:
            self._items = None
            raise
        self._add(self._submit(args))
        return True

    def _remaining(self) -> float | None:
        return None if self._deadline is None else self._deadline - now()

    def __iter__(self) -> MapIterator[T]:
        return self

    def __next__(self) -> T:
        fut = self._next_future(block=True)
        try:
            return fut.result(self._remaining())
        except BaseException:
            self.close()
            raise

    def _next_future(self, block: bool) -> Future[T]:
        self._started = True
        if self._ordered:
            if not self._futures:
                raise StopIteration
            fut = self._futures.popleft()
        else:
            if not self._unyielded:
                raise StopIteration
            try:
                fut = self._done.get(block, self._remaining() if block else None)
            except queue.Empty:
                self.close()
                raise TimeoutError("map() results not ready within its timeout") from None
            self._unyielded.discard(fut)
        self._refill()
        return fut

    def close(self) -> None:
        """Cancels the work behind this iterator that has not been yielded yet."""
        self._items = None
        futures, self._futures = self._futures, deque()
        unyielded, self._unyielded = self._unyielded, set()
        for fut in (*futures, *unyielded):
            fut.cancel()

    def __del__(self) -> None:
        # As the stdlib: an iterator that was never iterated leaves its work running
        # (``ex.map(f, items)`` for the side effects); one that was started, or that
        # streams its input (buffersize), cancels what it has not yielded.
        if self._started and (self._futures or self._unyielded):
            self.close()

    # -------------------------------------------------------------- async iteration

    def __aiter__(self) -> AsyncIterator[T]:
        return self._aiter()

    async def _aiter(self) -> AsyncIterator[T]:
        loop = asyncio.get_running_loop()
        event = asyncio.Event()

        def wakeup() -> None:
            loop.call_soon_threadsafe(event.set)

        self._wakeup = wakeup
        try:
            while True:
                if self._ordered:
                    if not self._futures:
                        return
                    fut = self._next_future(block=False)
                    remaining = self._remaining()
                    yield await asyncio.wait_for(asyncio.wrap_future(fut), remaining)
                else:
                    if not self._unyielded:
                        return
                    while self._done.empty():
                        event.clear()
                        if not self._done.empty():
                            break
                        try:
                            await asyncio.wait_for(event.wait(), self._remaining())
                        except (TimeoutError, asyncio.TimeoutError):
                            raise TimeoutError(
                                "map() results not ready within its timeout"
                            ) from None
                    yield self._next_future(block=False).result()
        finally:
            self._wakeup = None
            self.close()
