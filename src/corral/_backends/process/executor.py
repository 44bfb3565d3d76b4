"""corral.ProcessPoolExecutor: exact dispatch, kill on cancel, crash isolation.

Data flow::

    submit() ---pickle call (big buffers -> shared memory)---> front queue
                                                                   |
       wake pipe  <----------- "work available" ------------------+
          |
    manager thread (one per pool; the only reader and writer of worker pipes)
      selector over: wake pipe | each worker's pipe | each worker's exit sentinel
          |   dispatch: one task to each idle worker, and it remembers which
          |   RunCalls ------------------------------------------> worker process
          |                                                          (own process group,
          |   <-------------------------------------------- Ok/Error SIGINT ignored,
          |   resolve the future; worker idle again                  dies with parent)
          |
          +-- worker exit sentinel: the task it ran fails with WorkerCrashed (or is
              retried); tasks handed to it but not started go back to the queue; a
              replacement starts when there is work
    cancel()/task_timeout --"stop"--> manager: TERM the worker's process group, KILL
                                      after kill_grace; the future is already resolved

The manager thread never sleeps or polls: it blocks in ``select`` until a worker
writes, a worker exits, another thread wakes it, or the next deadline of its small
heap (kill escalation, idle reaping) comes.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.context
import multiprocessing.reduction
import re
import signal
import sys
from collections.abc import Callable

from ... import _pickling, _stdlib
from ..._checks import (
    callable_name,
    check_bool,
    check_count,
    check_initializer,
    check_start_method,
    check_timeout,
    cpu_count,
)
from ..._core import Core
from ..._errors import SerializationError
from ..._executor import BaseExecutor
from .manager import ProcessManager

TYPE_CHECKING = False  # (typing is not imported at run time: docs/design.md §5.7)
if TYPE_CHECKING:
    from typing import Any

    #: What a worker gets to run its initializer: the pickled initializer, and each of
    #: the initargs pickled here ("pickled", bytes) or as the object itself ("raw", obj).
    WorkerInit = tuple[bytes, tuple[tuple[str, Any], ...]]

_MAIN_GUARD = re.compile(r"""^if\s+__name__\s*==\s*['"]__main__['"]\s*:""", re.MULTILINE)


def _default_context() -> multiprocessing.context.BaseContext:
    """forkserver (safe with threads, as Python 3.14 chose), but fork for unguarded scripts.

    forkserver and spawn import the main script again in the workers; a script without
    an ``if __name__ == "__main__":`` guard would then run its own top level, pool
    included, in every worker, and a script read from standard input (``python -``)
    has no file to import. Such scripts get fork, as they did with the stdlib before
    3.14 (see docs/design.md, "Start method"). ``python -c`` has no main file at all:
    forkserver imports nothing of it.
    """
    methods = multiprocessing.get_all_start_methods()
    if "forkserver" not in methods:  # pragma: no cover - not Linux/BSD
        return multiprocessing.get_context("spawn")
    path = getattr(sys.modules.get("__main__"), "__file__", None)
    if path and "fork" in methods:
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                guarded = _MAIN_GUARD.search(f.read()) is not None
        except OSError:  # "<stdin>" (python - < job.py): no file to import again
            guarded = False
        if not guarded:
            return multiprocessing.get_context("fork")
    return multiprocessing.get_context("forkserver")


def _pack_init(
    initializer: Callable[..., object],
    initargs: tuple[Any, ...],
    ctx: multiprocessing.context.BaseContext,
) -> WorkerInit:
    """Prepares the initializer and its arguments for the worker processes.

    Each argument is pickled here with cloudpickle where it can be (lambdas and
    closures too). One that refuses, such as a multiprocessing Lock, Queue, Value or
    Event ("should only be shared between processes through inheritance"), is handed to
    the worker as the stdlib does: as an argument of the new Process, which
    multiprocessing passes on while it starts the process (fork: inherited;
    spawn/forkserver: pickled by multiprocessing's own reducers, where such objects may
    travel). That is checked here with a dry run, so an argument that cannot reach the
    workers at all fails now, not at the first worker start.
    """
    try:  # as task functions go: __main__'s own one in the worker, where it has it
        fn_data = _pickling.FunctionPickler().dumps(initializer)
    except SerializationError as exc:
        raise TypeError(
            f"the initializer {callable_name(initializer)} could not be pickled for the "
            f"worker processes: {exc.__cause__}"
        ) from exc.__cause__
    packed: list[tuple[str, Any]] = []
    for position, arg in enumerate(initargs):
        try:
            packed.append(("pickled", _pickling.cloudpickle.dumps(arg, _pickling.PROTOCOL)))
            continue
        except Exception as exc:
            # the text only: the exception's frames hold ``arg`` (a Queue, say) in a
            # reference cycle, which would keep it alive until a garbage collection
            error = f"{type(exc).__name__}: {exc}"
        if ctx.get_start_method() != "fork":
            try:
                _dry_run_spawn_pickle(arg)
            except Exception as exc:
                raise _OnlyByFork(
                    f"initargs[{position}] ({type(arg).__name__}) cannot be sent to the "
                    f"worker processes: {error}; nor as an argument of a new "
                    f"{ctx.get_start_method()} process: {exc}. Pass data that pickles, "
                    "a multiprocessing object made from the pool's context (mp_context.Lock()), "
                    'or mp_context="fork", where worker processes inherit it'
                ) from exc
        packed.append(("raw", arg))
    return fn_data, tuple(packed)


