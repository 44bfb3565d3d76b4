"""What crosses the pipe between the parent and a worker process, and how.

* Calls and results are pickled with protocol 5 (``corral._pickling``: what the stdlib
  pickle refuses goes by cloudpickle).
* Buffers of 1 MiB and more that pickle hands out of band (numpy arrays, bytes,
  bytearray, memoryview wrapped in ``pickle.PickleBuffer``) travel through shared
  memory: anonymous memfds that the sender keeps and reuses (:class:`SegmentPool`).
  The sender copies a buffer in, the receiver opens the segment through
  ``/proc/<pid>/fd/<fd>`` and copies it out (:class:`SegmentReader`) into memory of its
  own, reused once nothing refers to it (:class:`Landing`), so neither side ever holds
  a reference into memory the other reuses, and no name is ever created. What is
  kept for reuse goes back to the system once unused for ``KEEP_IDLE`` seconds.
* Every message is one frame: an 8-byte length, then the pickle of a tuple whose first
  item names the message. Both sides build and read the messages as the records at
  the end of this module (:class:`Message`), never the tuples.

Ownership of segments: the parent lends the segments of a call's arguments and takes
them back when the task's future is done and no worker holds a run of it (a retry
sends the same ones again; ``manager.Payload``); a worker lends the segments of a
result and takes them back when the parent says "free", which it does as soon as it
has copied the result out. A process that dies takes its memfds with it: there is
nothing to sweep.
"""

from __future__ import annotations

import contextlib
import operator
import os
import pickle
import struct
import sys
import threading
import weakref
from time import monotonic

from ..._pickling import PROTOCOL

TYPE_CHECKING = False  # (typing is not imported: worker processes load this module)
if TYPE_CHECKING:
    import mmap
    from collections.abc import Callable
    from typing import Any


#: Shared memory needs memfd_create and /proc (Linux); elsewhere buffers go in band.
SHARED_MEMORY = hasattr(os, "memfd_create") and os.path.isdir("/proc/self/fd")

Segments = list[tuple[int, int, int]]  # (owner pid, fd, bytes)

#: Memory kept for reuse (free segments, mappings of the other side's segments, landing
#: memory) that nothing has used for this many seconds is given back to the system:
#: a program that handled big arrays once does not keep their memory for good. The
#: owner looks every ``KEEP_IDLE / 2`` seconds while it keeps any (``release_idle``).
KEEP_IDLE = 10.0


def idle_cutoff() -> float:
    """What ``release_idle`` takes to give back what has been unused for KEEP_IDLE."""
    return monotonic() - KEEP_IDLE


# ------------------------------------------------------------------ shared memory


class Segment:
    """One anonymous shared-memory file (memfd) of this process, mapped here."""

    __slots__ = ("fd", "mapping", "size", "used")

    def __init__(self, size: int) -> None:
        self.size = size
        self.used = 0.0  # when it was last given back (monotonic)
        self.fd = os.memfd_create("corral", os.MFD_CLOEXEC)
        try:
            os.ftruncate(self.fd, size)
            import mmap  # (here: a program that sends no big buffer never loads it)

            self.mapping = mmap.mmap(self.fd, size)
        except BaseException:
            os.close(self.fd)
            raise

    def close(self) -> None:
        self.mapping.close()
        os.close(self.fd)


