"""The stdlib's ``concurrent.futures`` names that corral builds on, bound once at import.

To run third-party code on corral, users install corral's names into the stdlib module
(``concurrent.futures.wait = corral.wait``, ``concurrent.futures.ProcessPoolExecutor =
corral.ProcessPoolExecutor``, or :func:`corral.install`). Anything corral reached
through ``concurrent.futures.<name>`` at call time would then be corral itself:
``corral.wait`` calling "the stdlib's wait" would call itself forever. So every stdlib
name corral uses is taken here from the submodules that define it, before anyone could
have replaced it, and corral's modules use these bindings only.
"""

from __future__ import annotations

import concurrent.futures._base as _base

TYPE_CHECKING = False  # (typing itself is not imported: worker processes load this)

Executor = _base.Executor
Future = _base.Future
wait = _base.wait
as_completed = _base.as_completed
ALL_COMPLETED = _base.ALL_COMPLETED
FIRST_COMPLETED = _base.FIRST_COMPLETED
FIRST_EXCEPTION = _base.FIRST_EXCEPTION
CancelledError = _base.CancelledError
TimeoutError = _base.TimeoutError
InvalidStateError = _base.InvalidStateError
DoneAndNotDoneFutures = _base.DoneAndNotDoneFutures
BrokenExecutor = _base.BrokenExecutor
LOGGER = _base.LOGGER  # "concurrent.futures": where a failing done callback is logged

# The executors and their errors are bound on first use: importing
# concurrent.futures.process costs a worker process about 20 ms it never needs. The
# first use comes before anyone can install corral into concurrent.futures, as that
# needs corral's executors, whose classes are made from these.
if TYPE_CHECKING:
    from concurrent.futures.process import BrokenProcessPool as BrokenProcessPool
    from concurrent.futures.process import ProcessPoolExecutor as ProcessPoolExecutor
    from concurrent.futures.thread import BrokenThreadPool as BrokenThreadPool
    from concurrent.futures.thread import ThreadPoolExecutor as ThreadPoolExecutor
else:
    _LAZY = {
        "ThreadPoolExecutor": "thread",
        "BrokenThreadPool": "thread",
        "ProcessPoolExecutor": "process",
        "BrokenProcessPool": "process",
    }

    def __getattr__(name: str) -> object:
        if name not in _LAZY:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        # (__import__, not importlib.import_module: importlib is not imported otherwise)
        module = __import__(f"concurrent.futures.{_LAZY[name]}", None, None, [name])
        value = getattr(module, name)
        globals()[name] = value
        return value