class _OnlyByFork(TypeError):
    """An initarg that a worker can get only by inheriting it (the fork start method)."""


class _DryRunPopen:
    """Stands in for the process being started while multiprocessing's reducers run."""

    @staticmethod
    def DupFd(fd: int) -> int:
        return fd

    @staticmethod
    def duplicate_for_child(fd: int) -> int:
        return fd


def _dry_run_spawn_pickle(arg: object) -> None:
    """Pickles ``arg`` as multiprocessing does while it starts a process (raises if it can't)."""
    multiprocessing.context.set_spawning_popen(_DryRunPopen())  # type: ignore[arg-type]
    try:
        multiprocessing.reduction.ForkingPickler.dumps(arg)
    finally:
        multiprocessing.context.set_spawning_popen(None)


def _check_not_bootstrapping() -> None:
    """Refuses to start a pool while a worker is importing the parent's main script."""
    frame = sys._getframe(2)
    importing = getattr(multiprocessing.process.current_process(), "_inheriting", False)
    while frame is not None and not importing:
        importing = (
            frame.f_code.co_name == "<module>" and frame.f_globals.get("__name__") == "__mp_main__"
        )
        frame = frame.f_back  # type: ignore[assignment]
    if importing:
        raise RuntimeError(
            "a ProcessPoolExecutor is being created while a new worker process imports "
            "your main script: put the code that creates the pool under "
            '`if __name__ == "__main__":` (spawn and forkserver import the script again '
            'in every worker), or pass mp_context="fork"'
        )


