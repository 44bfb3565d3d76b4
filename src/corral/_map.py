"""The iterator that ``executor.map()`` returns: ordered or not, bounded or not, sync and async.

Work is submitted in *units*: one item per future (the thread pool), or a chunk of
items per future (the process pool batches tiny tasks: ``_backends/process/chunks.py``).
The user sees items either way: one result or exception per item, in input order (or in
completion order with ``ordered=False``).

With ``buffersize=None`` all the input is submitted whether or not the results are read,
as the stdlib does, but by a feeder thread ("corral-map-feeder"): map() returns at once,
the input is read only as fast as the pool takes work (``max_pending``), and results
can be consumed while the rest is still being submitted. An error raised by the input
itself reaches the consumer after the last item read before it. The executor's
shutdown (and so its ``with`` block) waits for its feeders. With ``buffersize=N``, about
N items are submitted up front and more as results are handed to the consumer, in the
consumer's thread, so at most N results wait ahead of it and an infinite input runs in
bounded memory. Closing the iterator, or dropping it after iteration began (or
with a buffersize), cancels every future it still holds; an iterator never iterated
leaves its work running, as the stdlib's does.
"""

from __future__ import annotations

import itertools
import queue
import threading
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence

from ._clock import now
from ._errors import CancelledError, WaitTimeout
from ._future import Future
from ._observe.progress import Progress, count_future

TYPE_CHECKING = False  # (typing is not imported at run time: docs/design.md §5.7)
if TYPE_CHECKING:
    from typing import Any, TypeVar

    T = TypeVar("T")
    #: What a chunk's future returns: the seconds the chunk ran, the value of each item
    #: (None where it failed), and {position in the chunk: pickled exception}.
    ChunkResult = tuple[float, list[Any], dict[int, bytes]]
else:
    T = "T"  # collections.abc.Iterator[...] takes any parameter at run time


_local = threading.local()


def _handing_out(reversed_values: list[Any]) -> Iterator[Any]:
    """Iterates a reversed list by popping it, at C speed: a value handed out is no
    longer referenced here (nor by the future whose result the list is), so the consumer
    alone decides how long it lives (CPython's test_free_reference). Pops exactly len()
    times: a sentinel would be compared with ``==``, which values define as they like
    (a numpy array's answer has no truth value)."""
    return itertools.starmap(reversed_values.pop, itertools.repeat((), len(reversed_values)))


class RangeItems(Iterator[int]):
    """A map's input that is one ``range``, cut into ranges rather than lists: a chunk
    of any length pickles in a few bytes, and no int is made in this process."""

    def __init__(self, numbers: range) -> None:
        self._rest = numbers

    def __next__(self) -> int:
        if not self._rest:
            raise StopIteration
        first = self._rest[0]
        self._rest = self._rest[1:]
        return first

    def take(self, count: int) -> range:
        """The next ``count`` numbers (fewer at the end; an empty range after it)."""
        chunk, self._rest = self._rest[:count], self._rest[count:]
        return chunk


def in_feeder() -> bool:
    """True in a map's feeder thread (it may submit while its pool shuts down)."""
    return getattr(_local, "feeding", False)


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

    def submit(self, items: Sequence[Any]) -> Future[Any]:
        return self._submit_one(items[0])

    def error(self, data: bytes) -> BaseException:
        """Rebuilds the exception of one failed item of a chunk."""
        raise NotImplementedError


