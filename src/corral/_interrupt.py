"""Ctrl+C and SIGTERM: the one place that decides what they do to corral's pools.

The policy (docs/design.md, "Ctrl+C, SIGTERM and interpreter exit"):

* **First Ctrl+C**: every live pool cancels its pending work and stops its running work
  (process workers get SIGTERM, then SIGKILL after ``kill_grace``; thread tasks see
  ``corral.cancelled()``), and KeyboardInterrupt is raised in the main thread as usual.
  The pools stay usable: a program (or a notebook) that catches KeyboardInterrupt can
  go on submitting.
* **Second Ctrl+C while the first is still being handled** (within ``FORCE_WINDOW``
  seconds of it, or while a shutdown or interpreter exit is waiting for workers):
  every worker process group is SIGKILLed at once, interpreter exit stops waiting, and
  KeyboardInterrupt is raised again.
* **SIGTERM**: the parent keeps SIGTERM's usual meaning (it ends, killed by SIGTERM) but
  first sends SIGTERM to every worker's process group, waits up to the pools'
  ``kill_grace`` for them, and SIGKILLs what is left: no worker and no task's child
  outlives it.
* Workers never see the terminal's Ctrl+C: they run in process groups of their own and
  ignore SIGINT, so they print nothing for it.

Why this design:

* The signal handler does no work that takes a lock. Python runs handlers in the main
  thread between two bytecodes, possibly while that thread holds an executor's lock (in
  ``submit``, say); cancelling from the handler could deadlock on it. The handler writes
  one byte to a pipe; a daemon thread ("corral-interrupt") wakes on it and does the
  cancelling, while KeyboardInterrupt unwinds the main thread. Only the force path
  signals processes from the handler, with plain system calls.
* The handlers are installed when a pool is made in the main thread, and only over the
  default ones (``signal.default_int_handler`` for SIGINT, ``SIG_DFL`` for SIGTERM); a
  handler the program (or asyncio.run) set is left alone. When the last pool is shut
  down, the default handlers come back and the thread ends, so a program with no pool
  has neither; asyncio.run started after that installs its own handler as usual.

Rejected:

* Relying on KeyboardInterrupt reaching a corral call (what the stdlib does). It misses
  pools the main thread is not waiting on, pools used from other threads, and pools left
  open, whose running work interpreter exit would wait for.
* Letting workers receive SIGINT: every worker prints a traceback, and a task that
  catches KeyboardInterrupt keeps running.
* Turning SIGTERM into an exception in the parent: SIGTERM is how supervisors stop
  programs, and a program that wants to unwind on it installs its own handler (corral
  then leaves SIGTERM alone; interpreter exit still stops running work when the
  program ends through an exception).
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable
from types import FrameType

TYPE_CHECKING = False  # (typing is not imported at run time: docs/design.md §5.7)
if TYPE_CHECKING:
    from typing import Any, Protocol
else:
    Protocol = object  # _Pool is for type checkers: nothing checks it at run time

#: A second Ctrl+C this soon after the first forces, whatever is going on.
FORCE_WINDOW = 2.0


class _Pool(Protocol):
    """What this module needs of a pool (its ``Core``)."""

    @property
    def closed(self) -> bool: ...

    @property
    def kill_grace(self) -> float: ...

    def interrupt(self) -> None: ...

    def signal_workers(self, signum: int) -> list[int]: ...


if TYPE_CHECKING:
    _Handler = Callable[[int, FrameType | None], Any] | int | signal.Handlers | None


class _State:
    def __init__(self) -> None:
        self.pools: Callable[[], Iterable[_Pool]] = tuple
        self.installed: dict[int, _Handler] = {}  # signal -> the handler ours replaced
        self.thread: threading.Thread | None = None
        self.wake_w = -1
        # starts and stops of the thread and its pipe, and forks (never in a handler)
        self.lock = threading.Lock()
        # One episode: from a Ctrl+C until FORCE_WINDOW has passed with no shutdown
        # waiting for workers. A press inside an episode forces.
        self.episode = False
        self.last_press = 0.0
        self.forced = False  # a second press came: nothing waits for workers any more
        self.stopping = 0  # shutdowns (and interpreter exit) waiting for workers right now


_state = _State()


def _in_episode() -> bool:
    """True while the last Ctrl+C is still being handled; ends the episode otherwise."""
    state = _state
    if state.episode and (state.stopping > 0 or time.monotonic() - state.last_press < FORCE_WINDOW):
        return True
    state.episode = state.forced = False
    return False


def forced() -> bool:
    """True while a second Ctrl+C forces the stop: shutdowns stop waiting for workers."""
    return _state.forced and _in_episode()


def interrupted() -> bool:
    """True while a Ctrl+C is being handled (interpreter exit then stops running work)."""
    return _in_episode()


class stopping:
    """Marks a wait for workers (a shutdown); a Ctrl+C episode lasts as long as it."""

    def __enter__(self) -> None:
        _in_episode()  # an episode that has run out ends before this wait joins it
        _state.stopping += 1

    def __exit__(self, *exc: object) -> None:
        _state.stopping = max(0, _state.stopping - 1)


_OURS: dict[int, Callable[[int, FrameType | None], None]] = {}


def install(pools: Callable[[], Iterable[_Pool]]) -> None:
    """Takes over SIGINT and SIGTERM, each where it has its default handler.

    Called when a pool is made; does nothing outside the main thread (Python lets only
    the main thread set handlers). ``pools`` lists the live pools.
    """
    if threading.current_thread() is not threading.main_thread():
        return
    _state.pools = pools
    defaults: dict[int, _Handler] = {
        signal.SIGINT: signal.default_int_handler,
        signal.SIGTERM: signal.SIG_DFL,
    }
    for signum, default in defaults.items():
        ours = signum in _state.installed
        if not ours and signal.getsignal(signum) != default:
            continue  # the program's (or asyncio's): left alone
        if signum == signal.SIGINT:  # (again, after a release off the main thread)
            _start_thread()
        if not ours:
            _state.installed[signum] = signal.signal(signum, _OURS[signum])


def _start_thread() -> None:
    with _state.lock:
        if _state.thread is None:
            wake_r, _state.wake_w = os.pipe()
            os.set_blocking(_state.wake_w, False)
            _state.thread = threading.Thread(
                target=_serve, args=(wake_r,), name="corral-interrupt", daemon=True
            )
            _state.thread.start()


def release() -> None:
    """Gives SIGINT and SIGTERM back once no pool is left that is not shut down.

    Called at the end of every shutdown (a dropped pool's included). The interrupt
    thread ends from any thread. The handlers can be given back only by the main
    thread, and only where ours is still the one installed (each signal on its own);
    called elsewhere, they stay, dormant: with no pool open they do what the defaults
    do (KeyboardInterrupt; SIGTERM ends the process), and the main thread's next
    release gives them back.
    """
    if not _state.installed or any(not pool.closed for pool in _state.pools()):
        return
    if threading.current_thread() is not threading.main_thread():
        # ask the thread to end by itself (it checks again that no pool is open): no
        # fd of its is closed, nor thread joined, from whatever thread this is
        with _state.lock:
            if _state.wake_w >= 0:
                with contextlib.suppress(OSError):
                    os.write(_state.wake_w, b"q")
        return
    with _state.lock:
        thread, _state.thread = _state.thread, None
        if thread is not None:
            wake_w, _state.wake_w = _state.wake_w, -1  # (-1 first: a handler may write now)
            os.close(wake_w)  # EOF: the thread closes its end and ends
    if thread is not None and thread is not threading.current_thread():
        thread.join(5)
    for signum, previous in list(_state.installed.items()):
        if signal.getsignal(signum) is _OURS[signum]:
            signal.signal(signum, previous)
        del _state.installed[signum]  # replaced by somebody: theirs now, not ours
    _state.episode = _state.forced = False
    _state.stopping = 0


def _serve(wake_r: int) -> None:
    """The interrupt thread: one pass over the pools for each Ctrl+C ("i"); on "q" (a
    release off the main thread) it ends if no pool is open."""
    try:
        while data := os.read(wake_r, 64):
            if b"q" in data and _quit_if_idle():
                return
            if b"i" not in data:
                continue
            for pool in list(_state.pools()):
                try:
                    pool.interrupt()
                except Exception:  # pragma: no cover - a bug in corral
                    import logging

                    logging.getLogger("corral").exception("stopping a pool on Ctrl+C failed")
    finally:
        os.close(wake_r)


def _quit_if_idle() -> bool:
    """In the interrupt thread: gives up its place (and the pipe) if no pool is open."""
    with _state.lock:
        if _state.thread is not threading.current_thread() or any(
            not pool.closed for pool in _state.pools()
        ):
            return False
        _state.thread = None
        wake_w, _state.wake_w = _state.wake_w, -1  # (-1 first: a handler may write now)
        os.close(wake_w)
        return True


def _on_sigint(signum: int, frame: FrameType | None) -> None:
    state = _state
    force = _in_episode()
    state.episode = True
    state.last_press = time.monotonic()
    if force:
        state.forced = True
        for pool in list(state.pools()):
            pool.signal_workers(signal.SIGKILL)
    elif state.wake_w >= 0:
        try:
            os.write(state.wake_w, b"i")
        except OSError:  # full: the thread has presses to read; closed: just released
            pass
    signal.default_int_handler(signum, frame)


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # nothing cuts this short now
    try:
        pools = list(_state.pools())
        pids = [pid for pool in pools for pid in pool.signal_workers(signal.SIGTERM)]
        grace = max((pool.kill_grace for pool in pools), default=0.0)
        _wait_for_exit(pids, grace)
        for pool in pools:  # what is left, and replacements started meanwhile
            pool.signal_workers(signal.SIGKILL)
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(5)  # pragma: no cover - SIGTERM ends the process before this returns
    sys.exit(128 + signal.SIGTERM)  # pragma: no cover


_OURS.update({signal.SIGINT: _on_sigint, signal.SIGTERM: _on_sigterm})


def _wait_for_exit(pids: list[int], timeout: float) -> None:
    """Waits until those processes have ended (zombies count), or ``timeout``."""
    fds = []
    for pid in pids:
        try:
            fds.append(os.pidfd_open(pid))
        except OSError:
            pass  # gone already (or no pidfd here: nothing to wait with)
    try:
        poller = select.poll()
        for fd in fds:
            poller.register(fd, select.POLLIN)
        deadline = time.monotonic() + timeout
        left = len(fds)
        while left > 0:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            for fd, _ in poller.poll(remaining * 1000):
                poller.unregister(fd)
                left -= 1
    finally:
        for fd in fds:
            os.close(fd)


def _after_fork_in_child() -> None:
    """A forked child has no pools of ours: give it back the handlers we replaced."""
    for signum, previous in _state.installed.items():
        try:
            signal.signal(signum, previous)
        except (ValueError, OSError):  # pragma: no cover - not the main thread
            pass
    if _state.wake_w >= 0:
        with contextlib.suppress(OSError):
            os.close(_state.wake_w)
    _state.__init__()  # type: ignore[misc]


def _before_fork() -> None:
    # No fork while the pipe is being opened or closed: a child must see ``wake_w`` as
    # an fd that is open, or as -1. (It once saw a number already closed here and
    # reused for another pipe, and closed that: a fork-started worker closed its own
    # exit sentinel, and the parent then waited for it forever.)
    _state.lock.acquire()


def _after_fork_in_parent() -> None:
    _state.lock.release()


os.register_at_fork(
    before=_before_fork,
    after_in_parent=_after_fork_in_parent,
    after_in_child=_after_fork_in_child,  # (makes a new lock: the held one is left)
)
