"""The process pool's manager: its thread, its worker processes, and what they say.

``ProcessPoolExecutor`` (``executor.py``) is the front's process backend: its
constructor, argument checks and the pickling of calls. This module is the actor
behind it: the one manager thread per pool that waits on the workers' pipes and exit
fds (through ``loop.py``), hands tasks over, books outcomes, kills, revokes, recycles
and replaces workers (the data flow is drawn in ``executor.py``'s docstring). What a
worker process is to it is ``procs.py``; what crosses the pipe, ``wire.py``.

(Longer than corral's usual 500 lines: its state is one thread's alone, and dispatch,
outcomes and worker life all change it; split across modules, that ownership would no
longer show.)
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import multiprocessing
import multiprocessing.context
import os
import select
import signal
import sys
import threading
import traceback
from collections import deque
from collections.abc import Callable

from ... import _interrupt as interrupt
from ... import _pickling
from ..._checks import callable_name
from ..._clock import now
from ..._core import Core
from ..._errors import BrokenProcessPool, SerializationError
from ..._options import TaskOptions
from ..._task import ENDED, Run, Task, task_name
from . import tree, wire
from .loop import Loop
from .procs import (
    EXITING,
    READY,
    STARTING,
    Proc,
    crash_error,
    exit_fd,
    forkserver_preloads,
    log_levels,
    signal_group,
    single_threaded,
)
from .worker import REVOKE_SIGNAL, worker_main

TYPE_CHECKING = False  # (typing is not imported at run time: docs/design.md §5.7)
if TYPE_CHECKING:
    from typing import Any

    from ..._map import Units

LOGGER = logging.getLogger("corral")

#: Consecutive worker starts that fail (initializer raises, process dies at start)
#: before the pool declares itself broken.
START_FAILURES_TO_BREAK = 3

#: Prefetch: a busy worker is handed up to WINDOW tasks ahead when no worker is idle or
#: can start, sized so that the queued tasks at one worker add up to about
#: PREFETCH_SECONDS of measured run time (so tiny tasks go in batches, slow ones not).
MAX_WINDOW = 64
PREFETCH_SECONDS = 0.002
#: A task waiting at a worker behind one that has run this long is taken back and
#: given to an idle worker (no head-of-line blocking, DESIGN.md §3.7).
REVOKE_AFTER = 0.01
#: Payload bytes queued at a busy worker at most, so a write never waits on its pipe.
PREFETCH_BYTES = 32 * 1024


#: Guards the lending counts of every Payload that has segments (few, each held briefly).
_LENDING = threading.Lock()


class Payload:
    """A task's pickled call, and the shared-memory segments of its big arguments.

    The segments are lent until the task's future is done *and* no worker holds a run
    of the task, which could still read them: a run cancelled while it waited behind
    another one at its worker is dropped there only once the worker reads the
    "revoke", and a worker may start it before then. Given back earlier, a segment
    could carry the next task's arguments by the time that worker reads it.
    """

    __slots__ = ("_done", "_given", "_pool", "_readers", "data", "fn_data", "segments")

    def __init__(
        self, fn_data: bytes, data: bytes, segments: wire.Segments, pool: wire.SegmentPool | None
    ) -> None:
        self.fn_data = fn_data
        self.data = data
        self.segments = segments
        self._pool = pool
        self._readers = 0  # runs of the task held by workers (the manager's count)
        self._done = False
        self._given = False

    def size(self) -> int:
        """Bytes the call takes on the pipe (its function and its arguments)."""
        return len(self.fn_data) + len(self.data)

    def call(self, run_id: int) -> wire.Call:
        """What a worker gets to run it (``wire.RunCalls``)."""
        return (run_id, self.fn_data, self.data, self.segments)

    def handed(self) -> None:
        """Manager thread: a run of the task went to a worker."""
        if self.segments:
            with _LENDING:
                self._readers += 1

    def left(self) -> None:
        """Manager thread: that run left its worker (ended, dropped, or the worker died)."""
        if self.segments:
            with _LENDING:
                self._readers -= 1
                free = self._free_locked()
            if free:
                self._give_back()

    def future_done(self, _: object) -> None:
        """Done callback of the task's future (any thread)."""
        with _LENDING:
            self._done = True
            free = self._free_locked()
        if free:
            self._give_back()

    def _free_locked(self) -> bool:
        """True, once, when the segments are to be given back now."""
        if self._given or not self._done or self._readers > 0:
            return False
        self._given = True
        return True

    def _give_back(self) -> None:
        assert self._pool is not None
        self._pool.give_back_all(self.segments)


