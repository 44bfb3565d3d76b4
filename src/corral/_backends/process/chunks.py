"""Automatic chunking of ``map()`` on the process pool.

Sending each item of a big map as its own task costs a round trip per item; sending
huge chunks starves workers and delays the first results. corral sizes chunks from
measured run times instead of asking the caller for ``chunksize``:

* a chunk is aimed at ``TARGET_SECONDS`` of work, so tiny items go by the thousand and
  items of 20 ms or more go one by one (batching would only hurt their balance); when
  the input's length is known, no chunk takes more than a quarter of a worker's share,
  as ``multiprocessing.Pool.map`` does, so every worker gets work;
* with the stdlib's eager map (no ``buffersize``), the first item is sent alone; while
  its run time is unknown, further items go one by one while a worker is free, one per
  worker at most (N slow items on N workers all start at once, DESIGN §3.7); then the
  feeder waits for the probe (at most ``PROBE_WAIT``, pool start included)
  before cutting the rest; an item slower than that is not batched at all;
* with ``buffersize``, chunks start at one item and grow as chunks complete;
* a map over one ``range`` sends ranges (``_map.RangeItems``): the parent makes no ints
  and pickles a few bytes per chunk, which halves a map of tiny items over a range.

What the user sees does not change: one result or exception per item, in order. Two
things are per chunk, not per item: a worker crash fails the whole chunk (retries
re-run it), and ``task_timeout`` would apply to the chunk, so a map with a
``task_timeout`` is not chunked automatically. An explicit ``chunksize`` > 1 is used as
given, and then a ``task_timeout`` limits each chunk.
"""

from __future__ import annotations

import operator
from collections.abc import Iterable, Iterator, Sequence

from ... import _pickling
from ..._checks import callable_name
from ..._errors import CancelledError
from ..._future import Future
from ..._map import RangeItems, Units
from ..._options import TaskOptions
from .worker import run_chunk  # what runs in the workers

TYPE_CHECKING = False  # (typing is not imported at run time: docs/design.md §5.7)
if TYPE_CHECKING:
    from typing import Any

    from .manager import ProcessManager

TARGET_SECONDS = 0.02
PROBE_WAIT = 2.0
MAX_CHUNK = 10_000  # input of unknown length
MAX_CHUNK_KNOWN = 100_000  # input whose length is known


class ChunkUnits(Units):
    """Submits a map's items in chunks sized from measured run times."""

    chunked = True

    def __init__(
        self,
        backend: ProcessManager,
        opts: TaskOptions,
        fn: Any,
        chunksize: int,
        eager: bool,
    ) -> None:
        self._backend = backend
        if opts.name is None:  # hooks, timelines and errors name the user's function
            opts = opts.merged(name=f"map({callable_name(fn)})")
        self._opts = opts
        self._fn_data = backend.functions.dumps(fn)
        self._fixed = chunksize if chunksize > 1 else None
        self._eager = eager
        self._per_item: float | None = None
        self._probe: Future[Any] | None = None
        self._singles = 0  # items sent alone while the probe ran
        self._star = True
        self._max = MAX_CHUNK

    def size(self) -> int:
        if self._fixed is not None:
            return self._fixed
        if self._per_item is None and self._probe is not None and self._eager:
            if self._singles < self._backend.core.max_workers and self._backend.has_free_worker():
                # no head-of-line blocking: a free worker takes an item now (one item
                # per worker at most, or tiny items would all go one by one meanwhile)
                self._singles += 1
                return 1
            try:
                self._probe.exception(PROBE_WAIT)
            except (TimeoutError, CancelledError):
                pass
            if self._per_item is None:  # slow, or failed: do not batch
                self._per_item = PROBE_WAIT
        if self._per_item is None:
            return 1
        return max(1, min(self._max, int(TARGET_SECONDS / max(self._per_item, 1e-9))))

    def prepare(self, iterables: tuple[Iterable[Any], ...]) -> Iterator[Any]:
        self._star = len(iterables) != 1
        known = min((operator.length_hint(it, 0) for it in iterables), default=0)
        if known:  # as multiprocessing.Pool.map: about 4 chunks per worker at most
            workers = self._backend.core.max_workers
            self._max = max(1, min(MAX_CHUNK_KNOWN, -(-known // (4 * workers))))
        if self._star:
            return zip(*iterables, strict=False)
        if type(iterables[0]) is range:  # cut by slicing (ranges cannot be subclassed)
            return RangeItems(iterables[0])
        return iter(iterables[0])

    def submit(self, items: Sequence[Any]) -> Future[Any]:
        args = (self._fn_data, items, self._star)
        fut = self._backend.core.submit(self._opts, run_chunk, args, {}, True)
        fut.add_done_callback(self._observe)
        if self._probe is None:
            self._probe = fut
        return fut

    def _observe(self, fut: Future[Any]) -> None:
        if fut.cancelled() or fut.exception() is not None:
            return
        seconds, values, _ = fut.result()
        per_item = seconds / max(1, len(values))
        previous = self._per_item
        self._per_item = per_item if previous is None else 0.7 * previous + 0.3 * per_item

    def error(self, data: bytes) -> BaseException:
        return _pickling.load_exception(data)
