"""What crosses the pipe between the parent and a worker process, and how.

* Calls and results are pickled with protocol 5. What the stdlib pickle refuses
  (lambdas, closures, functions defined in ``__main__``) goes by cloudpickle.
* Buffers of 1 MiB and more that pickle hands out of band (numpy arrays, bytes,
  bytearray, memoryview wrapped in ``pickle.PickleBuffer``) travel through shared
  memory: anonymous memfds that the sender keeps and reuses (:class:`SegmentPool`).
  The sender copies a buffer in, the receiver opens the segment through
  ``/proc/<pid>/fd/<fd>`` and copies it out (:class:`SegmentReader`), so neither side
  ever holds a reference into memory the other reuses, and no name is ever created.
* Exceptions travel with the worker's traceback (frames rebuilt by tblib, and as text);
  an exception that will not pickle or unpickle arrives as a :class:`RemoteError`
  stand-in carrying its type, message and traceback text.

Ownership of segments: the parent lends the segments of a call's arguments and takes
them back when the task's future is done (a retry sends the same ones again); a worker
lends the segments of a result and takes them back when the parent says "free", which
it does as soon as it has copied the result out. A process that dies takes its memfds
with it: there is nothing to sweep.
"""

from __future__ import annotations

import marshal
import mmap
import os
import pickle
import struct
import sys
import threading
import traceback
import types
import weakref

from ._errors import CancelledError, RemoteError, SerializationError, WorkerTraceback

TYPE_CHECKING = False  # (typing is not imported: worker processes load this module)
if TYPE_CHECKING:
    from typing import Any


class _LazyCloudpickle:
    """``cloudpickle``, imported on first use: a worker whose calls plain pickle can carry
    never pays for it (about 18 ms of every worker's start), nor does the parent until
    it first sends a lambda or a ``__main__`` function."""

    def __getattr__(self, name: str) -> Any:
        import cloudpickle

        return getattr(cloudpickle, name)


cloudpickle: Any = _LazyCloudpickle()

PROTOCOL = 5
#: Buffers at least this large go through shared memory instead of the pipe.
OOB_THRESHOLD = 1 << 20
#: Shared memory needs memfd_create and /proc (Linux); elsewhere buffers go in band.
SHARED_MEMORY = hasattr(os, "memfd_create") and os.path.isdir("/proc/self/fd")

Segments = list[tuple[int, int, int]]  # (owner pid, fd, bytes)

__all__ = ["CancelledError", "RemoteError", "SerializationError", "WorkerTraceback"]


# ------------------------------------------------------------------ shared memory


class Segment:
    """One anonymous shared-memory file (memfd) of this process, mapped here."""

    __slots__ = ("fd", "mapping", "size")

    def __init__(self, size: int) -> None:
        self.size = size
        self.fd = os.memfd_create("corral", os.MFD_CLOEXEC)
        try:
            os.ftruncate(self.fd, size)
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
                self._free.append(segment)
                return
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


class SegmentReader:
    """Opens the other side's segments and copies their bytes out (mappings are kept)."""

    def __init__(self) -> None:
        self._maps: dict[tuple[int, int], tuple[int, mmap.mmap]] = {}

    def read(self, pid: int, fd: int, nbytes: int) -> bytearray:
        local = os.open(f"/proc/{pid}/fd/{fd}", os.O_RDONLY)
        try:
            inode = os.fstat(local).st_ino
            cached = self._maps.get((pid, fd))
            if cached is None or cached[0] != inode or len(cached[1]) < nbytes:
                if cached is not None:
                    cached[1].close()
                mapping = mmap.mmap(local, 0, prot=mmap.PROT_READ)
                self._maps[(pid, fd)] = (inode, mapping)
            else:
                mapping = cached[1]
        finally:
            os.close(local)
        return bytearray(memoryview(mapping)[:nbytes])

    def forget(self, pid: int) -> None:
        """Drops the mappings of a process that has gone."""
        for key in [k for k in self._maps if k[0] == pid]:
            self._maps.pop(key)[1].close()

    def close(self) -> None:
        for _, mapping in self._maps.values():
            mapping.close()
        self._maps.clear()


# ------------------------------------------------------------------ objects


