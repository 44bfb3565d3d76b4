"""Checks of public arguments, at the call site, so that bad input fails before any
work is queued and the message says what to pass instead."""

from __future__ import annotations

import math
import os


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
    allowed, else ``FOREVER``.

    Raises:
        TypeError: not a number (or None where None is not allowed).
        ValueError: negative or NaN.
    """
    if value is None:
        if allow_none:
            return None
        raise TypeError(f"{name} must be a number of seconds, not None")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        allowed = "a number of seconds or None" if allow_none else "a number of seconds"
        raise TypeError(f"{name} must be {allowed}, not {type(value).__name__} {value!r}")
    if math.isnan(value) or value < 0:
        hint = "; pass None to wait without a limit" if allow_none else ""
        raise ValueError(f"{name} must be >= 0 seconds, got {value!r}{hint}")
    if value >= FOREVER:
        return None if allow_none else FOREVER
    return float(value)


def check_bool(name: str, value: object) -> bool:
    """Refuses anything but True or False (a truthy string would silently mean True)."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, not {type(value).__name__} {value!r}")
    return value


def check_count(name: str, value: object, *, minimum: int, allow_none: bool = False) -> int | None:
    """Checks that ``value`` is an int >= ``minimum`` (or None where allowed)."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def cpu_count() -> int:
    """CPUs this process may use (``os.process_cpu_count`` where Python has it)."""
    return getattr(os, "process_cpu_count", os.cpu_count)() or 1


def check_initializer(initializer: object) -> None:
    if initializer is not None and not callable(initializer):
        raise TypeError(f"initializer must be a callable, got {type(initializer).__name__}")


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
