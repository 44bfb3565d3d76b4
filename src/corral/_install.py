"""``corral.install()``: run code written for ``concurrent.futures`` on corral, unchanged.

Third-party code (a library, a tool, a test suite) that imports ``concurrent.futures``
cannot have its import line changed. ``install()`` puts corral's executors, ``wait`` and
``as_completed`` into the stdlib module, where such code looks them up at call time
(``concurrent.futures.ProcessPoolExecutor(...)``, which is also how asyncio makes its
default executor). corral itself keeps using the stdlib's own names (``_stdlib``), so
nothing recurses.

``concurrent.futures.Future`` is left alone unless asked: asyncio checks
``isinstance(fut, concurrent.futures.Future)`` on futures that stdlib code makes, and
those would no longer pass if the name meant corral's subclass.
"""

from __future__ import annotations

import concurrent.futures
import concurrent.futures.process
import concurrent.futures.thread
from types import ModuleType, TracebackType
from typing import Any

_MODULE = concurrent.futures


class Installed:
    """What ``install()`` replaced; ``uninstall()`` (or leaving a with-block) puts it back."""

    def __init__(self, replaced: list[tuple[ModuleType, str, Any]]) -> None:
        self._replaced = replaced

    def uninstall(self) -> None:
        """Restores the names install() replaced (once; later calls do nothing)."""
        while self._replaced:
            module, name, value = self._replaced.pop()
            setattr(module, name, value)

    def __enter__(self) -> Installed:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.uninstall()


def install(*, future: bool = False) -> Installed:
    """Makes ``concurrent.futures`` hand out corral: executors, ``wait``, ``as_completed``.

    Replaces ``ThreadPoolExecutor``, ``ProcessPoolExecutor``, ``wait`` and
    ``as_completed`` in ``concurrent.futures`` (and the executors in its ``thread`` and
    ``process`` submodules), so code that looks them up there runs on corral. With
    ``future=True`` also ``concurrent.futures.Future`` (see the module docs for why it
    is not the default). Code that bound the names before (``from concurrent.futures
    import wait`` at its import) keeps the stdlib's.

    Returns:
        An ``Installed`` handle: ``uninstall()`` restores the stdlib's names; it is
        also a context manager (``with corral.install(): ...``).

    Raises:
        TypeError: ``future`` is not True or False.
    """
    from ._checks import check_bool

    check_bool("future", future)
    import corral

    names: list[tuple[ModuleType, str, Any]] = [
        (_MODULE, "ThreadPoolExecutor", corral.ThreadPoolExecutor),
        (_MODULE, "ProcessPoolExecutor", corral.ProcessPoolExecutor),
        (_MODULE, "wait", corral.wait),
        (_MODULE, "as_completed", corral.as_completed),
        (concurrent.futures.thread, "ThreadPoolExecutor", corral.ThreadPoolExecutor),
        (concurrent.futures.process, "ProcessPoolExecutor", corral.ProcessPoolExecutor),
    ]
    if future:
        names.append((_MODULE, "Future", corral.Future))
    replaced = []
    for module, name, value in names:
        replaced.append((module, name, getattr(module, name)))
        setattr(module, name, value)
    return Installed(replaced)