class MapIterator(Iterator[T]):
    """Results of ``executor.map()``; iterate with ``for`` or ``async for``."""

    def __init__(
        self,
        units: Units,
        items: Iterator[Any],
        deadline: float | None,
        buffersize: int | None,
        ordered: bool,
        progress: Progress | None = None,
    ) -> None:
        self._units = units
        self._progress = progress
        self._submitted = 0  # items submitted (the total, once the input has ended)
        self._items: Iterator[Any] | None = items
        self._deadline = deadline
        self._buffersize = buffersize
        self._ordered = ordered
        self._queue: deque[tuple[Future[Any], int]] = deque()  # ordered: units in order
        self._done: queue.SimpleQueue[tuple[Future[Any], int]] = queue.SimpleQueue()
        self._unyielded: dict[Future[Any], int] = {}  # unordered: units not yet taken
        self._held = 0  # items submitted and not yet yielded
        self._taken = 0  # of them, those of the unit being handed out (see _release_taken)
        self._wakeup: Callable[[], None] | None = None
        self._started = buffersize is not None
        self._chain: Iterator[T] = itertools.chain.from_iterable(self._values())
        # the feeder (buffersize=None) and the consumer share the unit lists under this
        self._cond = threading.Condition(threading.Lock())
        self._feeder: threading.Thread | None = None
        self._feeding = False  # the feeder has not finished (its error, if any, is set)
        self._stopped = False  # closed, or stopped by a shutdown or Ctrl+C
        self._submitting = False  # the feeder is submitting a unit (see close())
        self._closed = False
        self._feed_error: BaseException | None = None
        if buffersize is not None:
            self.feed_all()

    # ------------------------------------------------------------------ feeding

    def start_feeding(self, on_end: Callable[[MapIterator[Any]], None]) -> None:
        """Starts the feeder thread that submits all the input; ``on_end(self)`` after."""
        self._feeder = threading.Thread(
            target=self._feed, args=(on_end,), name="corral-map-feeder", daemon=True
        )
        self._feeding = True
        self._feeder.start()

    def _feed(self, on_end: Callable[[MapIterator[Any]], None]) -> None:
        _local.feeding = True
        try:
            while self._refill():
                pass
        except BaseException as exc:  # the input's own error, or the pool's refusal
            if not self._stopped:  # once stopped, a refusal (shutdown) is that stop
                self._feed_error = exc
        finally:
            with self._cond:
                self._items = None
                self._feeding = False
                self._cond.notify_all()
            self._input_ended()
            self._done.put((None, 0))  # type: ignore[arg-type]  # unordered: look again
            self._wake()
            on_end(self)

    def feed_all(self) -> None:
        """Submits the input now, in this thread: all of it, or up to ``buffersize``.

        An error of the input, or of submit(), is raised here (the map is closed).
        """
        try:
            while self._refill():
                pass
        except BaseException:
            self.close()
            raise

    def stop_feeding(self) -> None:
        """Stops submitting more input (shutdown with cancel_futures, Ctrl+C)."""
        with self._cond:
            self._stopped = True

    def join_feeder(self) -> None:
        """Waits until the feeder has submitted all the input (or stopped)."""
        if self._feeder is not None and self._feeder is not threading.current_thread():
            self._feeder.join()

    def _wake(self) -> None:
        wakeup = self._wakeup
        if wakeup is not None:
            try:
                wakeup()
            except RuntimeError:  # pragma: no cover - the event loop has just closed
                pass

    def _refill(self) -> bool:
        """Submits one more unit if the buffer allows; False when nothing was submitted."""
        items = self._items
        if items is None or self._stopped:
            return False
        size = self._units.size()
        if self._buffersize is not None:
            room = self._buffersize - self._held
            # wait for room for a whole unit (up to half the buffer) rather than cut
            # small ones: chunks could never grow past the first one-item probes
            if room < min(size, max(1, self._buffersize // 2)):
                return False
            size = min(size, room)
        chunk: Sequence[Any]
        if isinstance(items, RangeItems):
            chunk = items.take(size)
        else:
            chunk = []
            try:
                chunk.extend(itertools.islice(items, size))  # keeps what it read before an error
            except BaseException:
                if chunk:
                    self._submit_unit(chunk)
                self._items = None
                raise
        if chunk and self._submit_unit(chunk):
            return True
        return self._end_input()

    def _end_input(self) -> bool:
        """Nothing more is read: the input ended, or the map was stopped. False."""
        self._items = None
        self._input_ended()
        return False

    def _submit_unit(self, chunk: Sequence[Any]) -> bool:
        """Submits one unit unless the map was stopped; False if it was (or became so)."""
        with self._cond:
            if self._stopped:
                return False
            self._submitting = True  # close() waits for this unit's fate
        try:
            return self._append(self._units.submit(chunk), len(chunk))
        finally:
            with self._cond:
                self._submitting = False
                self._cond.notify_all()

    def _append(self, fut: Future[Any], count: int) -> bool:
        """Records a submitted unit; False (and cancels it) if the map was stopped."""
        with self._cond:
            stopped = self._stopped
            if stopped:  # closed while we submitted: that unit goes too
                self._items = None
            elif self._ordered:
                self._held += count
                self._queue.append((fut, count))
                self._cond.notify()
            else:
                self._held += count
                self._unyielded[fut] = count
        if stopped:
            fut.cancel()
            return False
        self._submitted += count
        if self._progress is not None:
            count_future(self._progress, fut, count, self._units.chunked)
        if not self._ordered:
            fut.add_done_callback(self._on_done)
        elif self._feeder is not None:
            self._wake()
        return True

    def _input_ended(self) -> None:
        """All the input was submitted (or the feed stopped): the bar's total is known."""
        bar = self._progress
        if bar is not None:
            if bar.total is None or self._stopped:
                bar.set_total(self._submitted)
            if self._stopped:
                bar.close()

    def _on_done(self, fut: Future[Any]) -> None:
        self._done.put((fut, 0))
        self._wake()

    def _more_coming(self) -> bool:
        """True while more units may still be submitted."""
        return self._feeding if self._feeder is not None else self._items is not None

    def _feed_ended(self) -> BaseException:
        """What the consumer raises past the last unit: the end, or why feeding stopped."""
        if self._feed_error is not None:
            error, self._feed_error = self._feed_error, None
            return error
        if self._stopped and not self._closed:
            return CancelledError("map() was stopped (shutdown or Ctrl+C) before its input ended")
        return StopIteration()

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
                self._release_taken()
                try:
                    fut = self._next_unit(block=True)
                except StopIteration:
                    return
                values = self._take(fut, self._remaining())
                del fut  # (held while suspended: the future holds the values)
                yield values
                del values
        except BaseException:
            self.close()
            raise

    def _next_unit(self, block: bool) -> Future[Any]:
        """The next unit to take, in input or completion order; StopIteration at the end."""
        if self._ordered:
            if not self._queue and self._feeder is not None:
                with self._cond:  # the feeder is (or was) still submitting
                    while not self._queue and self._feeding and block:
                        if not self._cond.wait(self._remaining()):
                            raise WaitTimeout("map() results not ready within its timeout")
            if not self._queue:
                if self._more_coming():  # async: the caller waits for the feeder
                    raise BlockingIOError
                raise self._feed_ended()
            return self._queue[0][0]
        while True:
            if not self._unyielded and not self._more_coming():
                raise self._feed_ended()
            try:
                fut, _ = self._done.get(block, self._remaining() if block else None)
            except queue.Empty:
                if not block:
                    raise BlockingIOError from None
                raise WaitTimeout("map() results not ready within its timeout") from None
            if fut is not None:  # None: the feeder ended; look again
                return fut

    def _release_taken(self) -> None:
        """The unit taken last is all handed out (the consumer asks for the next one):
        its items leave the buffer, and with buffersize, as much input is read again.
        Counted until now, so that at most ``buffersize`` items are ever read ahead of
        the consumer, a chunk being handed out included."""
        if self._taken:
            self._held -= self._taken
            self._taken = 0
            if self._feeder is None and self._items is not None:
                while self._refill():
                    pass

    def _take(self, fut: Future[Any], timeout: float | None) -> Iterable[T]:
        """A unit's values (raising for a unit that failed as a whole); feeds more input."""
        count = self._queue[0][1] if self._ordered else self._unyielded[fut]
        try:
            value = fut.result(timeout)
        except TimeoutError:
            if fut.done():
                raise  # the item's own error (TaskTimeout is a TimeoutError too)
            raise WaitTimeout("map() results not ready within its timeout") from None
        finally:
            if fut.done():
                if self._ordered:
                    self._queue.popleft()
                else:
                    del self._unyielded[fut]
                self._taken = count  # held until they are all handed out
        if not self._units.chunked:
            return _handing_out([value])
        _, values, errors = value
        if errors:
            return self._with_errors(values, errors)
        values.reverse()
        return _handing_out(values)

    def _with_errors(self, values: list[T], errors: dict[int, bytes]) -> Iterator[T]:
        for position, value in enumerate(values):
            if position in errors:
                self.close()  # as for any failing item: the rest is cancelled
                raise self._units.error(errors[position])
            yield value

    def close(self) -> None:
        """Cancels the work behind this iterator that has not been yielded yet.

        Its feeder, if still reading the input, submits nothing more.
        """
        with self._cond:
            self._stopped = self._closed = True
            if self._feeder is None:
                self._items = None
            futures = [f for f, _ in self._queue] + list(self._unyielded)
            self._queue.clear()
            self._unyielded.clear()
        for fut in futures:
            fut.cancel()
        feeder = self._feeder
        if feeder is not None and feeder is not threading.current_thread():
            # A unit the feeder is submitting right now is in none of the lists above:
            # it may start at once, and the feeder cancels it only once submit()
            # returns (_append). Wait for that, so that nothing of this map completes
            # after close() returned. (submit() waits for room under max_pending at
            # most: the cancels above have just made some, and a shutdown or Ctrl+C
            # ends that wait too.)
            with self._cond:
                while self._submitting:
                    self._cond.wait()
        if self._progress is not None:
            if self._progress.total is None:
                self._progress.set_total(self._submitted)
            self._progress.close()

    def __del__(self) -> None:
        if self._started and (self._queue or self._unyielded):
            self.close()

    # ------------------------------------------------------------------ async iteration

    def __aiter__(self) -> AsyncIterator[T]:
        return self._aiter()

    async def _aiter(self) -> AsyncIterator[T]:
        self._started = True
        import asyncio  # here: only async code needs it

        loop = asyncio.get_running_loop()
        event = asyncio.Event()

        def wakeup() -> None:
            loop.call_soon_threadsafe(event.set)

        self._wakeup = wakeup
        try:
            while True:
                self._release_taken()
                try:
                    fut = self._next_unit(block=False)
                except StopIteration:
                    return
                except BlockingIOError:  # nothing to take yet: wait for a wakeup
                    event.clear()
                    try:
                        fut = self._next_unit(block=False)  # one that came meanwhile
                    except StopIteration:
                        return
                    except BlockingIOError:
                        await asyncio.wait_for(event.wait(), self._remaining())
                        continue
                if self._ordered and not fut.done():
                    waiter = asyncio.wrap_future(fut)
                    await asyncio.wait({waiter}, timeout=self._remaining())
                    if not waiter.done():
                        raise WaitTimeout
                    if not waiter.cancelled():
                        waiter.exception()  # seen here; _take() raises it
                for value in self._take(fut, 0):
                    yield value
        except (asyncio.TimeoutError, TimeoutError):
            raise WaitTimeout("map() results not ready within its timeout") from None
        finally:
            self._wakeup = None
            self.close()
