"""Checks of public arguments, at the call site, so that bad input fails before any
work is queued and the message says what to pass instead."""

from __future__ import annotations

import math
import operator
import os
from collections.abc import Iterable

TYPE_CHECKING = False  # (typing is not imported at run time: docs/design.md §5.7)
if TYPE_CHECKING:
    from typing import Any, Literal, SupportsFloat, overload


def callable_name(fn: object) -> str:
    """A readable name for a callable, without calling its ``__repr__`` (which may be
    slow, or raise): ``qualname``, through ``functools.partial``, else its type's."""
    for _ in range(8):
        inner = getattr(fn, "func", None)  # functools.partial and the like
        if inner is None or inner is fn:
            break
        fn = inner
    name = getattr(fn, "__qualname__", None)
    if isinstance(name, str):
        return name
    return f"{type(fn).__qualname__} instance"


#: Seconds from which a time limit means "forever" (about 115 days): larger values,
#: ``math.inf`` included, are taken as no limit (or, where None is not allowed, as this),
#: since the waits that would carry them (locks, epoll) refuse them.
FOREVER = 1e7


def check_timeout(name: str, value: object, *, allow_none: bool = True) -> float | None:
    """Returns ``value`` as a float after checking that it is a valid number of seconds.

    ``FOREVER`` seconds or more (``math.inf`` too) mean no limit: None where None is
    allowed, else ``FOREVER``. Any real number is a number of seconds (numpy's ints and
    floats, ``Fraction``), but not a bool.

    Raises:
        TypeError: not a number (or None where None is not allowed).
        ValueError: negative or NaN.
    """
    if value is None:
        if allow_none:
            return None
        raise TypeError(f"{name} must be a number of seconds, not None")
    seconds = _seconds(name, value, "a number of seconds or None" if allow_none else None)
    if seconds != seconds or seconds < 0:  # (NaN is the value that is not itself)
        hint = "; pass None to wait without a limit" if allow_none else ""
        raise ValueError(f"{name} must be >= 0 seconds, got {value!r}{hint}")
    if seconds >= FOREVER:
        return None if allow_none else FOREVER
    return seconds


def _seconds(name: str, value: object, allowed: str | None = None) -> float:
    """``value`` as a float, or TypeError unless it is a real number (not a bool)."""
    if type(value) is float:  # the common cases first: one type test each
        return value
    if type(value) is int or isinstance(value, float):  # (numpy.float64 is a float)
        return _float(value)
    if not isinstance(value, bool):
        index = _index_of(value)  # numpy's ints
        if index is not None:
            return _float(index)
        import numbers  # (here: its ABCs cost a pool's start-up 0.5 ms, for a rare case)

        if isinstance(value, numbers.Real):  # Fraction
            return _float(value)
    allowed = allowed or "a number of seconds"
    raise TypeError(f"{name} must be {allowed}, not {type(value).__name__} {value!r:.80}")


def _index_of(value: object) -> int | None:
    """``operator.index(value)`` for a value that has ``__index__`` (numpy's ints), else
    None (as ``isinstance(value, typing.SupportsIndex)`` would say, without typing)."""
    if getattr(type(value), "__index__", None) is None:
        return None
    return operator.index(value)  # type: ignore[arg-type]  # (it has __index__)


def _float(value: SupportsFloat) -> float:
    """``float(value)``, where an int too large for a float (10**400) is infinite: a
    limit that large means "forever" as math.inf does, not OverflowError."""
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf  # type: ignore[operator]


def check_wait_timeout(value: object) -> float | None:
    """The ``timeout`` of ``Future.result()``/``exception()``, as the stdlib reads it:
    None waits without a limit, a negative number does not wait at all (code that
    passes ``deadline - now()`` relies on it), ``FOREVER`` or more waits without a
    limit too (the stdlib's lock would refuse such a wait).

    Raises:
        TypeError: not a number (a string, say), before any waiting.
        ValueError: NaN, which the stdlib takes as 0.
    """
    if (type(value) is float or type(value) is int) and value < FOREVER:
        return value  # the common case, on result()'s path: nothing else to check
    seconds = _seconds("timeout", value, "a number of seconds or None")
    if seconds != seconds:
        raise ValueError(
            f"timeout must be >= 0 seconds, got {value!r}; pass None to wait without a limit"
        )
    return None if seconds >= FOREVER else seconds


def check_bool(name: str, value: object, *, allow_none: bool = False) -> bool:
    """Returns ``value`` as a bool: True, False, 0, 1 or a numpy bool; anything else (a
    truthy string such as "no") is refused, since it would silently mean True.

    ``allow_none``: None means False, for the stdlib's flags (``shutdown(wait=None)``
    is found in real code, and the stdlib reads it as False).
    """
    if value is True or value is False:
        return value
    if value is None and allow_none:
        return False
    if (type(value) is int or _is_numpy_bool(value)) and value in (0, 1):
        return bool(value)
    also = "0, 1 or None" if allow_none else "0 or 1"
    raise TypeError(
        f"{name} must be True or False (or {also}), not {type(value).__name__} {value!r:.80}"
    )


def _is_numpy_bool(value: object) -> bool:
    kind = type(value)
    return kind.__module__ == "numpy" and kind.__name__ in ("bool_", "bool")