# A subclass of the stdlib's class for isinstance checks; none of its methods run (mypy:
# see ThreadPoolExecutor on ``_broken``).
class ProcessPoolExecutor(BaseExecutor, _stdlib.ProcessPoolExecutor):  # type: ignore[misc]
    """A process pool that never breaks: the stdlib's API, plus kill-on-cancel and more.

    Args:
        max_workers: most worker processes; default the number of CPUs.
        mp_context: a multiprocessing context or start method name. Default:
            forkserver where available (safe when the parent has threads), else spawn.
        initializer: called with ``initargs`` in each new worker. If worker starts keep
            failing (3 in a row), the pool is broken: pending and later tasks fail
            with BrokenProcessPool, whose __cause__ is the initializer's error.
        max_tasks_per_child: a worker is replaced after running this many tasks.
        min_workers: workers kept alive even when idle.
        idle_timeout: seconds an idle worker waits before it exits (while more than
            min_workers live); None keeps them.
        max_pending: most tasks waiting to start; submit() blocks beyond it.
        task_timeout: default seconds a task may run; on overrun the worker is killed
            and the future fails with TaskTimeout.
        retries: default re-runs of a task whose worker crashed (WorkerCrashed), or
            that failed with an error listed in ``options(retry_on=...)``.
        max_memory_per_child: bytes of resident memory after which a worker is
            replaced, between tasks.
        kill_grace: seconds between SIGTERM and SIGKILL when a worker is stopped.
        hooks: observers of task and worker events, as for ThreadPoolExecutor
            (``corral.Hooks``, ``corral.Timeline``; docs/observability.md).
        forward_logging: send the workers' logging records to this process's
            handlers, with ``corral_worker`` and ``corral_task`` attributes set; the
            workers' own root handlers are replaced. False leaves their logging alone.

    Cancelling a running task, or its task_timeout, terminates the worker's whole
    process group and starts a replacement; the future resolves at once. Workers
    ignore Ctrl+C: the parent's first Ctrl+C cancels pending work and kills running work
    in every pool (a second SIGKILLs at once), and a with-block left through an
    exception kills running work. SIGTERM to the parent takes the workers' process
    groups down with it.
    """

    _kind = "ProcessPoolExecutor"

    def __init__(
        self,
        max_workers: int | None = None,
        mp_context: multiprocessing.context.BaseContext | str | None = None,
        initializer: Callable[..., object] | None = None,
        initargs: tuple[Any, ...] = (),
        *,
        max_tasks_per_child: int | None = None,
        min_workers: int = 0,
        idle_timeout: float | None = 60.0,
        max_pending: int | None = None,
        task_timeout: float | None = None,
        retries: int = 0,
        max_memory_per_child: int | None = None,
        kill_grace: float = 0.1,
        hooks: object | None = None,
        forward_logging: bool = True,
    ) -> None:
        _check_not_bootstrapping()
        if max_workers is None:
            max_workers = cpu_count()
        initargs = check_initializer(initializer, initargs)
        max_tasks_per_child = check_count(
            "max_tasks_per_child", max_tasks_per_child, minimum=1, allow_none=True
        )
        max_memory_per_child = check_count(
            "max_memory_per_child", max_memory_per_child, minimum=1, allow_none=True
        )
        grace = check_timeout("kill_grace", kill_grace, allow_none=False) or 0.0
        check_bool("forward_logging", forward_logging)
        # everything that can reject the arguments comes first: a pool that registered
        # itself (for interpreter exit and Ctrl+C) is one that works
        if mp_context is None:
            ctx = _default_context()
        elif isinstance(mp_context, str):
            check_start_method(mp_context, multiprocessing.get_all_start_methods())
            ctx = multiprocessing.get_context(mp_context)
        elif callable(getattr(mp_context, "Process", None)):
            ctx = mp_context
        else:
            raise TypeError(
                "mp_context must be a multiprocessing context (multiprocessing.get_context("
                f'"forkserver")), a start method name, or None; got {type(mp_context).__name__}'
            )
        init: WorkerInit | None = None
        if initializer is not None:
            try:
                init = _pack_init(initializer, initargs, ctx)
            except _OnlyByFork:
                # an initarg only fork can hand over (a lock of the default context on
                # Python <= 3.13, tqdm's lock): fork, the stdlib's default there, runs it
                if mp_context is not None or "fork" not in multiprocessing.get_all_start_methods():
                    raise
                ctx = multiprocessing.get_context("fork")
                init = _pack_init(initializer, initargs, ctx)
        core = self._core = Core(
            kind=self._kind,
            max_workers=max_workers,
            min_workers=min_workers,
            idle_timeout=idle_timeout,
            max_pending=max_pending,
            task_timeout=task_timeout,
            retries=retries,
            hooks=hooks,
        )
        backend = ProcessManager(
            core, ctx, init, grace, max_tasks_per_child, max_memory_per_child, forward_logging
        )
        self._backend = backend
        if mp_context is None and ctx.get_start_method() == "forkserver":
            # the default start method, chosen for its safety with threads: while the
            # program has none, the first workers are forked, at no risk and at once
            backend.fork_first()
        self._attach(backend)
        backend.start()

    def terminate_workers(self) -> None:
        """Stops the pool now: SIGTERM to every worker's process group (SIGKILL after
        kill_grace), as Python 3.14's method of that name, on every Python.

        Tasks not started are cancelled; running ones fail with BrokenProcessPool (not
        retried); the pool is shut down (submit raises RuntimeError). Returns once the
        workers are gone. Ctrl+C while it waits raises KeyboardInterrupt; the workers
        are already signalled.
        """
        self._backend.force_stop("terminate_workers", signal.SIGTERM)

    def kill_workers(self) -> None:
        """As terminate_workers(), with SIGKILL at once (Python 3.14's name)."""
        self._backend.force_stop("kill_workers", signal.SIGKILL)

    # The stdlib's private names that code in the wild reads (CPython's own tests too).
    @property
    def _processes(self) -> dict[int, multiprocessing.process.BaseProcess]:  # type: ignore[override]
        return self._backend.processes()

    @property
    def _mp_context(self) -> multiprocessing.context.BaseContext:  # type: ignore[override]
        return self._backend.ctx