def dumps(obj: Any, pool: SegmentPool | None) -> tuple[bytes, Segments]:
    """Pickles ``obj``; out-of-band buffers of 1 MiB or more go to segments of ``pool``.

    Returns the pickle and, per such buffer, ``(pid, fd, nbytes)`` for the receiver.

    Raises:
        SerializationError: neither pickle nor cloudpickle could pickle it.
    """
    buffers: list[pickle.PickleBuffer] = []

    def out_of_band(buf: pickle.PickleBuffer) -> bool:
        if pool is None:
            return True
        try:
            if buf.raw().nbytes < OOB_THRESHOLD:
                return True
        except BufferError:  # not contiguous: keep it in band
            return True
        buffers.append(buf)
        return False

    try:
        data = pickle.dumps(obj, PROTOCOL, buffer_callback=out_of_band)
    except Exception as first:
        buffers.clear()
        try:
            data = cloudpickle.dumps(obj, PROTOCOL, buffer_callback=out_of_band)
        except Exception as exc:
            raise SerializationError(f"{exc} ({type(exc).__name__})") from first
    segments: Segments = []
    pid = os.getpid()
    for buf in buffers:
        assert pool is not None
        raw = buf.raw().cast("B")
        segment = pool.take(raw.nbytes)
        segment.mapping[: raw.nbytes] = raw
        segments.append((pid, segment.fd, raw.nbytes))
    return data, segments


def loads(data: bytes, segments: Segments, reader: SegmentReader) -> Any:
    """Unpickles ``data``, copying its out-of-band buffers out of the sender's segments."""
    buffers = [reader.read(pid, fd, nbytes) for pid, fd, nbytes in segments]
    return pickle.loads(data, buffers=buffers)


def _code_key(code: types.CodeType) -> bytes:
    """What a function's code is, leaving out where it was loaded from (file names)."""
    consts = tuple(_code_key(c) if isinstance(c, types.CodeType) else c for c in code.co_consts)
    try:
        data = marshal.dumps((code.co_code, code.co_names, code.co_varnames, consts))
    except ValueError:  # a constant marshal cannot write: this code is never matched
        return b""
    import hashlib  # (here: 4 ms of import that most programs never need)

    return hashlib.blake2b(data, digest_size=16).digest()


def main_function(qualname: str, key: bytes, by_value: bytes) -> Any:
    """In a worker: ``__main__``'s own function of that name and code, else the copy.

    A worker whose ``__main__`` is the parent's script (fork inherits it; spawn and
    forkserver import a guarded script again) has the function itself, whose globals
    are that module's: what an initializer sets there, a task then sees, as with the
    stdlib. Elsewhere (``python -c``, a notebook) the copy pickled by value is used.
    """
    found: Any = sys.modules.get("__main__")
    for part in qualname.split("."):
        found = getattr(found, part, None)
    code = getattr(found, "__code__", None)
    if isinstance(code, types.CodeType) and key and _code_key(code) == key:
        return found
    return pickle.loads(by_value)


class _MainFunction:
    """Pickles a ``__main__`` function as "``__main__``'s own if the worker has it"."""

    __slots__ = ("fn",)

    def __init__(self, fn: Any) -> None:
        self.fn = fn

    def __reduce__(self) -> Any:
        fn = self.fn
        key = _code_key(fn.__code__)
        return (main_function, (fn.__qualname__, key, cloudpickle.dumps(fn, PROTOCOL)))


def _is_main_function(fn: Any) -> bool:
    return (
        isinstance(fn, types.FunctionType)
        and fn.__module__ == "__main__"
        and "<" not in fn.__qualname__  # not a lambda, nor defined inside a function
    )


