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
import concurrent.futures.process as _process
import concurrent.futures.thread as _thread

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
BrokenExecutor = _base.BrokenExecutor
ThreadPoolExecutor = _thread.ThreadPoolExecutor
BrokenThreadPool = _thread.BrokenThreadPool
ProcessPoolExecutor = _process.ProcessPoolExecutor
BrokenProcessPool = _process.BrokenProcessPool
