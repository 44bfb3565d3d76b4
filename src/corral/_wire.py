"""What crosses the pipe between the parent and a worker process, and how.

* Calls and results are pickled with protocol 5. What the stdlib pickle refuses
  (lambdas, closures, functions defined in ``__main__``) goes by cloudpickle.
* Buffers of 1 MiB and more that pickle hands out of band (numpy arrays, bytes,
  bytearray, memoryview wrapped in ``pickle.PickleBuffer``) travel through POSIX
  shared memory: the sender copies each into a fresh segment once, the receiver maps it
  and rebuilds the object on the mapping without another copy.
* Segment names are ``/corral-<parent pid>-<creator>-<n>`` so that whatever a dead
  worker left behind can be found and removed (:func:`sweep`).
* Exceptions travel with the worker's traceback (frames rebuilt by tblib, and as text);
  an exception that will not pickle or unpickle arrives as a :class:`RemoteError`
  stand-in carrying its type, message and traceback text.

Ownership of segments: the parent creates the segments of a call's arguments and
unlinks them when the task ends, however it ends; the worker creates the segments of a
result and the parent unlinks them as soon as it has mapped them. A worker that dies
before its result is read leaves segments named after its pid: the parent sweeps them.
"""

from __future__ import annotations

import contextlib
import itertools
import mmap
import os
import pickle
import struct
import traceback
import weakref
from typing import Any

import cloudpickle

from ._errors import CancelledError, CorralError

try:  # POSIX shared memory without the resource tracker's bookkeeping
    import _posixshmem
except ImportError:  # pragma: no cover - not POSIX
    _posixshmem = None

PROTOCOL = 5
#: Buffers at least this large go through shared memory instead of the pipe.
OOB_THRESHOLD = 1 << 20
SHM_DIR = "/dev/shm"

Segments = list[tuple[str, int]]

__all__ = ["CancelledError", "RemoteError", "SerializationError", "WorkerTraceback"]


class RemoteError(CorralError):
    """Stand-in for an exception raised in a worker that could not be sent back.

    Attributes:
        type_name: the qualified name of the original exception's class.
        remote_traceback: the worker's traceback, as text.
    """

    def __init__(self, message: str, type_name: str = "", remote_traceback: str = "") -> None:
        super().__init__(message)
        self.type_name = type_name
        self.remote_traceback = remote_traceback

    def __reduce__(self) -> Any:
        return (type(self), (str(self), self.type_name, self.remote_traceback))


class SerializationError(CorralError, pickle.PicklingError):
    """A call's function, arguments or result could not cross to or from the worker."""


class WorkerTraceback(Exception):
    """The ``__cause__`` of an exception from a worker: the worker's own traceback."""

    def __str__(self) -> str:
        return f'\n"""\n{self.args[0]}"""' if self.args else ""


# ------------------------------------------------------------------ shared memory

_counter = itertools.count()


def segment_prefix(parent_pid: int, creator: int | str) -> str:
    return f"/corral-{parent_pid}-{creator}-"


def _create_segment(prefix: str, data: memoryview) -> tuple[str, int]:
    assert _posixshmem is not None
    name = f"{prefix}{next(_counter)}"
    size = data.nbytes
    fd = _posixshmem.shm_open(name, os.O_CREAT | os.O_EXCL | os.O_RDWR, mode=0o600)
    try:
        os.ftruncate(fd, max(size, 1))
        with mmap.mmap(fd, max(size, 1)) as mapping:
            mapping[:size] = data.cast("B")
    except BaseException:
        _posixshmem.shm_unlink(name)
        raise
    finally:
        os.close(fd)
    return name, size


def map_segment(name: str, size: int) -> memoryview:
    """Maps a segment; the memory lives as long as the returned view (and its users)."""
    assert _posixshmem is not None
    fd = _posixshmem.shm_open(name, os.O_RDWR, mode=0o600)
    try:
        mapping = mmap.mmap(fd, max(size, 1))
    finally:
        os.close(fd)
    return memoryview(mapping)[:size]


def unlink(segments: Segments) -> None:
    if _posixshmem is None:  # pragma: no cover
        return
    for name, _ in segments:
        with contextlib.suppress(FileNotFoundError):
            _posixshmem.shm_unlink(name)


def sweep(prefix: str) -> None:
    """Unlinks every segment whose name starts with ``prefix`` (a dead creator's)."""
    bare = prefix.lstrip("/")
    try:
        names = [n for n in os.listdir(SHM_DIR) if n.startswith(bare)]
    except OSError:  # pragma: no cover - no /dev/shm
        return
    unlink([("/" + n, 0) for n in names])


# ------------------------------------------------------------------ objects


def dumps(obj: Any, prefix: str | None) -> tuple[bytes, Segments]:
    """Pickles ``obj``; large out-of-band buffers go to new segments named ``prefix*``.

    Raises:
        SerializationError: neither pickle nor cloudpickle could pickle it.
    """
    buffers: list[pickle.PickleBuffer] = []

    def out_of_band(buf: pickle.PickleBuffer) -> bool:
        if prefix is None or _posixshmem is None:
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
    try:
        for buf in buffers:
            assert prefix is not None
            segments.append(_create_segment(prefix, buf.raw()))
    except BaseException:
        unlink(segments)
        raise
    return data, segments


def loads(data: bytes, segments: Segments, *, take: bool) -> Any:
    """Unpickles ``data`` over its mapped segments; ``take`` also unlinks their names."""
    views = [map_segment(name, size) for name, size in segments]
    if take:
        unlink(segments)
    return pickle.loads(data, buffers=views)


class FunctionPickler:
    """Pickles each function once per pool (by reference when pickle can, else by value).

    A function defined in ``__main__``, a lambda or a closure goes by cloudpickle, by
    value: the globals it reads are captured when it is first sent by this pool, as a
    spawned worker would see them when it imports your script.
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
                data = cloudpickle.dumps(fn, PROTOCOL)
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
    prefix: str,
) -> tuple[bytes, bytes, Segments]:
    """Pickles a call, naming the argument that failed if one does."""
    fn_data = functions.dumps(fn)
    try:
        data, segments = dumps((args, kwargs), prefix)
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
