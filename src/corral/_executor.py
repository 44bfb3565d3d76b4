"""The executor front: what the user holds and calls.

``BaseExecutor`` (``corral.Executor``) gives every pool the stdlib's methods (submit,
map, shutdown, the with-blocks) plus corral's (submit_nowait, options, statistics);
each forwards to the pool's ``Core`` (``_core.py``: the queue, the task life, the seam
to the backend). The front is the only object that holds itself: when the user drops
it, a finalizer winds the pool down as ``shutdown(wait=False)`` would.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Iterable
from types import TracebackType

from . import _stdlib
from ._checks import check_bool
from ._core import Backend, Core
from ._future import Future
from ._options import TaskOptions

TYPE_CHECKING = False  # (typing is not imported at run time: docs/design.md §5.7)
if TYPE_CHECKING:
    from typing import Any, ParamSpec, TypeVar

    from ._map import MapIterator
    from ._observe.progress import Progress
    from ._stats import Statistics

    P = ParamSpec("P")
    T = TypeVar("T")
    E = TypeVar("E", bound="BaseExecutor")


class BaseExecutor(_stdlib.Executor):
    """What every corral executor shares; see ThreadPoolExecutor for the full contract."""

    _kind = "executor"
    _core: Core
    _on_drop: weakref.finalize[Any, Any] | None = None

    def _attach(self, backend: Backend) -> None:
        """Last in a constructor: the pool runs, and interpreter exit, Ctrl+C and the
        garbage collector see it."""
        self._core.attach(backend)
        self._on_drop = weakref.finalize(self, _pool_dropped, self._core)
        self._on_drop.atexit = False  # at exit, _python_exit sees to every pool

    # The stdlib's private names that code in the wild reads (CPython's own tests too).
    @property
    def _max_workers(self) -> int:
        return self._core.max_workers

    @property
    def _broken(self) -> str | None:
        return self._core.broken

    @property
    def _shutdown(self) -> bool:
        return self._core.closed

    # ------------------------------------------------------------------ public API

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        """Schedules ``fn(*args, **kwargs)`` and returns its Future.

        Blocks while ``max_pending`` tasks are already waiting to start, until a task
        starts (or is cancelled) and makes room. Ctrl+C while blocked raises
        KeyboardInterrupt in the caller and queues nothing.

        Raises:
            TypeError: ``fn`` is not callable.
            RuntimeError: the executor was shut down.
            BrokenExecutor: the executor cannot run work any more.
        """
        return self._core.submit(self._core.defaults, fn, args, kwargs, block=True)

    def submit_nowait(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        """Like submit(), but raises QueueFull instead of blocking when the queue is full.

        Raises:
            QueueFull: ``max_pending`` tasks are already waiting to start.
        """
        return self._core.submit(self._core.defaults, fn, args, kwargs, block=False)

    def map(
        self,
        fn: Callable[..., T],
        *iterables: Iterable[Any],
        timeout: float | None = None,
        chunksize: int = 1,
        buffersize: int | None = None,
        ordered: bool = True,
        progress: bool | Progress = False,
    ) -> MapIterator[T]:
        """Runs ``fn`` over the items of ``iterables``, like the builtin map, concurrently.

        Args:
            fn: the function to call with one item of each iterable.
            timeout: seconds, counted from this call, after which the iterator raises
                TimeoutError for a result that is not ready (the rest are cancelled).
            chunksize: items sent to a process worker in one message (the thread
                pool ignores it, as the stdlib's does).
            buffersize: if given, at most this many results are held ahead of the
                consumer and the input is read only as results are consumed, so an
                infinite iterable works in bounded memory. If None, all the input is
                submitted even if no result is read (the stdlib's behaviour), by a
                feeder thread: map() returns at once, the input is read as the pool
                takes work, and shutdown() (a with-block) waits for the feeder. An
                error of the input itself is raised by the iterator after the items
                read before it.
            ordered: False yields results in completion order instead of input order.
            progress: True draws a progress bar of the items that finished (tqdm if
                installed, else text, on stderr); a ``corral.Progress`` chooses how.

        Returns:
            An iterator (and async iterator) over the results. It raises the first
            failing item's exception when it reaches that item. Closing it, or
            dropping it, cancels the work behind it that has not been yielded.
        """
        overridden = type(self).submit is not BaseExecutor.submit or "submit" in vars(self)
        return self._core.map(
            self._core.defaults,
            fn,
            iterables,
            timeout,
            chunksize,
            buffersize,
            ordered,
            progress,
            submit=_submit_of(self) if overridden else None,
        )

    def options(self, **overrides: Any) -> Configured:
        """Returns a view of this executor whose submit/map use other task settings.

        ``ex.options(task_timeout=5, retries=2, priority=10, name="resize")
        .submit(fn, x)``. Valid names: task_timeout, retries, retry_on, priority, name.

        Raises:
            TypeError: an unknown option name or a value of the wrong type.
            ValueError: a value out of range (a negative timeout, say).
        """
        return Configured(self._core, self._core.defaults.merged(**overrides))

    def shutdown(
        self, wait: bool = True, *, cancel_futures: bool = False, kill: bool = False
    ) -> None:
        """Stops accepting work and releases the workers when their work is done.

        Args:
            wait: block until every worker has exited. A first Ctrl+C while waiting
                cancels and stops the work of every pool (docs/design.md §10) and
                raises KeyboardInterrupt here; a second one SIGKILLs the workers.
            cancel_futures: cancel the tasks that have not started.
            kill: also stop running tasks now (processes are killed; thread tasks
                see ``corral.cancelled()``). Implies cancel_futures.

        Each flag is True or False; 0, 1 and None (False) are taken as the stdlib
        takes them.

        Raises:
            TypeError: a flag of another type (a truthy string such as "no" would
                silently mean True); nothing is shut down then.
        """
        wait = check_bool("wait", wait, allow_none=True)
        cancel_futures = check_bool("cancel_futures", cancel_futures, allow_none=True)
        kill = check_bool("kill", kill, allow_none=True)
        if self._on_drop is not None:
            self._on_drop.detach()  # shut down by hand: nothing to do when dropped
        self._core.shutdown(wait, cancel_futures, kill)

    def statistics(self) -> Statistics:
        """A snapshot of the pool: workers, queue and outcome counters."""
        return self._core.statistics()

    def __enter__(self: E) -> E:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> None:
        """A normal exit waits for all work; an exit through an exception stops it."""
        if exc_type is None:
            self.shutdown(wait=True)
        else:
            self.shutdown(wait=True, cancel_futures=True, kill=True)

    async def __aenter__(self: E) -> E:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> None:
        import asyncio

        kill = exc_type is not None
        self.shutdown(wait=False, cancel_futures=kill, kill=kill)
        await asyncio.to_thread(self._core.wait_for_backend)


class Configured:
    """An executor seen through other task settings; made by ``executor.options()``."""

    __slots__ = ("_core", "_opts")

    def __init__(self, core: Core, opts: TaskOptions) -> None:
        self._core = core
        self._opts = opts

    def options(self, **overrides: Any) -> Configured:
        """Applies more overrides on top of these ones."""
        return Configured(self._core, self._opts.merged(**overrides))

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        """As executor.submit(), with these settings."""
        return self._core.submit(self._opts, fn, args, kwargs, block=True)

    def submit_nowait(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        """As executor.submit_nowait(), with these settings."""
        return self._core.submit(self._opts, fn, args, kwargs, block=False)

    def map(
        self,
        fn: Callable[..., T],
        *iterables: Iterable[Any],
        timeout: float | None = None,
        chunksize: int = 1,
        buffersize: int | None = None,
        ordered: bool = True,
        progress: bool | Progress = False,
    ) -> MapIterator[T]:
        """As executor.map(), with these settings for every item."""
        return self._core.map(
            self._opts, fn, iterables, timeout, chunksize, buffersize, ordered, progress
        )


def _pool_dropped(core: Core) -> None:
    """The user dropped a pool without shutting it down: wind it down, as
    shutdown(wait=False) would, in a thread of its own (this runs wherever the last
    reference went, perhaps inside the garbage collector: it takes no lock here)."""
    try:
        threading.Thread(
            target=core.shutdown, args=(False,), name="corral-dropped-pool", daemon=True
        ).start()
    except RuntimeError:  # the interpreter is finalizing: _python_exit saw to the pool
        pass


def _submit_of(executor: BaseExecutor) -> Callable[..., Future[Any]]:
    """The executor's own (overridden) submit, held weakly, as the stdlib's map holds
    its executor: a map iterator left behind never keeps a dropped pool alive; once the
    pool is gone, submitting raises RuntimeError."""
    ref = weakref.ref(executor)

    def submit(fn: Callable[..., Any], /, *args: Any) -> Future[Any]:
        pool = ref()
        if pool is None:
            raise RuntimeError("cannot submit: the executor of this map() was collected")
        return pool.submit(fn, *args)

    return submit
