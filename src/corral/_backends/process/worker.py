"""The main loop of a worker process (runs in the child, never in the parent).

A worker talks only to its parent, over its own duplex pipe, in length-prefixed frames
(``wire.write_frame``) of the messages defined in ``wire.py``::

    parent -> worker   RunCalls([(run_id, function, call, segments), ...])
                       Revoke([run_id, ...])        drop these if not started yet
                       Free([fd, ...])              result segments read: reuse them
                       Exit()                       finish and exit
    worker -> parent   Ready(pid)                   initializer done, waiting for work
                       InitFailed(exception)        the initializer raised; exiting
                       Ok(run_id, result, segments, seconds, rss)
                       Error(run_id, exception, seconds, rss)
                       Skipped(run_id)              revoked before it started
                       Started(run_id)              revoked too late: it runs (ran)
                       Log(run_id, record)          a logging record (a dict), any thread

Tasks handed over run one after the other in the order received, and each outcome is
sent as soon as the task ends, so the parent always knows which task a worker runs:
the first one handed over whose outcome has not arrived.

A worker leads its own process group (so a kill reaches whatever it started), ignores
SIGINT (the parent decides what Ctrl+C does), and dies with its parent: Linux
PR_SET_PDEATHSIG, a watchdog thread that checks the parent every 0.2 s, and EOF on the
pipe.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import pickle
import select
import signal
import sys
import threading
from collections import deque
from multiprocessing.connection import Connection
from time import monotonic, perf_counter

from ... import _pickling
from ..._context import CancelToken, set_current_token
from ..._errors import SerializationError
from . import tree, wire

TYPE_CHECKING = False  # (typing is not imported: worker processes load this module)
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import Any

_PR_SET_PDEATHSIG = 1
#: Sent by the parent after a "revoke" so that a busy worker reads it at once.
REVOKE_SIGNAL = signal.SIGUSR1


def _set_death_signal() -> None:
    """Linux's prctl(PR_SET_PDEATHSIG, SIGKILL): the kernel kills this process when the
    thread that forked it dies, even while a task holds the GIL (the watchdog cannot
    run then). Nothing where there is none (the watchdog still works)."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(Exception):
        _prctl()(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def _prctl() -> Any:
    """libc's prctl, through _ctypes, the extension module under ctypes: 0.4 ms to load,
    against 2-3 ms for the ctypes package, whose classes a worker has no use for, in
    every new worker while it competes with the pool process for the CPUs. The names
    used are those ctypes itself imports; if they ever change, ctypes is used."""
    try:
        import _ctypes

        class Libc:  # what CFuncPtr reads of a library: its dlopen() handle
            _handle = _ctypes.dlopen(None, _ctypes.RTLD_LOCAL)  # type: ignore[arg-type]

        class Function(_ctypes.CFuncPtr):
            _flags_ = _ctypes.FUNCFLAG_CDECL | _ctypes.FUNCFLAG_USE_ERRNO
            _restype_ = None  # (int arguments go as C ints)

        return Function(("prctl", Libc()))  # type: ignore[arg-type]
    except Exception:  # pragma: no cover - _ctypes's names changed
        import ctypes

        return ctypes.CDLL(None, use_errno=True).prctl


def _watch_parent(parent_pid: int) -> None:
    """Starts the watchdog thread: the worker exits within 0.2 s of its parent's death."""

    def watchdog() -> None:
        event = threading.Event()
        while not event.wait(0.2):
            try:
                os.kill(parent_pid, 0)
            except ProcessLookupError:
                os._exit(70)
            except PermissionError:  # pragma: no cover - pid reused by another user
                os._exit(70)

    threading.Thread(target=watchdog, name="corral-watchdog", daemon=True).start()


def _release_forkserver() -> None:
    """Closes this worker's copy of the pool process's "alive" pipe to the forkserver,
    if the forkserver started it.

    The forkserver exits when every copy is closed, and multiprocessing gives one to
    each process it starts, so while a worker lives the forkserver outlives a killed
    pool process. The worker's death signal fires when its parent, the forkserver,
    dies; without its copy, that is when the pool's process dies, even while a task
    holds the GIL and the watchdog cannot run. Nothing in the worker uses the copy: a
    forkserver pool made by a task starts a forkserver of its own (the worker has no
    ``_forkserver_pid``)."""
    module = sys.modules.get("multiprocessing.forkserver")
    if module is None:
        return
    server = module._forkserver
    fd = getattr(server, "_forkserver_alive_fd", None)
    if fd is not None and getattr(server, "_forkserver_pid", 0) is None:
        with contextlib.suppress(OSError):
            os.close(fd)
        server._forkserver_alive_fd = None


def _name_process() -> None:
    """Names the process "corral-worker" (ps, top, psutil, ``python -m corral top``):
    Linux's /proc/self/comm is the main thread's name, as PR_SET_NAME would set it."""
    with contextlib.suppress(OSError), open("/proc/self/comm", "w") as f:
        f.write("corral-worker")


def _flush_std() -> None:
    """After each task (a plain try: this runs once per task)."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # a closed or replaced stream
            pass


class _LogForwarder(logging.Handler):
    """Sends the worker's log records to the parent, which hands them to its handlers."""

    def __init__(self, inbox: _Inbox) -> None:
        super().__init__()
        self._inbox = inbox
        self._pid = os.getpid()

    def emit(self, record: logging.LogRecord) -> None:
        if os.getpid() != self._pid:  # a process a task forked: not ours to write to
            sys.stderr.write(_FORMATTER.format(record) + "\n")
            return
        try:
            fields = dict(record.__dict__)
            fields["msg"] = record.getMessage()
            fields["args"] = None
            if record.exc_info:
                fields["exc_text"] = record.exc_text or _FORMATTER.formatException(record.exc_info)
            fields["exc_info"] = None
            try:
                data = wire.Log(self._inbox.task_id, fields).dumps()
            except Exception:  # an extra= value that does not pickle: send its repr
                fields = {k: v if _plain(v) else repr(v) for k, v in fields.items()}
                data = wire.Log(self._inbox.task_id, fields).dumps()
            self._inbox.send_pickled(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the parent is gone
        except Exception:
            self.handleError(record)


_FORMATTER = logging.Formatter()


def _plain(value: object) -> bool:
    return value is None or isinstance(value, (str, int, float, bool, tuple, list, dict))


def _forward_logging(inbox: _Inbox, levels: dict[str, int]) -> None:
    """Routes every record of this process to the parent.

    The handlers already here are removed, on every logger: they are the parent's (fork
    copies them) or the main module's (spawn and forkserver import it again), and the
    parent's handlers write each record already. Every logger propagates to the root
    here, so a parent's logger with ``propagate = False`` and a handler of its own
    still gets its records (in the parent). An initializer runs after this, so
    handlers it adds stay.
    """
    loggers = [logging.getLogger()]
    loggers += [
        lg
        for lg in list(logging.Logger.manager.loggerDict.values())
        if isinstance(lg, logging.Logger)
    ]
    for logger in loggers:
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
        logger.propagate = True  # to the forwarder; the parent applies its own propagation
    root = loggers[0]
    root.addHandler(_LogForwarder(inbox))
    # the parent's levels, logger by logger: records the parent would drop are not sent
    for name, level in levels.items():
        logging.getLogger(name or None).setLevel(level)


def _rss(reader: wire.SegmentReader) -> int:
    """Resident memory (max_memory_per_child), less the memory kept to receive the next
    arguments in (``wire.Landing``): a cache of this worker's, not what its tasks hold."""
    try:
        with open("/proc/self/statm", "rb") as f:
            rss = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):  # pragma: no cover - not Linux
        import resource

        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return max(0, rss - reader.idle_bytes())


def _wait_releasing(inbox: _Inbox, kept: wire.KeptMemory) -> None:
    """Waits for the next message; meanwhile, what goes unused of the memory kept for
    big buffers is given back (the worker looks between tasks too)."""
    while kept.holds():
        if inbox.readable(max(0.0, kept.next_look - monotonic())):
            return
        kept.release_due()


def worker_main(
    conn: Connection,
    parent_pid: int,
    init: tuple[bytes, tuple[tuple[str, Any], ...]] | None,
    report_memory: bool,
    log_levels: dict[str, int] | None = None,
) -> None:
    """Entry point of a worker process.

    ``log_levels``: forward logging records to the parent, with the parent's logger
    levels ({logger name: level}, "" for the root); None: leave logging alone.
    """
    try:
        os.setpgid(0, 0)
    except OSError:  # pragma: no cover - already a group leader (setsid'd)
        pass
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _watch_parent(parent_pid)
    _release_forkserver()
    _name_process()
    for stream in (sys.stdout, sys.stderr):  # whole lines reach the terminal, even if killed
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            with contextlib.suppress(Exception):
                reconfigure(line_buffering=True)
    pool = wire.SegmentPool() if wire.SHARED_MEMORY else None
    reader = wire.SegmentReader()
    kept = wire.KeptMemory(pool, reader)
    inbox = _Inbox(conn.fileno(), pool)
    signal.signal(REVOKE_SIGNAL, inbox.on_signal)
    send = inbox.send
    if log_levels is not None:
        _forward_logging(inbox, log_levels)

    try:
        if init is not None:
            _set_death_signal()  # before any user code
            try:
                fn_data, packed = init
                initializer = pickle.loads(fn_data)
                initargs = [pickle.loads(v) if how == "pickled" else v for how, v in packed]
                initializer(*initargs)
            except BaseException as exc:
                # the stdlib's record, on its logger, as its workers log it
                logging.getLogger("concurrent.futures").critical(
                    "Exception in initializer:", exc_info=True
                )
                send(wire.InitFailed(_pickling.dump_exception(exc)))
                conn.close()
                tree.kill_escaped(os.getpid())
                # a normal exit (not os._exit): multiprocessing's exit handlers then
                # flush what the initializer queued (a QueueHandler's records), as the
                # stdlib's workers do
                sys.exit(1)
        send(wire.Ready(os.getpid()))
        if init is None:
            # after Ready, not before: a forked worker then loads _ctypes while the
            # parent hands it its first task, not before the parent knows it is there
            _set_death_signal()

        functions: dict[bytes, Any] = {}
        queue = inbox.queue
        me = os.getpid()
        reported: set[int] = set()  # escaped processes the parent was told of
        while True:
            if not queue:
                _wait_releasing(inbox, kept)
            inbox.receive(block=not queue, unless=inbox.has_work)
            if inbox.exiting:
                break
            if not queue:
                continue
            task_id, fn_data, call, segments = queue.popleft()
            inbox.task_id = task_id
            begin = perf_counter()
            _run_one(task_id, fn_data, call, segments, functions, pool, reader, send, report_memory)
            inbox.task_id = 0
            if perf_counter() - begin >= tree.CHECK_AFTER and tree.SUPPORTED:
                # what the task started outside this group ends with this worker even
                # if it crashes: the parent holds them (a no-op task is not checked)
                found = tree.escaped_pids(me)
                new = found - reported
                reported = found
                if new:
                    send(wire.Escaped(sorted(new)))
            _flush_std()
            # a result went through shared memory: nothing runs until the parent has
            # copied it out and said "free", so a later task that kills this process
            # (os._exit, a segfault) cannot take a finished task's result with it
            while pool is not None and pool.lending() and not inbox.exiting:
                inbox.receive(block=True, unless=inbox.lent_back)
            kept.release_due()
    except (BrokenPipeError, ConnectionResetError):
        tree.kill_escaped(os.getpid())
        os._exit(0)  # the parent is gone (SIGTERM, SIGKILL): nobody to report to
    conn.close()
    # retired or shut down: what the tasks started ends with this worker (the parent
    # kills the process group once this process has gone; these left it)
    tree.kill_escaped(os.getpid())


class _Inbox:
    """The worker's end of the pipe: control messages in, outcomes out.

    Messages are read between tasks, and also *during* a task when the parent sends
    REVOKE_SIGNAL after a "revoke": the handler runs in the main thread between two
    bytecodes of the task (or interrupts a sleep, which then resumes), drops the
    revoked tasks from the local queue and answers "skipped" at once, so that work
    queued behind a long task goes to an idle worker. A signal that arrives while
    the loop itself reads or writes the pipe is handled right after.
    """

    def __init__(self, fd: int, pool: wire.SegmentPool | None) -> None:
        self.fd = fd
        self.pool = pool
        self.queue: deque[wire.Call] = deque()
        self.task_id = 0  # the task running now (0: none), for log records
        self.write_lock = threading.Lock()  # frames from other threads (logging) too
        self.exiting = False
        self._busy = False
        self._deferred = False
        self._poller = select.poll()
        self._poller.register(fd, select.POLLIN)

    def send(self, message: wire.Message) -> None:
        """Writes a frame; from the main thread (other threads: ``send_pickled``)."""
        self.send_pickled(message.dumps())

    def send_pickled(self, data: bytes) -> None:
        """Writes a pickled message as a frame, from any thread."""
        if threading.current_thread() is not threading.main_thread():
            with self.write_lock:  # (the main thread holds it only while _busy)
                wire.write_frame(self.fd, data)
            return
        self._busy = True
        try:
            with self.write_lock:
                wire.write_frame(self.fd, data)
        finally:
            self._busy = False
        if self._deferred:
            self.receive(block=False)

    def readable(self, timeout: float) -> bool:
        """Waits up to ``timeout`` seconds for a message; True if one is there.

        The REVOKE_SIGNAL handler reads nothing meanwhile (it would take the messages
        this waits for, and leave it waiting on an empty pipe): the parent writes the
        "revoke" before it signals, so the wait ends and ``receive`` reads it."""
        self._busy = True
        try:
            # (a handler that ran just before _busy was set may have read the messages)
            return self.has_work() or bool(self._poller.poll(timeout * 1000))
        finally:
            self._busy = False

    def has_work(self) -> bool:
        """True when the main loop has something to do: a task queued, or exit."""
        return bool(self.queue) or self.exiting

    def lent_back(self) -> bool:
        """True when no result segment waits for the parent's "free" (or on exit)."""
        return self.pool is None or not self.pool.lending() or self.exiting

    def receive(self, block: bool, unless: Callable[[], bool] | None = None) -> None:
        """Reads the messages waiting (or, with ``block``, at least one).

        ``unless``: what the caller waits for; no blocking if it holds once the signal
        handler defers to this. The handler may have read the messages between the
        caller's own check and this, leaving an empty pipe to wait on."""
        self._busy = True
        self._deferred = False
        if block and unless is not None and unless():
            block = False
        try:
            while block or self._poller.poll(0):
                block = False
                self._handle(wire.loads(wire.read_frame(self.fd)))
        except (EOFError, OSError):
            self.exiting = True  # the parent closed the pipe or is gone
        finally:
            self._busy = False
        if self._deferred:
            self.receive(block=False)

    def _handle(self, message: wire.Message) -> None:
        if isinstance(message, wire.RunCalls):
            self.queue.extend(message.calls)
        elif isinstance(message, wire.Revoke):
            ids = set(message.run_ids)
            kept = [item for item in self.queue if item[0] not in ids]
            skipped = {item[0] for item in self.queue if item[0] in ids}
            self.queue.clear()
            self.queue.extend(kept)
            for run_id in message.run_ids:  # Started: its outcome follows (or came already)
                reply = wire.Skipped(run_id) if run_id in skipped else wire.Started(run_id)
                with self.write_lock:  # (a signal handler never runs while main holds it)
                    wire.write_frame(self.fd, reply.dumps())
        elif isinstance(message, wire.Free):  # the parent copied these result segments out
            if self.pool is not None:
                for fd in message.fds:
                    self.pool.give_back(fd)
        elif isinstance(message, wire.Exit):
            self.exiting = True

    def on_signal(self, signum: int, frame: Any) -> None:
        if self._busy:
            self._deferred = True
        else:
            self.receive(block=False)


def _load_function(fn_data: bytes, functions: dict[bytes, Any]) -> Any:
    fn = functions.get(fn_data)
    if fn is None:
        fn = pickle.loads(fn_data)
        if len(functions) >= 256:
            functions.clear()
        functions[fn_data] = fn
    return fn


def _run_one(
    task_id: int,
    fn_data: bytes,
    call: bytes,
    segments: wire.Segments,
    functions: dict[bytes, Any],
    pool: wire.SegmentPool | None,
    reader: wire.SegmentReader,
    send: Any,
    report_memory: bool,
) -> None:
    try:
        fn = _load_function(fn_data, functions)
        args, kwargs = _pickling.loads(call, segments, reader)
    except BaseException as exc:
        error = SerializationError(
            f"the call could not be unpickled in the worker process: "
            f"{type(exc).__name__}: {exc}; is the function importable there?"
        )
        error.__cause__ = exc
        send(wire.Error(task_id, _pickling.dump_exception(error), 0.0, 0))
        return
    token = CancelToken()
    set_current_token(token)
    begin = perf_counter()
    try:
        result = fn(*args, **kwargs)
    except BaseException as exc:
        elapsed = perf_counter() - begin
        del fn, args, kwargs
        set_current_token(None)
        rss = _rss(reader) if report_memory else 0
        send(wire.Error(task_id, _pickling.dump_exception(exc), elapsed, rss))
        return
    elapsed = perf_counter() - begin
    set_current_token(None)
    del fn, args, kwargs
    try:
        data, out_segments = _pickling.dumps(result, pool)
    except BaseException as exc:
        error = SerializationError(
            f"the result ({type(result).__name__}) could not be pickled to send it back: {exc}"
        )
        send(wire.Error(task_id, _pickling.dump_exception(error), elapsed, 0))
        return
    del result
    rss = _rss(reader) if report_memory else 0
    send(wire.Ok(task_id, data, out_segments, elapsed, rss))


# ------------------------------------------------------------------ map chunks

_functions: dict[bytes, Any] = {}


def run_chunk(
    fn_data: bytes, items: Sequence[Any], star: bool
) -> tuple[float, list[Any], dict[int, bytes]]:
    """Runs in a worker: calls the function on each item of a map chunk (``chunks.py``),
    keeping each outcome (``_map.ChunkResult``).

    ``star``: the items are argument tuples (map over several iterables).
    """
    fn = _functions.get(fn_data)
    if fn is None:
        if len(_functions) >= 64:
            _functions.clear()
        fn = _functions[fn_data] = pickle.loads(fn_data)
    values: list[Any] = []
    errors: dict[int, bytes] = {}
    calls = itertools.starmap(fn, items) if star else map(fn, items)
    begin = perf_counter()
    while True:
        try:  # extend() runs the calls in C and keeps what it got before a failure
            values.extend(calls)
            break
        except BaseException as exc:
            errors[len(values)] = _pickling.dump_exception(exc)
            values.append(None)
    return perf_counter() - begin, values, errors
