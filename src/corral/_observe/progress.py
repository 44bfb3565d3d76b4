"""Progress bars for ``map``, ``as_completed`` and ``TaskGroup`` (``progress=True``).

Counts are kept by the futures' done callbacks (a map counts whole chunks at once),
so a bar shows work that *finished*, not results read. Drawing is throttled: at most
one redraw per ``interval``, done in whichever thread reports progress, plus a last
one at the end. The bar is tqdm's when tqdm is installed (``pip install
corral[progress]``) and the stream is a terminal; otherwise a plain line of text,
rewritten in place on a terminal and printed every ``interval`` (default 5 s)
elsewhere (a log file, CI).
"""

from __future__ import annotations

import contextlib
import sys
import threading
from collections.abc import Iterable

from .._checks import check_count, check_timeout
from .._clock import now

TYPE_CHECKING = False  # (typing is not imported at run time: docs/design.md §5.7)
if TYPE_CHECKING:
    from typing import IO, Any


def _has_tqdm() -> bool:
    import importlib.util  # (here: most programs never ask)

    return importlib.util.find_spec("tqdm") is not None


class Progress:
    """A progress display for a map, an as_completed loop or a TaskGroup.

    Pass ``progress=True`` for the default, or a Progress to choose::

        for r in ex.map(f, items, progress=corral.Progress(desc="resize", style="text")):
            ...

    Args:
        desc: the label in front of the bar.
        total: how many tasks to expect; None: counted as work is submitted (a map
            over a sized input knows it at once).
        file: where to draw; default ``sys.stderr``.
        style: "auto" (tqdm on a terminal when installed, else text), "tqdm", "text",
            or "none" (count only; read ``done``/``failed``).
        interval: seconds between redraws; default 0.1 on a terminal, 5 elsewhere.

    Attributes:
        done: tasks that completed. ``failed``: tasks that raised. ``cancelled``:
        tasks cancelled (not drawn as progress). ``total``: as above.

    A Progress is used once: it closes (draws its last line) when the work it
    watches is over. Ctrl+C and timeouts close it too, where the work stops.
    """

    def __init__(
        self,
        desc: str | None = None,
        *,
        total: int | None = None,
        file: IO[str] | None = None,
        style: str = "auto",
        interval: float | None = None,
    ) -> None:
        if style not in ("auto", "tqdm", "text", "none"):
            raise ValueError(f"style must be 'auto', 'tqdm', 'text' or 'none', got {style!r}")
        if style == "tqdm" and not _has_tqdm():
            raise ImportError(
                "style='tqdm' needs tqdm, which is not installed: pip install 'corral[progress]'"
            )
        total = check_count("total", total, minimum=0, allow_none=True)
        self.desc = desc
        self.total = total
        self.file = file
        self.done = 0
        self.failed = 0
        self.cancelled = 0
        self._style = style
        self._interval = check_timeout("interval", interval)
        self._lock = threading.Lock()
        self._started: float | None = None
        self._last_draw = 0.0
        self._closed = False
        self._bar: Any = None
        self._tty = False
        self._drawn = 0  # count the tqdm bar has been told of
        self._final = total is not None  # the total will not grow: close when reached

    # ------------------------------------------------------------------ counting

    def start(self, desc: str) -> None:
        """Called by corral when the watched work begins (once)."""
        with self._lock:
            if self._started is not None:
                return
            self._started = now()
            if self.desc is None:
                self.desc = desc
            file = self.file if self.file is not None else sys.stderr
            self.file = file
            isatty = getattr(file, "isatty", None)
            self._tty = bool(isatty and isatty())
            style = self._style
            if style == "auto":
                style = "tqdm" if self._tty and _has_tqdm() else "text"
            self._style = style
            if self._interval is None:
                self._interval = 0.1 if self._tty else 5.0
            if style == "tqdm":
                from tqdm import tqdm

                self._bar = tqdm(total=self.total, desc=self.desc, file=file, unit="task")

    def add_total(self, count: int) -> None:
        """Counts ``count`` more tasks to expect (not when the total was given)."""
        with self._lock:
            if self._final:
                return
            self.total = (self.total or 0) + count
            if self._bar is not None:
                self._bar.total = self.total

    def set_total(self, count: int) -> None:
        with self._lock:
            self.total = count
            self._final = True
            if self._bar is not None:
                self._bar.total = count
            finished = self.done + self.failed + self.cancelled >= count
            if finished and not self._closed and self._started is not None:
                self._close_locked(now())

    def advance(self, done: int = 0, failed: int = 0, cancelled: int = 0) -> None:
        """Counts finished tasks; redraws when ``interval`` has passed since the last."""
        with self._lock:
            self.done += done
            self.failed += failed
            self.cancelled += cancelled
            if self._closed or self._started is None:
                return
            current = now()
            total = self.total
            counted = self.done + self.failed + self.cancelled
            if self._final and total is not None and counted >= total:
                self._close_locked(current)
                return
            assert self._interval is not None
            if current - self._last_draw < self._interval:
                return
            self._last_draw = current
            self._draw_locked(current, final=False)

    def close(self) -> None:
        """Draws the final state (once); later calls do nothing."""
        with self._lock:
            if not self._closed and self._started is not None:
                self._close_locked(now())

    def _close_locked(self, current: float) -> None:
        self._closed = True
        self._draw_locked(current, final=True)
        if self._bar is not None:
            self._bar.close()

    # ------------------------------------------------------------------ drawing

    def line(self, current: float | None = None) -> str:
        """The text the plain display shows, e.g. ``"squares: 600/1000 done (60%),
        2 failed, 1.5k tasks/s, 0.4 s elapsed, ~0.3 s left"``."""
        current = now() if current is None else current
        elapsed = current - (self._started if self._started is not None else current)
        finished = self.done + self.failed
        parts = [f"{self.desc or 'tasks'}: {finished}"]
        if self.total:
            parts[0] += f"/{self.total} done ({100 * finished // self.total}%)"
        else:
            parts[0] += " done"
        if self.failed:
            parts.append(f"{self.failed} failed")
        if self.cancelled:
            parts.append(f"{self.cancelled} cancelled")
        rate = finished / elapsed if elapsed > 0 else 0.0
        parts.append(f"{_count(rate)} tasks/s")
        parts.append(f"{elapsed:.1f} s elapsed")
        if self.total and rate > 0 and finished < self.total:
            parts.append(f"~{(self.total - finished) / rate:.1f} s left")
        return ", ".join(parts)

    def _draw_locked(self, current: float, final: bool) -> None:
        file = self.file
        assert file is not None
        if self._style == "none":
            return
        if self._bar is not None:
            finished = self.done + self.failed
            self._bar.update(finished - self._drawn)
            self._drawn = finished
            if self.failed or self.cancelled:
                self._bar.set_postfix(failed=self.failed, cancelled=self.cancelled, refresh=False)
            return
        with contextlib.suppress(OSError, ValueError):  # a closed or broken stream
            if self._tty:
                file.write("\r\x1b[K" + self.line(current) + ("\n" if final else ""))
            else:
                file.write(self.line(current) + "\n")
            file.flush()


