"""How corral pickles what it sends to another process (shared by the process and
Dask backends).

* Functions go by reference when pickle can, else by cloudpickle, by value (lambdas,
  closures); a function defined in ``__main__`` goes as "the worker's own ``__main__``
  function of that name and code", with a copy by value for a worker that has none.
* Exceptions travel with the worker's traceback (frames rebuilt by tblib, and as text);
  an exception that will not pickle or unpickle arrives as a :class:`RemoteError`
  stand-in carrying its type, message and traceback text.
"""

from __future__ import annotations

import marshal
import os
import pickle
import sys
import traceback
import types
import weakref

from ._errors import RemoteError, SerializationError, WorkerTraceback

TYPE_CHECKING = False  # (typing is not imported: worker processes load this module)
if TYPE_CHECKING:
    from typing import Any

    from ._backends.process.wire import SegmentPool, SegmentReader, Segments


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
    if buffers:
        assert pool is not None
        pid = os.getpid()  # (a system call: not for the calls that have no buffer)
        try:
            for buf in buffers:
                raw = buf.raw().cast("B")
                segment = pool.take(raw.nbytes)
                segments.append((pid, segment.fd, raw.nbytes))
                segment.mapping[: raw.nbytes] = raw
        except BaseException:
            # (no segment, EMFILE or ENOMEM, say): nobody will read those taken already,
            # so nobody would give them back, and a worker waits for that
            pool.give_back_all(segments)
            raise
    return data, segments


def loads(data: bytes, segments: Segments, reader: SegmentReader) -> Any:
    """Unpickles ``data``, copying its out-of-band buffers out of the sender's segments."""
    buffers = [reader.read(pid, fd, nbytes) for pid, fd, nbytes in segments]
    return pickle.loads(data, buffers=buffers)


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