class SegmentPool:
    """Segments this process lends to the other side, kept and reused.

    A fresh segment costs page allocation (13-15 ms per 16 MB measured here); writing
    into one already mapped costs a memcpy. The receiver opens a segment through
    ``/proc/<pid>/fd/<fd>`` and copies the bytes out at once, so it never keeps a
    reference into memory that is reused. Memfds have no name: nothing is left behind
    in /dev/shm, whatever happens to either process.
    """

    MAX_KEPT = 256 << 20  # bytes of free segments kept for reuse

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._free: list[Segment] = []
        self._lent: dict[int, Segment] = {}
        _owners.add(self)

    def take(self, nbytes: int) -> Segment:
        with self._lock:
            fits = [s for s in self._free if nbytes <= s.size <= 4 * nbytes + (1 << 20)]
            if fits:
                segment = min(fits, key=lambda s: s.size)
                self._free.remove(segment)
            else:
                segment = Segment(-(-nbytes // (1 << 20)) << 20)  # whole MiB
            self._lent[segment.fd] = segment
            return segment

    def give_back(self, fd: int) -> None:
        with self._lock:
            segment = self._lent.pop(fd, None)
            if segment is None:
                return
            if sum(s.size for s in self._free) + segment.size <= self.MAX_KEPT:
                segment.used = monotonic()
                self._free.append(segment)
                return
        segment.close()

    def holds(self) -> bool:
        """True while free segments are kept (``release_idle`` has work to look at)."""
        return bool(self._free)

    def release_idle(self, cutoff: float) -> None:
        """Closes the free segments given back before ``cutoff`` (monotonic)."""
        with self._lock:
            old = [s for s in self._free if s.used < cutoff]
            self._free = [s for s in self._free if s.used >= cutoff]
        for segment in old:
            segment.close()

    def lending(self) -> bool:
        """True while a segment is lent (the other side has not given it back)."""
        return bool(self._lent)

    def give_back_all(self, segments: Segments) -> None:
        for _, fd, _ in segments:
            self.give_back(fd)

    def close(self) -> None:
        with self._lock:
            segments = self._free + list(self._lent.values())
            self._free, self._lent = [], {}
        for segment in segments:
            segment.close()

    def _forget_in_child(self) -> None:
        """In a forked child: closes its copies of the segments, which are the parent's
        (the lock may have been held by a thread the child does not have)."""
        self._lock = threading.Lock()
        segments = self._free + list(self._lent.values())
        self._free, self._lent = [], {}
        for segment in segments:
            with contextlib.suppress(BufferError):  # a view a parent's thread was writing
                segment.mapping.close()
            with contextlib.suppress(OSError):
                os.close(segment.fd)


class _Mapped:
    """A mapping this process made (of the other side's segment: with its inode)."""

    __slots__ = ("inode", "mapping", "used")

    def __init__(self, mapping: mmap.mmap, inode: int = 0) -> None:
        self.mapping = mapping
        self.inode = inode
        self.used = monotonic()  # when it was last read from or handed out


def _references(entry: _Mapped) -> int:
    """sys.getrefcount of ``entry.mapping``, always taken by this same code."""
    return sys.getrefcount(entry.mapping)


#: An entry whose object nothing else refers to: what _references counts for it, taken
#: right beside each count, cancels out the interpreter's own temporary references
#: (Python 3.14 takes fewer; a specialised attribute load may differ from a generic one).
_UNSHARED = _Mapped(object())  # type: ignore[arg-type]
#: Reference counts are exact with the GIL only (free-threaded builds defer some).
_REFCOUNTS_EXACT = getattr(sys, "_is_gil_enabled", lambda: True)()


def _in_use(entry: _Mapped) -> bool:
    """True while an object other than ``entry`` refers to its mapping: every view of
    it, and every array built on one, holds a reference (the buffer's exporter)."""
    return not _REFCOUNTS_EXACT or _references(entry) > _references(_UNSHARED)


def _close(entry: _Mapped) -> None:
    """Unmaps now if nothing uses the mapping; else its last user does, when it goes."""
    with contextlib.suppress(BufferError):
        entry.mapping.close()


class Landing:
    """Memory that received buffers are copied into, reused once nothing uses it.

    A received 16 MB array copied into new memory costs a page fault per 4 KB page, on
    a VM more than the copy itself (7-15 ms against 1 ms); a program that gets arrays
    and drops them again (the usual loop) would pay that for every one. So a buffer is
    copied into an anonymous mapping kept here, and handed out as a view of it; once
    only this pool refers to a mapping (``_in_use``), the next buffer may go there. Up
    to ``MAX_KEPT`` bytes are kept; to make room for a new mapping the oldest ones
    still in use are forgotten: they are unmapped when their last user goes.

    On a free-threaded build nothing is reused (every buffer gets a new mapping).
    """

    MAX_KEPT = 256 << 20
    MIN_SIZE = 1 << 20  # smaller buffers go to plain bytearrays (malloc reuses those)

    def __init__(self) -> None:
        self._entries: list[_Mapped] = []  # oldest first
        self._kept = 0  # their bytes

    def take(self, source: memoryview) -> memoryview | bytearray:
        """A writable copy of ``source``."""
        nbytes = source.nbytes
        if nbytes < self.MIN_SIZE:
            return bytearray(source)
        entry = self._reusable(nbytes)
        if entry is None:
            import mmap

            size = -(-nbytes // mmap.PAGESIZE) * mmap.PAGESIZE
            # private: a process forked while an object uses this memory gets its own
            # copy, and never sees the next buffer that lands here (nor writes into it)
            entry = _Mapped(mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE))
            if _REFCOUNTS_EXACT:
                self._keep(entry)
        else:
            entry.used = monotonic()
        view = memoryview(entry.mapping)[:nbytes]
        view[:] = source
        return view

    def _reusable(self, nbytes: int) -> _Mapped | None:
        """The smallest kept mapping that fits ``nbytes`` and that nothing uses."""
        best = None
        for entry in self._entries:
            size = len(entry.mapping)
            if (
                nbytes <= size <= 2 * nbytes
                and (best is None or size < len(best.mapping))
                and not _in_use(entry)
            ):
                best = entry
        return best

    def _keep(self, entry: _Mapped) -> None:
        """Keeps a new mapping if it fits, after forgetting the oldest in use if need be
        (a program that holds on to some arrays should not stop all reuse)."""
        size = len(entry.mapping)
        entries = self._entries
        index = 0
        while self._kept + size > self.MAX_KEPT and index < len(entries):
            if _in_use(entries[index]):
                self._kept -= len(entries.pop(index).mapping)
            else:
                index += 1
        if self._kept + size <= self.MAX_KEPT:
            entries.append(entry)
            self._kept += size

    def idle_bytes(self) -> int:
        """Bytes kept for reuse that nothing uses now."""
        return sum(len(entry.mapping) for entry in self._entries if not _in_use(entry))

    def holds(self) -> bool:
        """True while mappings are kept (``release_idle`` has work to look at)."""
        return bool(self._entries)

    def release_idle(self, cutoff: float) -> None:
        """Unmaps the kept mappings that nothing uses and that were last handed out
        before ``cutoff`` (monotonic)."""
        for entry in [e for e in self._entries if e.used < cutoff and not _in_use(e)]:
            self._entries.remove(entry)
            self._kept -= len(entry.mapping)
            _close(entry)

    def close(self) -> None:
        """Unmaps what nothing uses; what is still in use goes with its last user."""
        for entry in self._entries:
            _close(entry)
        self._entries.clear()
        self._kept = 0


class SegmentReader:
    """Opens the other side's segments and copies their bytes out, into this process's
    own memory (a ``Landing``); the mappings of the segments are kept for next time."""

    def __init__(self) -> None:
        self._maps: dict[tuple[int, int], _Mapped] = {}
        self._landing = Landing()
        _owners.add(self)

    def read(self, pid: int, fd: int, nbytes: int) -> memoryview | bytearray:
        key = (pid, fd)
        local = os.open(f"/proc/{pid}/fd/{fd}", os.O_RDONLY)
        try:
            inode = os.fstat(local).st_ino
            entry = self._maps.get(key)
            if entry is None or entry.inode != inode or len(entry.mapping) < nbytes:
                if entry is not None:  # the sender's fd is another segment now
                    entry.mapping.close()
                import mmap

                mapping = mmap.mmap(local, 0, prot=mmap.PROT_READ)
                entry = self._maps[key] = _Mapped(mapping, inode)
            else:
                entry.used = monotonic()
        finally:
            os.close(local)
        return self._landing.take(memoryview(entry.mapping)[:nbytes])

    def idle_bytes(self) -> int:
        """Bytes of received memory kept for reuse that nothing uses now."""
        return self._landing.idle_bytes()

    def holds(self) -> bool:
        """True while mappings or landing memory are kept (see ``release_idle``)."""
        return bool(self._maps) or self._landing.holds()

    def release_idle(self, cutoff: float) -> None:
        """Unmaps the other side's segments last read before ``cutoff`` (monotonic; so
        that a segment it has closed since is freed), and the landing memory idle since
        then. A copy is made out of a segment at once: nothing keeps a view of one."""
        for key in [k for k, entry in self._maps.items() if entry.used < cutoff]:
            _close(self._maps.pop(key))
        self._landing.release_idle(cutoff)

    def forget(self, pid: int) -> None:
        """Drops the mappings of a process that has gone."""
        for key in [k for k in self._maps if k[0] == pid]:
            self._maps.pop(key).mapping.close()

    def close(self) -> None:
        """Unmaps everything; landing memory still in use goes with its last user."""
        for entry in self._maps.values():
            _close(entry)  # (in a forked child, a parent's thread may have been reading)
        self._maps.clear()
        self._landing.close()

    #: In a forked child, what the parent kept goes (objects the child uses, on landing
    #: memory, stay valid: they are the child's own copy)
    _forget_in_child = close


#: The SegmentPools and SegmentReaders of this process. A child forked from it (a
#: worker started with fork, or any fork) gets copies of their fds and mappings, which
#: would keep the parent's segments alive for the child's whole life.
_owners: weakref.WeakSet[SegmentPool | SegmentReader] = weakref.WeakSet()


def _forget_owners_in_child() -> None:
    for owner in list(_owners):
        owner._forget_in_child()
    _owners.clear()


os.register_at_fork(after_in_child=_forget_owners_in_child)


class KeptMemory:
    """One process's memory kept for big buffers (its SegmentPool, its SegmentReader's
    mappings and landing memory): what has gone unused for ``KEEP_IDLE`` is given
    back, looked for at most every KEEP_IDLE / 2 (``release_due``) while any is kept."""

    def __init__(self, pool: SegmentPool | None, reader: SegmentReader) -> None:
        self._pool = pool
        self._reader = reader
        #: when to look next (monotonic; 0: at the first chance)
        self.next_look = 0.0

    def holds(self) -> bool:
        return (self._pool is not None and self._pool.holds()) or self._reader.holds()

    def release_due(self) -> None:
        """Gives back what has gone unused, if it is time to look (and there is any)."""
        if not self.holds():
            return
        current = monotonic()
        if current < self.next_look:
            return
        self.next_look = current + KEEP_IDLE / 2
        cutoff = idle_cutoff()
        self._reader.release_idle(cutoff)
        if self._pool is not None:
            self._pool.release_idle(cutoff)


# ------------------------------------------------------------------ framing

_HEADER = struct.Struct("!Q")


def write_frame(fd: int, data: bytes) -> None:
    """Writes one length-prefixed message to a blocking fd."""
    view = memoryview(_HEADER.pack(len(data)) + data) if len(data) < 65536 else None
    if view is None:
        _write_all(fd, memoryview(_HEADER.pack(len(data))))
        _write_all(fd, memoryview(data))
    else:
        _write_all(fd, view)


def _write_all(fd: int, view: memoryview) -> None:
    while view:
        view = view[os.write(fd, view) :]


def read_frame(fd: int) -> bytes:
    """Reads one message from a blocking fd; raises EOFError at end of file."""
    (size,) = _HEADER.unpack(_read_exactly(fd, _HEADER.size))
    return _read_exactly(fd, size)


def _read_exactly(fd: int, size: int) -> bytes:
    chunks = []
    while size:
        chunk = os.read(fd, min(size, _MAX_READ))
        if not chunk:
            raise EOFError("the other side closed the pipe")
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


_READ_SIZE = 1 << 16
_MAX_READ = 1 << 24


class FrameReader:
    """Splits what a non-waiting read returned into whole messages."""

    __slots__ = ("_buffer",)

    def __init__(self) -> None:
        self._buffer = bytearray()

    def read_size(self) -> int:
        """How many bytes to ask for in the next read: what the frame begun still
        lacks, in one read, or 64 KiB. Not more: ``os.read`` allocates what it is
        asked for before it reads (a 1 MiB read of a 100-byte message took 14 us
        against 4 for 64 KiB)."""
        buffer = self._buffer
        if len(buffer) < _HEADER.size:
            return _READ_SIZE
        size: int = _HEADER.unpack_from(buffer, 0)[0]
        return min(max(_HEADER.size + size - len(buffer), _READ_SIZE), _MAX_READ)

    def feed(self, data: bytes) -> list[bytes]:
        buffer = self._buffer
        buffer += data
        frames = []
        start = 0
        header = _HEADER.size
        while len(buffer) - start >= header:
            (size,) = _HEADER.unpack_from(buffer, start)
            end = start + header + size
            if end > len(buffer):
                break
            frames.append(bytes(buffer[start + header : end]))
            start = end
        if start:
            del buffer[:start]
        return frames


# ------------------------------------------------------------------ messages
# Each message is a record on both sides and a plain tuple on the wire, ``(KIND,
# *fields)``: a tuple pickles and unpickles about six times faster than an instance of
# a class (0.5 against 3 us each way, measured here), and there are two or more
# messages per task.

#: One call handed to a worker: (run id, pickled function, pickled call, its segments).
Call = tuple[int, bytes, bytes, Segments]


class Message:
    """A message between the parent and a worker; its fields are its ``FIELDS`` (also
    its slots), in the order of its constructor's parameters."""

    __slots__ = ()
    FIELDS: tuple[str, ...] = ()
    KIND = ""
    _values: Callable[[Message], tuple[Any, ...]] = staticmethod(lambda message: ())

    def __init_subclass__(cls) -> None:
        if len(cls.FIELDS) > 1:  # attrgetter of several names gives their tuple
            cls._values = staticmethod(operator.attrgetter(*cls.FIELDS))
        elif cls.FIELDS:
            name = cls.FIELDS[0]
            cls._values = staticmethod(lambda message: (getattr(message, name),))

    def dumps(self) -> bytes:
        """The pickle that travels: the tuple of the kind and the fields."""
        return pickle.dumps((self.KIND, *self._values(self)), PROTOCOL)

    def __repr__(self) -> str:
        fields = ", ".join(f"{f}={getattr(self, f)!r}" for f in self.FIELDS)
        return f"{type(self).__name__}({fields})"

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and all(
            getattr(self, f) == getattr(other, f) for f in self.FIELDS
        )

    __hash__ = None  # type: ignore[assignment]


# parent -> worker


class RunCalls(Message):
    """Run these calls after those handed over before, one after the other."""

    __slots__ = FIELDS = ("calls",)
    KIND = "run"

    def __init__(self, calls: list[Call]) -> None:
        self.calls = calls


class Revoke(Message):
    """Drop these runs if they have not started (the worker answers each: Skipped or
    Started). Sent with REVOKE_SIGNAL, so a busy worker reads it during its task."""

    __slots__ = FIELDS = ("run_ids",)
    KIND = "revoke"

    def __init__(self, run_ids: list[int]) -> None:
        self.run_ids = run_ids


class Free(Message):
    """The parent copied these result segments out: the worker may reuse them."""

    __slots__ = FIELDS = ("fds",)
    KIND = "free"

    def __init__(self, fds: list[int]) -> None:
        self.fds = fds


class Exit(Message):
    """Finish and exit (the worker is retired)."""

    __slots__ = FIELDS = ()
    KIND = "exit"


# worker -> parent


class Ready(Message):
    """The initializer is done: the worker waits for work."""

    __slots__ = FIELDS = ("pid",)
    KIND = "ready"

    def __init__(self, pid: int) -> None:
        self.pid = pid


class InitFailed(Message):
    """The initializer raised (``error``: the pickled exception); the worker exits."""

    __slots__ = FIELDS = ("error",)
    KIND = "init_failed"

    def __init__(self, error: bytes) -> None:
        self.error = error


class Ok(Message):
    """A run returned: its pickled value, the segments its buffers are in, how long it
    ran, and the worker's RSS after it (0: not measured)."""

    __slots__ = FIELDS = ("run_id", "result", "segments", "seconds", "rss")
    KIND = "ok"

    def __init__(
        self, run_id: int, result: bytes, segments: Segments, seconds: float, rss: int
    ) -> None:
        self.run_id = run_id
        self.result = result
        self.segments = segments
        self.seconds = seconds
        self.rss = rss


class Error(Message):
    """A run raised, or its call or result did not (un)pickle: the pickled exception."""

    __slots__ = FIELDS = ("run_id", "error", "seconds", "rss")
    KIND = "error"

    def __init__(self, run_id: int, error: bytes, seconds: float, rss: int) -> None:
        self.run_id = run_id
        self.error = error
        self.seconds = seconds
        self.rss = rss


class Skipped(Message):
    """A revoked run that had not started: dropped, the parent puts it back."""

    __slots__ = FIELDS = ("run_id",)
    KIND = "skipped"

    def __init__(self, run_id: int) -> None:
        self.run_id = run_id


class Started(Message):
    """A revoked run that had started: it runs (or ran), its outcome follows (or came)."""

    __slots__ = FIELDS = ("run_id",)
    KIND = "started"

    def __init__(self, run_id: int) -> None:
        self.run_id = run_id


class Escaped(Message):
    """Processes the worker's tasks started that left its process group (still
    running when it looked): the parent ends them with the worker (``tree.py``)."""

    __slots__ = FIELDS = ("pids",)
    KIND = "escaped"

    def __init__(self, pids: list[int]) -> None:
        self.pids = pids


class Log(Message):
    """A logging record of the worker (its fields), from any thread; ``run_id`` is the
    run going on then (0: none)."""

    __slots__ = FIELDS = ("run_id", "record")
    KIND = "log"

    def __init__(self, run_id: int, record: dict[str, Any]) -> None:
        self.run_id = run_id
        self.record = record


_KINDS: dict[str, type[Message]] = {
    kind.KIND: kind
    for kind in (
        RunCalls,
        Revoke,
        Free,
        Exit,
        Ready,
        InitFailed,
        Ok,
        Error,
        Skipped,
        Started,
        Escaped,
        Log,
    )
}


def loads(data: bytes) -> Message:
    """The record of a message read from the pipe."""
    message = pickle.loads(data)
    return _KINDS[message[0]](*message[1:])