def _payload_size(task: Task) -> int:
    """Bytes a task's pickled call takes on the pipe (its function and its arguments)."""
    payload: Payload = task.payload
    return payload.size()


class ProcessManager:
    """The process backend: the manager thread and its workers (see the module docs)."""

    inline_helper = None
    run_ended_locked = None

    def __init__(
        self,
        core: Core,
        ctx: multiprocessing.context.BaseContext,
        init: Any,  # executor.WorkerInit | None
        kill_grace: float,
        max_tasks_per_child: int | None,
        max_memory_per_child: int | None,
        forward_logging: bool,
    ) -> None:
        """Sets up the manager's state; ``start()`` starts its thread."""
        self.core = core
        self.ctx = ctx
        self._init = init
        self.kill_grace = kill_grace
        self.functions = _pickling.FunctionPickler()
        self._max_tasks_per_child = max_tasks_per_child
        self._max_memory = max_memory_per_child
        self._forward_logging = bool(forward_logging)
        self._parent_pid = os.getpid()
        self.segments = wire.SegmentPool() if wire.SHARED_MEMORY else None
        self._reader = wire.SegmentReader()  # manager thread only
        self._kept = wire.KeptMemory(self.segments, self._reader)  # big buffers' memory
        self._run_ids = itertools.count(1)
        # to settle: (run, result, error, seconds it ran)
        self._outcomes: list[tuple[Run, Any, BaseException | None, float]] = []
        # runs that reached the front of their worker: they begin once the outcomes read
        # with them are booked (task_timeout clock, hooks)
        self._heads: list[tuple[Proc, Run]] = []
        # manager-thread state
        self._procs: dict[int, Proc] = {}  # pid -> worker
        self._idle: list[Proc] = []
        self._start_failures = 0
        self._preloaded = False  # corral's modules are in the forkserver's preloads
        self._avg_seconds: float | None = None  # moving average of task run times
        self._replacements = 0  # workers that died under work, to replace at once
        self._live_workers = 0  # for statistics(), under the lock
        self._idle_workers = 0
        self._loop = Loop(core.lock)
        # (each handler takes its own kind of message: Any, as Callable is contravariant)
        self._handlers: dict[type[wire.Message], Callable[[Proc, Any], None]] = {
            wire.Ready: self._on_ready,
            wire.Log: self._on_log,
            wire.InitFailed: self._on_init_failed,
            wire.Started: self._on_started,
            wire.Skipped: self._on_skipped,
            wire.Escaped: self._on_escaped,
            wire.Ok: self._on_outcome,
            wire.Error: self._on_outcome,
        }
        self._thread = threading.Thread(
            target=self._manage, name=f"corral-process-manager-{id(self):x}", daemon=True
        )

    def fork_first(self) -> None:
        """If this process has only one thread now, forks every worker from it at once
        (see ``single_threaded``), before corral starts a thread of its own: a short
        program gets its workers in milliseconds instead of waiting for the forkserver
        to start. Workers started later (replacements) come from ``ctx``. On any error
        (Ctrl+C too) the workers forked so far are killed before it propagates."""
        if not single_threaded():
            return
        fork = multiprocessing.get_context("fork")
        try:
            for _ in range(self.core.max_workers):
                if not self._start_worker(fork):
                    break
        except BaseException:
            for proc in self._procs.values():
                signal_group(proc.pid, signal.SIGKILL)
                proc.process.join(5)
                proc.close_exit_fd()
            raise

    def start(self) -> None:
        """Starts the manager thread (the pool is attached to its core)."""
        self._thread.start()

    # ------------------------------------------------------------------ backend seam

    def work_available_locked(self, shutdown: bool = False) -> Callable[[], None] | None:
        return self._loop.wake_locked()

    def stop_running_locked(self, task: Task, run: Run, why: str) -> Callable[[], None] | None:
        # that run, even if the task has been handed out again meanwhile (a retry)
        self._loop.commands.append(("stop", run))
        return self._loop.wake_locked()

    def shutdown(self, wait: bool) -> None:
        self._loop.command("shutdown")
        if wait and threading.current_thread() is not self._thread:
            self._thread.join()

    def has_free_worker(self) -> bool:
        """True when fewer tasks wait or run than there are workers (map chunking)."""
        with self.core.lock:
            return self.core.pending + len(self.core.running) < self.core.max_workers

    def counts(self) -> tuple[int, int]:
        with self.core.lock:
            return self._live_workers, self._idle_workers

    def processes(self) -> dict[int, multiprocessing.process.BaseProcess]:
        """``{pid: Process}`` of the live workers (a snapshot; the manager thread owns
        the workers)."""
        return {pid: proc.process for pid, proc in self._procs.copy().items()}

    def broken_error(self) -> BaseException:
        return BrokenProcessPool(self.core.broken or "the process pool is broken")

    def prepare(self, task: Task) -> BaseException | None:
        """At submit: pickles the call (big buffers into shared memory), so that what
        won't pickle fails that future at once, naming the argument."""
        try:
            fn_data, data, segments = _pickling.dumps_call(
                self.functions, task.fn, task.args, task.kwargs, self.segments
            )
        except SerializationError as exc:
            return exc
        payload = task.payload = Payload(fn_data, data, segments, self.segments)
        if segments:
            task.fut.add_done_callback(payload.future_done)
        # the worker gets the pickled call: drop our references to the objects
        task.args = ()
        task.kwargs = {}
        return None

    def map_units(
        self, opts: TaskOptions, fn: Callable[..., Any], chunksize: int, eager: bool
    ) -> Units | None:
        if opts.task_timeout is not None and chunksize == 1:
            return None  # one task per item: per-item timeouts
        from .chunks import ChunkUnits  # (here: a program that never maps never needs it)

        return ChunkUnits(self, opts, fn, chunksize, eager)

    def force_stop(self, how: str, signum: int) -> None:
        """terminate_workers() and kill_workers(): running tasks fail, queued ones are
        cancelled, every worker gets ``signum`` now; returns once they are gone."""
        self.core.fail_running(
            lambda task: BrokenProcessPool(
                f"{how}() stopped the worker processes while this task ran "
                f"({callable_name(task.fn)}); it was not retried"
            )
        )
        self.core.shutdown(wait=False, cancel_futures=True)
        self.signal_workers(signum)
        if signum != signal.SIGKILL:
            self._loop.command("escalate")  # SIGKILL after kill_grace, for any that lingers
        with interrupt.stopping():
            self.shutdown(True)

    # ------------------------------------------------------------------ manager thread

    def _manage(self) -> None:
        try:
            while not self._step():
                pass
        except BaseException as exc:  # pragma: no cover - a bug in corral
            LOGGER.critical("corral: the process pool manager failed", exc_info=True)
            message = f"the pool's manager thread failed: {exc!r}"
            self._break(message, exc)
            for proc in self._procs.values():  # every future ends, running ones too
                for run in proc.inflight:
                    task = run.task
                    error = BrokenProcessPool(message)
                    if self.core.hooks is not None:
                        with self.core.lock:
                            self.core.task_ended(task, error, "failed")
                    task.fut._resolve(exception=error)
        finally:
            self._close()

    def _step(self) -> bool:
        """One turn of the manager loop; True when the pool has shut down."""
        if self._maintain():
            return True
        self._loop.wait(self._next_wake())
        self._retire_idle()
        self._kept.release_due()
        commands = self._loop.commands
        while commands:
            self._run_command(commands.popleft())
        return False

    def _next_wake(self) -> float | None:
        """When the loop must wake at the latest (None: only when something happens)."""
        when = self._loop.next_deadline()
        if self._kept.holds():  # to give back what goes unused (wire.KEEP_IDLE)
            look = self._kept.next_look
            when = look if when is None else min(when, look)
        if self.core.idle_timeout is not None and self._idle:
            expiry = min(p.idle_since for p in self._idle) + self.core.idle_timeout
            when = expiry if when is None else min(when, expiry)
        if self._idle:
            for proc in self._procs.values():
                if len(proc.inflight) - len(proc.revoked) > 1:
                    check = proc.head_started + REVOKE_AFTER
                    when = check if when is None else min(when, check)
        return when

    def _retire_idle(self) -> None:
        """Retires the workers idle longer than idle_timeout, down to min_workers."""
        if self.core.idle_timeout is None or not self._idle:
            return  # (every turn of the loop comes here)
        current = now()
        if not self.core.pending:
            # (with work queued, an idle worker is about to get it: idle_timeout=0 would
            # otherwise retire each new worker the moment it was ready)
            # workers already told to exit (EXITING, not gone yet) are not surplus
            live = sum(1 for p in self._procs.values() if p.state != EXITING)
            surplus = live - self.core.min_workers
            for proc in sorted(self._idle, key=lambda p: p.idle_since):
                if surplus <= 0 or current - proc.idle_since < self.core.idle_timeout:
                    break
                self._retire(proc, "idle")
                surplus -= 1

    def _run_command(self, command: tuple[Any, ...]) -> None:
        if command[0] == "escalate":  # terminate_workers(): they were sent SIGTERM
            for proc in list(self._procs.values()):
                self._kill(proc, "terminated")
            return
        if command[0] == "stop":
            run: Run = command[1]
            proc = run.worker
            if isinstance(proc, Proc) and run in proc.inflight:
                if proc.inflight[0] is run:
                    self._kill(proc)
                else:  # handed over but not started: the worker drops it, nothing dies
                    self._revoke(proc, [run])

    def _revoke(self, proc: Proc, runs: list[Run]) -> None:
        tids = [r.id for r in runs if r.id not in proc.revoked]
        if tids:
            proc.revoked.update(tids)
            self._send(proc, wire.Revoke(tids))
            try:  # the worker is busy: make it read the message now
                os.kill(proc.pid, REVOKE_SIGNAL)
            except ProcessLookupError:
                pass

    def _revoke_stuck(self) -> None:
        """Takes back work queued behind a long-running task when a worker is idle."""
        current = now()
        for proc in self._procs.values():
            if (
                len(proc.inflight) > 1
                and proc.state == READY
                and current - proc.head_started >= REVOKE_AFTER
            ):
                self._revoke(proc, list(proc.inflight)[1:])

    def _window(self) -> int:
        if self._avg_seconds is None:
            return 1
        return max(1, min(MAX_WINDOW, int(PREFETCH_SECONDS / max(self._avg_seconds, 1e-7))))

    def _maintain(self) -> bool:
        """Dispatches queued work, starts and retires workers; True when all is done."""
        sends: dict[Proc, list[Run]] = {}
        live = [p for p in self._procs.values() if p.state != EXITING]
        with self.core.lock:
            while self._idle:
                task = self.core.pop_locked()
                if task is None:
                    break
                self._hand_over_locked(self._idle.pop(), task, sends)
            if self.core.pending and len(live) >= self.core.max_workers:
                window = self._window()
                busy = sorted(
                    (p for p in live if p.state == READY and p.inflight),
                    key=lambda p: len(p.inflight),
                )
                for proc in busy:
                    if self._max_memory is not None:
                        break  # memory is checked between tasks: hand over one at a time
                    limit = window
                    if self._max_tasks_per_child is not None:
                        limit = min(limit, self._max_tasks_per_child - proc.tasks_run)
                    while len(proc.inflight) < limit:
                        task = self.core.pop_locked()
                        if task is None:
                            break
                        size = _payload_size(task)
                        if proc.queued_bytes + size > PREFETCH_BYTES:
                            # a busy worker does not read: a write that fills its socket
                            # would block this thread (and the worker's own result write)
                            self.core.unstart_locked(task)
                            break
                        self._hand_over_locked(proc, task, sends)
            broken = self.core.broken is not None
            # tasks put back after the pool broke (a crash, a revoke) have no worker to go to
            doomed = self.core.fail_queued_locked() if broken and self.core.pending else []
            pending = self.core.pending
            idle_out = (
                self.core.draining
                and not pending
                and not self.core.backoff
                and not self.core.running
            )
        for fut in doomed:
            fut._resolve(exception=self.broken_error())
        for proc, tasks in sends.items():
            self._send(proc, wire.RunCalls([r.task.payload.call(r.id) for r in tasks]))
        if self._idle and not pending:
            self._revoke_stuck()
        if not self.core.draining or pending:
            starting = sum(1 for p in live if p.state == STARTING)
            wanted = max(pending - starting, 0)
            if not self.core.draining:
                wanted = max(wanted, self.core.min_workers - len(live), self._replacements)
            self._replacements = 0
            for _ in range(min(wanted, self.core.max_workers - len(live))):
                if broken or not self._start_worker():
                    break
        if idle_out or broken:
            for proc in list(self._idle):
                self._retire(proc, "shutdown")
        self._update_counts()
        return (idle_out or broken) and not self._procs

    def _hand_over_locked(self, proc: Proc, task: Task, sends: dict[Proc, list[Run]]) -> None:
        run = task.run
        assert run is not None
        if not proc.inflight:
            proc.head_started = now()
            self.core.arm_timeout_locked(task)  # the clock runs while the task runs
            if self.core.hooks is not None:
                self.core.task_started(task, f"process {proc.pid}")
        else:
            proc.queued_bytes += _payload_size(task)
            self.core.hand_ahead_locked(run)
        run.worker = proc
        run.id = next(self._run_ids)
        proc.inflight.append(run)
        task.payload.handed()
        sends.setdefault(proc, []).append(run)

    def _update_counts(self) -> None:
        live = sum(1 for p in self._procs.values() if p.state != EXITING)
        with self.core.lock:
            self._live_workers = live
            self._idle_workers = len(self._idle)

    def _send(self, proc: Proc, message: wire.Message) -> None:
        if proc.conn is None:
            return
        try:
            wire.write_frame(proc.conn.fileno(), message.dumps())
        except OSError:
            pass  # the worker is gone: its exit sentinel reports it

    # ------------------------------------------------------------------ workers

    def _start_worker(self, ctx: multiprocessing.context.BaseContext | None = None) -> bool:
        ctx = ctx or self.ctx
        preloads: contextlib.AbstractContextManager[None] = contextlib.nullcontext()
        if not self._preloaded and ctx.get_start_method() == "forkserver":
            preloads = forkserver_preloads()
            self._preloaded = True
        parent_conn, child_conn = ctx.Pipe(duplex=True)
        process = ctx.Process(  # type: ignore[attr-defined]
            target=worker_main,
            args=(
                child_conn,
                self._parent_pid,
                self._init,
                self._max_memory is not None,
                log_levels() if self._forward_logging else None,
            ),
            name="corral-worker",
            daemon=False,
        )
        try:
            with preloads:
                process.start()
        except Exception as exc:
            parent_conn.close()
            child_conn.close()
            LOGGER.error("corral: could not start a worker process: %r", exc)
            self._start_failed(exc)
            return False
        finally:
            child_conn.close()
        proc = Proc(process, parent_conn, exit_fd(process))
        self._procs[proc.pid] = proc
        self._loop.register(parent_conn, lambda _: self._on_readable(proc))
        self._loop.register(proc.exit_fd, lambda _: self._on_exit(proc))
        return True

    def _start_failed(self, error: BaseException) -> None:
        self._start_failures += 1
        if self._start_failures >= START_FAILURES_TO_BREAK:
            self._break(
                f"worker processes cannot start: {self._start_failures} starts failed in a "
                f"row, the last with {type(error).__name__}: {error}. "
                + ("Fix the initializer, or " if self._init is not None else "Fix ")
                + "what the workers import; the error is this exception's __cause__",
                error,
            )

    def _on_readable(self, proc: Proc) -> None:
        conn = proc.conn
        if conn is None:
            return
        try:
            data = os.read(conn.fileno(), proc.reader.read_size())
        except OSError:
            data = b""
        if not data:
            self._drop_conn(proc)
            return
        for frame in proc.reader.feed(data):
            self._on_message(proc, wire.loads(frame))
        if self._outcomes or self._heads:
            self._settle()

    def _drain(self, proc: Proc) -> None:
        """Reads whatever a dead worker wrote before it died.

        Only what is there: EOF may never come, because another process can hold the
        worker's end of the pipe (a process its task started in a session of its own,
        or one forked elsewhere in this program while the worker was being started).
        """
        while proc.conn is not None:
            try:
                ready, _, _ = select.select([proc.conn.fileno()], [], [], 0)
            except (OSError, ValueError):
                return
            if not ready:
                return
            self._on_readable(proc)

    def _drop_conn(self, proc: Proc) -> None:
        if proc.conn is not None:
            self._loop.unregister(proc.conn)
            proc.conn.close()
            proc.conn = None

    def _on_message(self, proc: Proc, message: wire.Message) -> None:
        """One message from a worker (the table is in worker.py's docstring)."""
        self._handlers[type(message)](proc, message)

    def _on_ready(self, proc: Proc, message: wire.Ready) -> None:
        proc.state = READY
        self._start_failures = 0
        if self.core.hooks is not None:
            proc.ready = True
            self.core.worker_event("on_worker_start", f"process {proc.pid}", proc.pid)
        self._make_idle(proc)

    def _on_log(self, proc: Proc, message: wire.Log) -> None:
        self._log(proc, message.run_id, message.record)

    def _on_init_failed(self, proc: Proc, message: wire.InitFailed) -> None:
        proc.init_error = _pickling.load_exception(message.error)

    def _on_escaped(self, proc: Proc, message: wire.Escaped) -> None:
        """Processes its tasks started outside its group: they end when it ends."""
        proc.hold_escaped(tree.hold(message.pids))

    def _on_started(self, proc: Proc, message: wire.Started) -> None:
        """A run revoked too late: it had started (and runs, or ran)."""
        proc.revoked.discard(message.run_id)
        head = proc.inflight[0] if proc.inflight else None
        if head is None or head.id != message.run_id:
            return
        if head.task.is_current(head):
            self._heads.append((proc, head))  # it stays here, and runs: it begins
        else:
            self._kill(proc)  # it was cancelled, not just moved: stop it

    def _on_skipped(self, proc: Proc, message: wire.Skipped) -> None:
        """A run revoked in time, from anywhere behind the running one: put it back."""
        run = next(r for r in proc.inflight if r.id == message.run_id)
        proc.inflight.remove(run)
        run.task.payload.left()
        proc.revoked.discard(run.id)
        proc.queued_bytes -= _payload_size(run.task)
        with self.core.lock:
            if run.task.is_current(run):
                self.core.unstart_locked(run.task)
        if not proc.inflight and proc.state == READY:
            self._after_task(proc)

    def _on_outcome(self, proc: Proc, message: wire.Ok | wire.Error) -> None:
        """Ok or Error: the run at the head ended; the next one handed over starts."""
        run = proc.inflight.popleft()
        run.task.payload.left()
        proc.revoked.discard(run.id)
        head = proc.inflight[0] if proc.inflight else None
        if head is not None:
            proc.queued_bytes -= _payload_size(head.task)
        self._task_done(proc, run, message)
        if head is not None:
            proc.head_started = now()
            if head.id not in proc.revoked:
                self._heads.append((proc, head))  # it begins, after the previous one's end
        elif proc.state == READY:
            self._after_task(proc)

    def _log(self, proc: Proc, tid: int, fields: dict[str, Any]) -> None:
        """Hands a worker's log record to this process's handlers, naming worker and task.

        A handler or filter that raises must not take the manager thread down: its
        error is printed to stderr (not logged: the same handler could fail again).
        """
        try:
            record = logging.makeLogRecord(fields)
            run = next((r for r in proc.inflight if r.id == tid), None) if tid else None
            record.corral_worker = f"process {proc.pid}"
            record.corral_task = None if run is None else task_name(run.task)
            logger = logging.getLogger(record.name)
            if logger.isEnabledFor(record.levelno):
                logger.handle(record)
        except Exception:
            with contextlib.suppress(Exception):
                sys.stderr.write(
                    f"corral: a log record from worker {proc.pid} could not be handled:\n"
                    + traceback.format_exc()
                )

    def _task_done(self, proc: Proc, run: Run, message: wire.Ok | wire.Error) -> None:
        proc.tasks_run += 1
        proc.rss = message.rss
        seconds = message.seconds
        avg = self._avg_seconds
        self._avg_seconds = seconds if avg is None else 0.8 * avg + 0.2 * seconds
        live = run.task.is_current(run) and run.id == message.run_id
        result: Any = None
        exc: BaseException | None = None
        if isinstance(message, wire.Ok):
            segments = message.segments
            try:
                if live:
                    result = _pickling.loads(message.result, segments, self._reader)
            except BaseException as error:
                exc = SerializationError(
                    f"the result could not be unpickled in the parent: "
                    f"{type(error).__name__}: {error}"
                )
                exc.__cause__ = error
            finally:
                if segments:  # copied out (or dropped): the worker may reuse them
                    self._send(proc, wire.Free([fd for _, fd, _ in segments]))
            if not live:
                return
        else:
            if not live:
                return
            exc = _pickling.load_exception(message.error)
        self._outcomes.append((run, result, exc, seconds))

    def _settle(self) -> None:
        """Books the outcomes read in one go under one lock, then resolves their futures."""
        outcomes, self._outcomes = self._outcomes, []
        resolved = []
        with self.core.lock:
            for run, result, exc, seconds in outcomes:
                task = run.task
                if task.is_current(run):  # not cancelled or timed out meanwhile
                    proc = run.worker
                    if self.core.hooks is not None and not task.where:
                        # it started since the last read: now - its run, not before the last
                        began = max(now() - seconds, proc.last_end)
                        self.core.task_started(task, f"process {proc.pid}", began)
                    self.core.finished_locked(task, exc)
                    if self.core.hooks is not None:
                        proc.last_end = now()  # after the end event's own clock reading
                    if task.state is ENDED:
                        resolved.append((task.fut, result, exc))
        for fut, result, exc in resolved:
            fut._resolve(result, exc)
        if self._heads:
            heads, self._heads = self._heads, []
            hooks = self.core.hooks is not None
            with self.core.lock:
                for proc, run in heads:
                    task = run.task
                    if not task.is_current(run):
                        continue
                    self.core.run_began_locked(run)
                    if task.opts.task_timeout is not None and task.timer is None:
                        self.core.arm_timeout_locked(task)  # the clock runs as it runs
                    if hooks and not task.where:
                        self.core.task_started(task, f"process {proc.pid}")

    def _after_task(self, proc: Proc) -> None:
        if self._max_tasks_per_child is not None and proc.tasks_run >= self._max_tasks_per_child:
            self._retire(proc, "max_tasks_per_child")
        elif self._max_memory is not None and proc.rss > self._max_memory:
            LOGGER.info(
                "corral: replacing worker %d: %d bytes resident > max_memory_per_child=%d",
                proc.pid,
                proc.rss,
                self._max_memory,
            )
            self._retire(proc, "max_memory_per_child")
        else:
            self._make_idle(proc)

    def _make_idle(self, proc: Proc) -> None:
        proc.idle_since = now()
        self._idle.append(proc)

    def _retire(self, proc: Proc, reason: str) -> None:
        """Asks an idle worker to exit; kills it if it has not within 5 seconds."""
        if proc in self._idle:
            self._idle.remove(proc)
        if proc.state == EXITING:
            return
        proc.state = EXITING
        proc.reason = reason
        self._send(proc, wire.Exit())

        def overdue() -> None:
            if proc.pid in self._procs:
                self._kill(proc)

        self._loop.call_at(now() + 5.0, overdue)

    def _kill(self, proc: Proc, reason: str = "killed") -> None:
        """Terminates the worker's process group; KILL follows after kill_grace."""
        if proc.killed:
            return
        proc.killed = True
        proc.reason = proc.reason or reason
        proc.state = EXITING
        if proc in self._idle:
            self._idle.remove(proc)
        proc.hold_escaped(tree.escaped(proc.pid))  # while the worker still holds them
        signal_group(proc.pid, signal.SIGTERM)
        tree.signal_all(proc.escaped.values(), signal.SIGTERM)

        def escalate() -> None:
            signal_group(proc.pid, signal.SIGKILL)
            tree.signal_all(proc.escaped.values(), signal.SIGKILL)

        self._loop.call_at(now() + self.kill_grace, escalate)

    def signal_workers(self, signum: int) -> list[int]:
        pids = list(self._procs)  # one C-level copy: safe in a signal handler
        for pid in pids:
            signal_group(pid, signum)
        return pids

    def _on_exit(self, proc: Proc) -> None:
        self._drain(proc)  # outcomes it sent before it died still count
        self._drop_conn(proc)
        self._loop.unregister(proc.exit_fd)
        proc.close_exit_fd()
        # whatever ended it (a kill, a crash, retirement, shutdown), nothing of its process
        # group stays behind: the processes its tasks started end with it. Before it is
        # reaped, while its pid (the group's id) cannot have been given to another process
        signal_group(proc.pid, signal.SIGKILL)
        proc.kill_escaped()
        # the sentinel can fire a moment before the process is reapable: wait for that
        proc.process.join(5)
        exitcode = proc.process.exitcode
        try:
            proc.process.close()
        except ValueError:  # pragma: no cover - not reaped yet
            pass
        self._procs.pop(proc.pid, None)
        if proc in self._idle:
            self._idle.remove(proc)
        self._reader.forget(proc.pid)
        if proc.state == STARTING:
            error = proc.init_error or RuntimeError(
                f"worker process {proc.pid} exited with code {exitcode} while starting "
                "(its traceback, if any, is on stderr). Usual causes: the main script has no "
                '`if __name__ == "__main__":` guard (spawn and forkserver import it again in '
                "every worker), or an import fails in the worker"
            )
            self._start_failed(error)
        crashed_under_work = bool(proc.inflight)
        inflight, proc.inflight = list(proc.inflight), deque()
        for run in inflight:
            run.task.payload.left()
        try:
            self._fail_inflight(proc, exitcode, inflight)
        finally:
            if proc.ready:  # after its task's end, so that hooks see the crash first
                if crashed_under_work and proc.reason is None:
                    proc.reason = "crashed"
                self._announce_exit(proc, exitcode)
            elif proc.init_error is not None and self.core.hooks is not None:
                proc.reason = "init_failed"  # (it never started: no on_worker_start)
                self._announce_exit(proc, exitcode)

    def _fail_inflight(self, proc: Proc, exitcode: int | None, inflight: list[Run]) -> None:
        """The tasks a dead worker held: the one it ran fails (or retries), the rest go back."""
        if not inflight:
            return
        self._replacements += 1  # it died under work: keep the pool as warm as it was
        head, rest = inflight[0], inflight[1:]
        task = head.task
        with self.core.lock:
            for run in rest:
                if run.task.is_current(run):
                    self.core.unstart_locked(run.task)
            current = task.is_current(head)
            resolve = False
            if current and not proc.killed:
                exc = crash_error(proc.pid, exitcode, task)
                self.core.counts["crashed"] += 1
                self.core.finished_locked(task, exc)
                resolve = task.state is ENDED
            elif current:
                self.core.unstart_locked(task)  # killed for another reason: run it elsewhere
        if resolve:
            task.fut._resolve(exception=exc)

    def _announce_exit(self, proc: Proc, exitcode: int | None) -> None:
        proc.ready = False
        reason = proc.reason
        if reason is None:
            reason = "exited" if exitcode == 0 else "crashed"
        self.core.worker_event(
            "on_worker_exit", f"process {proc.pid}", proc.pid, reason=reason, exitcode=exitcode
        )

    def _break(self, message: str, cause: BaseException | None) -> None:
        with self.core.lock:
            if self.core.broken is not None:
                return
            futures = self.core.break_locked(message)
        for fut in futures:
            error = BrokenProcessPool(message)
            error.__cause__ = cause
            fut._resolve(exception=error)

    def _close(self) -> None:
        for proc in list(self._procs.values()):
            self._kill(proc, "shutdown")
            proc.process.join(5)
            signal_group(proc.pid, signal.SIGKILL)
            proc.kill_escaped()
            proc.process.join(1)
            if proc.conn is not None:
                proc.conn.close()
            proc.close_exit_fd()
            if proc.ready:
                self._announce_exit(proc, proc.process.exitcode)
        self._procs.clear()
        self._idle.clear()
        # no worker will start again: let go of the initargs (a multiprocessing Queue
        # or Lock there is the user's; the pool's state may outlive this thread)
        self._init = None
        self._update_counts()
        self._reader.close()
        if self.segments is not None:
            self.segments.close()
        self._loop.close()
        if self.core.hooks is not None:
            self.core.hooks.finish()  # the manager raised its last event
