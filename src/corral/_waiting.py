"""``corral.wait`` and ``corral.as_completed``: the stdlib's, checked, and async-iterable.

Both accept corral and stdlib futures mixed (anything that is a
``concurrent.futures.Future``), from one executor or many.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterable, Iterator

from . import _stdlib
from ._checks import check_timeout, is_iterable
from ._clock import now
from ._errors import WaitTimeout
from ._observe.progress import Progress, count_future, make_progress
from ._stdlib import ALL_COMPLETED, FIRST_COMPLETED, FIRST_EXCEPTION

_RETURN_WHEN = (FIRST_COMPLETED, FIRST_EXCEPTION, ALL_COMPLETED)

TYPE_CHECKING = False  # (typing is not imported at run time: docs/design.md §5.7)
if TYPE_CHECKING:
    from typing import Any, Generic, NamedTuple, TypeVar

    F = TypeVar("F", bound=_stdlib.Future[Any])

    class DoneAndNotDoneFutures(NamedTuple, Generic[F]):
        """What wait() returns: the futures ``done`` and ``not_done``."""

        done: set[F]
        not_done: set[F]

else:
    F = "F"  # collections.abc.Iterator[...] takes any parameter at run time
    # at run time, the stdlib's own named tuple: wait() returns what the stdlib's does
    DoneAndNotDoneFutures = _stdlib.DoneAndNotDoneFutures


def _check_futures(fs: Iterable[F], caller: str) -> set[F]:
    if isinstance(fs, _stdlib.Future):
        raise TypeError(
            f"{caller}() takes an iterable of futures, not a single future: write {caller}([fut])"
        )
    if not is_iterable(fs):
        raise TypeError(
            f"{caller}() takes an iterable of futures (a list, a set...), not "
            f"{type(fs).__name__} {fs!r:.80}"
        )
    futures = set(fs)
    for fut in futures:
        if not isinstance(fut, _stdlib.Future):
            raise TypeError(
                f"{caller}() takes concurrent.futures/corral futures, got "
                f"{type(fut).__name__}; for asyncio futures use asyncio.{caller}()"
            )
    return futures


def wait(
    fs: Iterable[F], timeout: float | None = None, return_when: str = ALL_COMPLETED
) -> DoneAndNotDoneFutures[F]:
    """Waits for the futures to complete, as ``concurrent.futures.wait``.

    Args:
        fs: futures (corral or stdlib, from any executors).
        timeout: most seconds to wait; None waits without a limit. On timeout the
            call returns what is done so far; nothing is cancelled.
        return_when: FIRST_COMPLETED, FIRST_EXCEPTION or ALL_COMPLETED.

    Returns:
        A named 2-tuple of sets: ``done`` and ``not_done``.

    Ctrl+C while waiting raises KeyboardInterrupt in the caller.
    """
    timeout = check_timeout("timeout", timeout)
    if return_when not in _RETURN_WHEN:
        raise ValueError(
            f"return_when must be FIRST_COMPLETED, FIRST_EXCEPTION or ALL_COMPLETED, "
            f"got {return_when!r}"
        )
    futures = _check_futures(fs, "wait")
    done, not_done = _stdlib.wait(futures, timeout, return_when)
    return DoneAndNotDoneFutures(done, not_done)  # type: ignore[arg-type]  # (sets of fs)


def _as_completed(fs: set[F], timeout: float | None) -> Iterator[F]:
    """The stdlib's as_completed, typed with the futures' own type."""
    return _stdlib.as_completed(fs, timeout)  # type: ignore[return-value]


class as_completed(Iterator[F]):
    """Yields futures as they complete: ``for f in ...`` or ``async for f in ...``.

    Futures already done are yielded first; duplicates once. ``timeout`` counts from
    this call: when it passes with futures still not done, iteration raises the
    builtin TimeoutError (nothing is cancelled). ``async for`` never blocks the
    event loop and uses no thread. Ctrl+C while waiting raises KeyboardInterrupt.
    ``progress=True`` draws a bar of the futures done (``corral.Progress`` chooses
    how); it is also reachable as the ``progress`` attribute.
    """

    def __init__(
        self, fs: Iterable[F], timeout: float | None = None, *, progress: bool | Progress = False
    ) -> None:
        timeout = check_timeout("timeout", timeout)
        # handed over to the iteration when it starts, which drops each future it
        # yields: nothing here keeps a finished future alive (as the stdlib)
        self._fs = _check_futures(fs, "as_completed")
        self._total = len(self._fs)
        self._deadline = None if timeout is None else now() + timeout
        self._iter: Iterator[F] | None = None
        self.progress = make_progress(progress, "as_completed")
        if self.progress is not None:
            self.progress.set_total(len(self._fs))
            for fut in self._fs:
                count_future(self.progress, fut)

    def _remaining(self) -> float | None:
        return None if self._deadline is None else max(0.0, self._deadline - now())

    def __iter__(self) -> Iterator[F]:
        return self

    def __next__(self) -> F:
        if self._iter is None:
            fs, self._fs = self._fs, set()
            self._iter = _as_completed(fs, self._remaining())
            del fs
        try:
            return next(self._iter)
        except _stdlib.TimeoutError as exc:  # 3.10: not the builtin one
            if self.progress is not None:
                self.progress.close()
            if isinstance(exc, WaitTimeout):
                raise
            raise WaitTimeout(*exc.args) from None

    def __aiter__(self) -> AsyncIterator[F]:
        return self._aiter()

    async def _aiter(self) -> AsyncIterator[F]:
        import asyncio  # here: only async code needs it

        loop = asyncio.get_running_loop()
        ready: asyncio.Queue[F] = asyncio.Queue()
        listening = True

        def on_done(fut: F) -> None:
            if listening:
                # RuntimeError: the loop closed, nobody is listening any more
                with contextlib.suppress(RuntimeError):
                    loop.call_soon_threadsafe(ready.put_nowait, fut)

        fs, self._fs = self._fs, set()
        pending = len(fs)
        while fs:  # emptied: no reference stays here to a future once it was yielded
            fs.pop().add_done_callback(on_done)  # type: ignore[arg-type]
        try:
            while pending:
                try:
                    got = [await asyncio.wait_for(ready.get(), self._remaining())]
                except (asyncio.TimeoutError, TimeoutError):
                    if self.progress is not None:
                        self.progress.close()
                    raise WaitTimeout(f"{pending} (of {self._total}) futures unfinished") from None
                pending -= 1
                yield got.pop()
        finally:
            listening = False


__all__ = [
    "ALL_COMPLETED",
    "FIRST_COMPLETED",
    "FIRST_EXCEPTION",
    "DoneAndNotDoneFutures",
    "as_completed",
    "wait",
]