if TYPE_CHECKING:

    @overload
    def check_count(
        name: str, value: object, *, minimum: int, allow_none: Literal[False] = False
    ) -> int: ...
    @overload
    def check_count(name: str, value: object, *, minimum: int, allow_none: bool) -> int | None: ...


def check_count(name: str, value: object, *, minimum: int, allow_none: bool = False) -> int | None:
    """Checks that ``value`` is an int >= ``minimum`` (or None where allowed); numpy's
    ints are ints here (they have ``__index__``), bools and floats are not."""
    if value is None and allow_none:
        return None
    if type(value) is not int:
        index = None if isinstance(value, bool) else _index_of(value)
        if index is None:
            raise TypeError(f"{name} must be an int, not {type(value).__name__}")
        value = index
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def cpu_count() -> int:
    """CPUs this process may use (``os.process_cpu_count`` where Python has it)."""
    return getattr(os, "process_cpu_count", os.cpu_count)() or 1


def check_initializer(initializer: object, initargs: object) -> tuple[Any, ...]:
    """Checks a pool's ``initializer`` and ``initargs`` (with or without an initializer:
    a wrong one is a mistake either way); returns the initargs as a tuple, read once
    (a generator could not be read twice)."""
    if initializer is not None and not callable(initializer):
        raise TypeError(f"initializer must be a callable, got {type(initializer).__name__}")
    if type(initargs) is tuple:
        return initargs
    # a str would be "unpacked" into its characters: surely not what was meant
    if isinstance(initargs, (str, bytes)) or not isinstance(initargs, Iterable):
        raise TypeError(
            f"initargs must be a tuple of arguments for the initializer, "
            f"got {type(initargs).__name__} {initargs!r:.80}: write initargs=(value,)"
        )
    return tuple(initargs)


def check_thread_name_prefix(prefix: object) -> str:
    """The stdlib takes anything and formats it into the names; a str is meant (None:
    the default names, as the stdlib's falsy default)."""
    if prefix is None:
        return ""
    if not isinstance(prefix, str):
        raise TypeError(
            f"thread_name_prefix must be a str (or None for the default names), "
            f"not {type(prefix).__name__} {prefix!r:.80}"
        )
    return prefix


def check_callable(fn: object, what: str = "fn") -> None:
    """Raises TypeError unless ``fn`` can be submitted: a callable, not an async one."""
    if type(fn) is _FUNCTION:  # the common case, on every submit: one flag test
        if fn.__code__.co_flags & (_CO_COROUTINE | _CO_ASYNC_GENERATOR):
            check_not_coroutine_function(fn, what)  # (raises, with the message)
        return
    if not callable(fn):
        raise TypeError(
            f"{what} must be callable, got {type(fn).__name__} {fn!r:.80}; "
            "pass the function itself, e.g. submit(work, x), not submit(work(x))"
        )
    check_not_coroutine_function(fn, what)


_FUNCTION = type(check_count)  # types.FunctionType, without importing types
_CO_COROUTINE = 0x80 | 0x100  # inspect.CO_COROUTINE | CO_ITERABLE_COROUTINE (no import)
_CO_ASYNC_GENERATOR = 0x200


def check_not_coroutine_function(fn: object, what: str = "fn") -> None:
    """Refuses an ``async def`` function: calling it only makes a coroutine, which a
    worker would return un-run (and which does not pickle)."""
    for _ in range(8):  # through functools.partial and the like
        inner = getattr(fn, "func", None)
        if inner is None or inner is fn:
            break
        fn = inner
    code = getattr(fn, "__code__", None)
    flags = getattr(code, "co_flags", 0)
    if isinstance(flags, int) and flags & (_CO_COROUTINE | _CO_ASYNC_GENERATOR):
        raise TypeError(
            f"{what} {callable_name(fn)} is an async function: calling it only creates a "
            "coroutine, which nothing here would run. Await it in your event loop, or "
            "submit a plain function that runs it (asyncio.run(...))"
        )


#: multiprocessing's start methods (which of them a platform has varies).
START_METHODS = ("fork", "spawn", "forkserver")


def check_start_method(value: str, available: Iterable[str] = START_METHODS) -> str:
    """Refuses a start method name that is not one of ``available``: multiprocessing's
    own error names neither the argument nor the choices."""
    if value not in available:
        choices = ", ".join(repr(m) for m in available)
        raise ValueError(f"mp_context must be a start method name ({choices}), got {value!r}")
    return value


def check_iterables(iterables: tuple[object, ...]) -> None:
    """map()'s ``*iterables``: zip() would refuse a non-iterable too, but its message
    ("'int' object is not iterable") names neither the call nor the argument."""
    for position, it in enumerate(iterables):
        if not is_iterable(it):
            raise TypeError(
                f"map(fn, *iterables): iterables[{position}] must be an iterable (a list, "
                f"a range, a generator...), not {type(it).__name__} {it!r:.80}"
            )


def is_iterable(value: object) -> bool:
    """What iter() accepts: ``__iter__``, or the old ``__getitem__`` protocol."""
    return isinstance(value, Iterable) or getattr(type(value), "__getitem__", None) is not None