def _count(value: float) -> str:
    if value >= 1e6:
        return f"{value / 1e6:.1f}M"
    if value >= 1e3:
        return f"{value / 1e3:.1f}k"
    return f"{value:.1f}"


def check_progress(progress: object) -> None:
    """Fails fast on a ``progress=`` argument that is not False/None, True or a Progress."""
    if not (progress is None or isinstance(progress, (bool, Progress))):
        raise TypeError(
            f"progress must be True, False or a corral.Progress, not {type(progress).__name__}"
        )


def make_progress(
    progress: object, desc: str, iterables: tuple[Iterable[Any], ...] = ()
) -> Progress | None:
    """The started Progress for a ``progress=`` argument, or None.

    ``iterables``: a map's input; when each has a length, the total is known at once.
    """
    check_progress(progress)
    if not progress:
        return None
    bar = progress if isinstance(progress, Progress) else Progress()
    if bar.total is None and iterables and all(hasattr(i, "__len__") for i in iterables):
        bar.set_total(min(len(i) for i in iterables))  # type: ignore[arg-type]
    bar.start(desc)
    return bar


def count_future(bar: Progress, fut: Any, items: int = 1, chunked: bool = False) -> None:
    """Counts ``fut``'s outcome on ``bar`` when it is done.

    ``items``: how many tasks the future stands for; ``chunked``: its result is a
    process-pool chunk (its third element maps positions to the items that failed).
    """

    def on_done(f: Any) -> None:
        if f.cancelled():
            bar.advance(cancelled=items)
        elif f.exception() is not None:
            bar.advance(failed=items)
        elif chunked and f.result()[2]:
            failed = len(f.result()[2])
            bar.advance(done=items - failed, failed=failed)
        else:
            bar.advance(done=items)

    fut.add_done_callback(on_done)