class FunctionPickler:
    """Pickles each function once per pool (by reference when pickle can, else by value).

    A lambda or a closure goes by cloudpickle, by value. A function defined at the top
    level of ``__main__`` goes as "the worker's ``__main__`` function of that name, if
    it has the same code" (see ``main_function``), with a copy by value for a worker
    that has none; the copy's globals are captured when this pool first sends it.
    """

    def __init__(self) -> None:
        self._cache: weakref.WeakKeyDictionary[Any, bytes] = weakref.WeakKeyDictionary()

    def dumps(self, fn: Any) -> bytes:
        try:
            return self._cache[fn]
        except (KeyError, TypeError):
            pass
        data: bytes | None = None
        if getattr(fn, "__module__", None) != "__main__":
            try:
                data = pickle.dumps(fn, PROTOCOL)
            except Exception:
                data = None
        if data is None:
            try:
                data = cloudpickle.dumps(
                    _MainFunction(fn) if _is_main_function(fn) else fn, PROTOCOL
                )
            except Exception as exc:
                raise SerializationError(
                    f"the function {fn!r} could not be pickled for the worker process: "
                    f"{exc}. Define it at module level"
                ) from exc
        try:
            self._cache[fn] = data
        except TypeError:  # not weak-referenceable (a builtin, a bound method): no cache
            pass
        return data


def dumps_call(
    functions: FunctionPickler,
    fn: Any,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    pool: SegmentPool | None,
) -> tuple[bytes, bytes, Segments]:
    """Pickles a call, naming the argument that failed if one does."""
    fn_data = functions.dumps(fn)
    try:
        data, segments = dumps((args, kwargs), pool)
    except SerializationError as exc:
        raise SerializationError(_culprit(args, kwargs, exc)) from exc.__cause__
    return fn_data, data, segments


def _culprit(args: tuple[Any, ...], kwargs: dict[str, Any], exc: Exception) -> str:
    parts = [(f"argument {i} ({type(a).__name__})", a) for i, a in enumerate(args)]
    parts += [(f"keyword argument {k!r} ({type(v).__name__})", v) for k, v in kwargs.items()]
    for what, value in parts:
        try:
            cloudpickle.dumps(value, PROTOCOL)
        except Exception as inner:
            return (
                f"{what} could not be pickled for the worker process: {inner}. "
                "Pass data that pickles (or use a ThreadPoolExecutor for such objects)"
            )
    return f"the call's arguments could not be pickled for the worker process: {exc}"


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
        chunk = os.read(fd, min(size, 1 << 24))
        if not chunk:
            raise EOFError("the other side closed the pipe")
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


class FrameReader:
    """Splits what a non-waiting read returned into whole messages."""

    __slots__ = ("_buffer",)

    def __init__(self) -> None:
        self._buffer = bytearray()

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


# ------------------------------------------------------------------ exceptions


def dump_exception(exc: BaseException) -> bytes:
    """Pickles an exception raised in a worker, with its traceback (never raises)."""
    tb_text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    tb_dict = None
    try:
        from tblib import Traceback

        if exc.__traceback__ is not None:
            tb_dict = Traceback(exc.__traceback__).to_dict()
    except Exception:  # pragma: no cover - tblib could not walk it
        tb_dict = None
    reason = ""
    blob: bytes | None
    try:
        blob = cloudpickle.dumps(exc, PROTOCOL)
        pickle.loads(blob)  # a class whose __init__ breaks unpickling is caught here
    except Exception as problem:
        blob = None
        reason = f"{type(problem).__name__}: {problem}"
    name = f"{type(exc).__module__}.{type(exc).__qualname__}"
    return pickle.dumps((blob, name, _safe_str(exc), tb_text, tb_dict, reason), PROTOCOL)


def _safe_str(exc: BaseException) -> str:
    try:
        return str(exc)
    except Exception:  # pragma: no cover
        return "<str() failed>"


def load_exception(data: bytes) -> BaseException:
    """Rebuilds a worker's exception, its worker traceback chained as ``__cause__``."""
    blob, name, text, tb_text, tb_dict, reason = pickle.loads(data)
    exc: BaseException | None = None
    if blob is not None:
        try:
            exc = pickle.loads(blob)
        except Exception as problem:
            reason = f"{type(problem).__name__}: {problem}"
    if exc is None:
        exc = RemoteError(
            f"{name}: {text} -- raised in the worker, but it could not be sent back "
            f"({reason}); its traceback is in __cause__",
            name,
            tb_text,
        )
    cause = WorkerTraceback(tb_text)
    if tb_dict is not None:
        try:
            from tblib import Traceback

            cause = cause.with_traceback(Traceback.from_dict(tb_dict).as_traceback())
        except Exception:  # pragma: no cover - keep the text version
            pass
    exc.__cause__ = cause
    return exc
