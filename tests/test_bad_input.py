"""The bad-input matrix: every public constructor and method, given wrong types and values.

Each row must fail *at the call* with TypeError or ValueError, before any work is queued
or any connection is tried, and the message must name the argument, show the bad value
(for a TypeError, its type is enough: ``must be an int, not str``) and say what is
allowed. Where the stdlib refuses the same call with TypeError or ValueError, corral must
raise the same type (where it accepts it, or fails elsewhere, corral may be stricter).

A row marked ``bug`` is a corral bug: the call is accepted, fails late, or fails with a
message that misleads; it is xfail(strict=True), so fixing it turns the row red until
the mark goes.
"""

from __future__ import annotations

import concurrent.futures as cf
import gc
import math
import re
import threading
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import pytest

import corral
from corral import testing
from tests.conftest import HAVE_DASK


class Row(NamedTuple):
    """One bad call: ``call(env)`` must raise ``error`` with a message that has
    ``name``, ``shows`` and a match of the regex ``allowed``."""

    id: str
    call: Callable[[Any], object]
    error: type[Exception]
    name: str
    shows: str
    allowed: str
    stdlib: Callable[[Any], object] | None = None  # the same call on the stdlib
    bug: str | None = None  # why it is xfail: what corral does instead
    wrong: str | None = None  # a regex of a claim the message must not make


def params(rows: list[Row]) -> list[Any]:
    return [
        pytest.param(
            row,
            id=row.id,
            marks=[pytest.mark.xfail(strict=True, reason=f"corral bug: {row.bug}")]
            if row.bug
            else [],
        )
        for row in rows
    ]


def close(made: object) -> None:
    """Shuts down what a call that should have failed made (an executor, an install)."""
    if isinstance(made, cf.Executor):
        made.shutdown(wait=True, cancel_futures=True)
    elif isinstance(made, corral.Installed):
        made.uninstall()


def refusal(call: Callable[[], object]) -> BaseException | None:
    """The TypeError or ValueError ``call`` raises; None if it returns. Anything else
    (an OSError after trying to connect, an OverflowError deep inside) propagates."""
    try:
        made = call()
    except (TypeError, ValueError) as exc:
        return exc
    close(made)
    return None


def check(row: Row, env: Any, std_env: Any = None) -> None:
    exc = refusal(lambda: row.call(env))
    assert exc is not None, f"{row.id}: accepted"
    message = str(exc)
    assert isinstance(exc, row.error), f"{type(exc).__name__}, not {row.error.__name__}: {exc}"
    assert row.name in message, f"the message does not name {row.name!r}: {message}"
    assert row.shows in message, f"the message does not show {row.shows!r}: {message}"
    assert re.search(row.allowed, message), f"the message does not say what is allowed: {message}"
    if row.wrong is not None:
        assert not re.search(row.wrong, message), f"the message misleads: {message}"
    if row.stdlib is not None:
        try:
            std = refusal(lambda: row.stdlib(std_env))  # type: ignore[misc]
        except Exception:  # it fails otherwise (AttributeError, ...): no constraint
            std = None
        std_type = type(std)
        # a stdlib constructor that failed half-way left pipes that only the collection
        # of the exception's frames closes (ProcessPoolExecutor(max_workers=2.5))
        del std
        gc.collect()
        if std_type is not type(None):  # the stdlib refuses it too: the same way
            assert isinstance(exc, std_type), f"the stdlib raises {std_type}, corral {exc!r}"


# ------------------------------------------------------------------ constructors

POOLS: dict[str, tuple[type[Any], type[Any]]] = {
    "thread": (corral.ThreadPoolExecutor, cf.ThreadPoolExecutor),
    "process": (corral.ProcessPoolExecutor, cf.ProcessPoolExecutor),
}


def pool_row(
    pool: str,
    kwargs: dict[str, Any],
    error: type[Exception],
    name: str,
    shows: str,
    allowed: str,
    *,
    bug: str | None = None,
    wrong: str | None = None,
) -> Row:
    """A row that makes the pool with ``kwargs`` (and compares with the stdlib's
    constructor, where it takes all of them)."""
    ours, stdlib = POOLS[pool]
    std_names = {"max_workers", "initializer", "initargs", "thread_name_prefix"}
    std_names |= {"mp_context", "max_tasks_per_child"} if pool == "process" else set()
    std = (lambda _: stdlib(**kwargs)) if set(kwargs) <= std_names else None
    args = ", ".join(f"{k}={getattr(v, '__name__', None) or repr(v)}" for k, v in kwargs.items())
    call = lambda _: ours(**kwargs)  # noqa: E731
    return Row(f"{ours.__name__}({args})", call, error, name, shows, allowed, std, bug, wrong)


#: What task_timeout's messages said of values below 0: that 0 is allowed. It is not.
ZERO_ALLOWED = r">= 0 seconds"
#: What kill_grace's and connect_timeout's messages said: that None is allowed. It is not.
NONE_ALLOWED = r"or None|pass None"


def _constructor_rows() -> list[Row]:
    rows = []
    for pool in POOLS:
        rows += [
            pool_row(pool, {"max_workers": "2"}, TypeError, "max_workers", "str", "an int"),
            pool_row(pool, {"max_workers": 2.5}, TypeError, "max_workers", "float", "an int"),
            pool_row(pool, {"max_workers": True}, TypeError, "max_workers", "bool", "an int"),
            pool_row(pool, {"max_workers": 0}, ValueError, "max_workers", "0", "greater than 0"),
            pool_row(pool, {"max_workers": -1}, ValueError, "max_workers", "-1", "greater than 0"),
            pool_row(pool, {"min_workers": -1}, ValueError, "min_workers", "-1", ">= 0"),
            pool_row(pool, {"min_workers": "1"}, TypeError, "min_workers", "str", "an int"),
            pool_row(
                pool,
                {"max_workers": 1, "min_workers": 2},
                ValueError,
                "min_workers",
                "2",
                "must not exceed max_workers",
            ),
            pool_row(pool, {"idle_timeout": -1}, ValueError, "idle_timeout", "-1", ">= 0"),
            pool_row(pool, {"idle_timeout": math.nan}, ValueError, "idle_timeout", "nan", ">= 0"),
            pool_row(
                pool, {"idle_timeout": "5"}, TypeError, "idle_timeout", "str", "number of seconds"
            ),
            pool_row(pool, {"max_pending": 0}, ValueError, "max_pending", "0", ">= 1"),
            pool_row(pool, {"max_pending": "5"}, TypeError, "max_pending", "str", "an int"),
            pool_row(pool, {"max_pending": 1.5}, TypeError, "max_pending", "float", "an int"),
            pool_row(pool, {"task_timeout": 0}, ValueError, "task_timeout", "0", "> 0"),
            pool_row(
                pool, {"task_timeout": "5"}, TypeError, "task_timeout", "str", "number of seconds"
            ),
            pool_row(
                pool,
                {"task_timeout": -1},
                ValueError,
                "task_timeout",
                "-1",
                "> 0",
                wrong=ZERO_ALLOWED,
            ),
            pool_row(
                pool,
                {"task_timeout": math.nan},
                ValueError,
                "task_timeout",
                "nan",
                "> 0",
                wrong=ZERO_ALLOWED,
            ),
            pool_row(pool, {"retries": -1}, ValueError, "retries", "-1", ">= 0"),
            pool_row(pool, {"retries": "3"}, TypeError, "retries", "str", "an int"),
            pool_row(pool, {"retries": 1.5}, TypeError, "retries", "float", "an int"),
            pool_row(pool, {"hooks": 42}, TypeError, "hooks", "42", "corral.Hooks"),
            pool_row(pool, {"initializer": 5}, TypeError, "initializer", "int", "callable"),
        ]
    noop = testing.noop
    rows += [
        pool_row(
            "thread",
            {"thread_name_prefix": 5},
            TypeError,
            "thread_name_prefix",
            "int",
            "a str",
        ),
        pool_row(
            "thread",
            {"initializer": noop, "initargs": 5},
            TypeError,
            "initargs",
            "int",
            "a tuple",
        ),
        pool_row(
            "thread",
            {"initargs": 5},
            TypeError,
            "initargs",
            "int",
            "a tuple",
        ),
        pool_row(
            "process", {"initializer": noop, "initargs": 5}, TypeError, "initargs", "int", "a tuple"
        ),
        pool_row(
            "process",
            {"initializer": noop, "initargs": "ab"},
            TypeError,
            "initargs",
            "str",
            "a tuple",
        ),
        pool_row(
            "process",
            {"initargs": 5},
            TypeError,
            "initargs",
            "int",
            "a tuple",
        ),
        pool_row("process", {"mp_context": 5}, TypeError, "mp_context", "int", "start method name"),
        pool_row(
            "process",
            {"mp_context": "nonsense"},
            ValueError,
            "mp_context",
            "'nonsense'",
            "forkserver",
        ),
        pool_row(
            "process", {"max_tasks_per_child": 0}, ValueError, "max_tasks_per_child", "0", ">= 1"
        ),
        pool_row(
            "process",
            {"max_tasks_per_child": "1"},
            TypeError,
            "max_tasks_per_child",
            "str",
            "an int",
        ),
        pool_row(
            "process",
            {"max_memory_per_child": 0},
            ValueError,
            "max_memory_per_child",
            "0",
            ">= 1",
        ),
        pool_row(
            "process",
            {"max_memory_per_child": "1GB"},
            TypeError,
            "max_memory_per_child",
            "str",
            "an int",
        ),
        pool_row(
            "process", {"kill_grace": None}, TypeError, "kill_grace", "None", "number of seconds"
        ),
        pool_row(
            "process",
            {"kill_grace": -1},
            ValueError,
            "kill_grace",
            "-1",
            ">= 0",
            wrong=NONE_ALLOWED,
        ),
        pool_row(
            "process",
            {"kill_grace": "1"},
            TypeError,
            "kill_grace",
            "str",
            "number of seconds",
            wrong=NONE_ALLOWED,
        ),
        pool_row(
            "process",
            {"forward_logging": "yes"},
            TypeError,
            "forward_logging",
            "str",
            "True or False",
        ),
    ]
    return rows


@pytest.mark.parametrize("row", params(_constructor_rows()))
def test_constructor_refuses(row: Row) -> None:
    check(row, None)


# ------------------------------------------------------------------ DaskExecutor

#: Nothing listens there (and nothing tries: see test_dask_executor_refuses_...).
NOWHERE = "tcp://127.0.0.1:9"


def _dask(**kwargs: Any) -> Callable[[Any], object]:
    address = kwargs.pop("address", NOWHERE)
    return lambda _: corral.DaskExecutor(address, **kwargs)


DASK_ROWS = [
    Row("max_workers=0", _dask(max_workers=0), ValueError, "max_workers", "0", "greater than 0"),
    Row("max_workers='2'", _dask(max_workers="2"), TypeError, "max_workers", "str", "an int"),
    Row("max_pending=0", _dask(max_pending=0), ValueError, "max_pending", "0", ">= 1"),
    Row("task_timeout=0", _dask(task_timeout=0), ValueError, "task_timeout", "0", "> 0"),
    Row("retries=-1", _dask(retries=-1), ValueError, "retries", "-1", ">= 0"),
    Row("prefetch=-1", _dask(prefetch=-1), ValueError, "prefetch", "-1", ">= 0"),
    Row("prefetch='1'", _dask(prefetch="1"), TypeError, "prefetch", "str", "an int"),
    Row("hooks=42", _dask(hooks=42), TypeError, "hooks", "42", "corral.Hooks"),
    Row("address=5", _dask(address=5), TypeError, "address", "int", "a string"),
    Row(
        "address and client",
        _dask(client=object()),
        ValueError,
        "client",
        "",
        "either a scheduler address or a client",
    ),
    Row(
        "connect_timeout=None",
        _dask(connect_timeout=None),
        TypeError,
        "connect_timeout",
        "None",
        "number of seconds",
    ),
    Row(
        "connect_timeout=-1",
        _dask(connect_timeout=-1),
        ValueError,
        "connect_timeout",
        "-1",
        ">= 0",
        wrong=NONE_ALLOWED,
    ),
    Row(
        "connect_timeout='1'",
        _dask(connect_timeout="1"),
        TypeError,
        "connect_timeout",
        "str",
        "number of seconds",
        wrong=NONE_ALLOWED,
    ),
    Row(
        "client=object()",
        _dask(address=None, client=object()),
        TypeError,
        "client",
        "object",
        "distributed.Client",
    ),
    Row(
        "mp_context=5",
        _dask(mp_context=5),
        TypeError,
        "mp_context",
        "int",
        "start method",
    ),
    Row(
        "mp_context='nonsense'",
        _dask(mp_context="nonsense"),
        ValueError,
        "mp_context",
        "'nonsense'",
        "forkserver",
    ),
    Row(
        "n_workers=-1",
        _dask(n_workers=-1),
        ValueError,
        "n_workers",
        "-1",
        ">= 1",
    ),
    Row(
        "threads_per_worker='x'",
        _dask(threads_per_worker="x"),
        TypeError,
        "threads_per_worker",
        "str",
        "an int",
    ),
    Row(
        "security=5",
        _dask(security=5),
        TypeError,
        "security",
        "int",
        "Security",
    ),
]


class Connecting(Exception):
    """DaskExecutor got as far as making its Client: it checked too late."""


@pytest.mark.skipif(not HAVE_DASK, reason="needs distributed (the dev extra)")
@pytest.mark.parametrize("row", params(DASK_ROWS))
def test_dask_executor_refuses_before_connecting(row: Row, monkeypatch: pytest.MonkeyPatch) -> None:
    import distributed

    real = distributed.Client

    def client(address: object, *args: Any, **kwargs: Any) -> Any:
        # a Client that never connects: refusing now is the row's point (and a failed
        # connect leaves distributed's "IO loop" thread behind). A non-str address is
        # refused by distributed itself before any connecting: that one goes through
        if isinstance(address, str):
            raise Connecting(f"DaskExecutor made its Client({address!r}) before refusing")
        return real(address, *args, **kwargs)

    monkeypatch.setattr(distributed, "Client", client)
    check(row, None)


# ------------------------------------------------------------------ executor methods


def _method_rows() -> list[Row]:
    identity = testing.identity
    rows = [
        Row("submit(5)", lambda ex: ex.submit(5), TypeError, "fn", "int", "callable"),
        Row("submit_nowait(5)", lambda ex: ex.submit_nowait(5), TypeError, "fn", "int", "callable"),
        Row(
            "options().submit(5)",
            lambda ex: ex.options(priority=1).submit(5),
            TypeError,
            "fn",
            "int",
            "callable",
        ),
        Row("map(5, [1])", lambda ex: ex.map(5, [1]), TypeError, "fn", "int", "callable"),
        Row(
            "map(fn, 5)",
            lambda ex: ex.map(identity, 5),
            TypeError,
            "iterables",
            "int",
            "iterable",
            stdlib=lambda sx: sx.map(identity, 5),
        ),
        Row(
            "map(timeout=-1)",
            lambda ex: ex.map(identity, [1], timeout=-1),
            ValueError,
            "timeout",
            "-1",
            ">= 0",
        ),
        Row(
            "map(timeout=nan)",
            lambda ex: ex.map(identity, [1], timeout=math.nan),
            ValueError,
            "timeout",
            "nan",
            ">= 0",
        ),
        Row(
            "map(timeout='1')",
            lambda ex: ex.map(identity, [1], timeout="1"),
            TypeError,
            "timeout",
            "str",
            "number of seconds",
        ),
        Row(
            "map(chunksize=0)",
            lambda ex: ex.map(identity, [1], chunksize=0),
            ValueError,
            "chunksize",
            "0",
            ">= 1",
            stdlib=lambda sx: sx.map(identity, [1], chunksize=0),
        ),
        Row(
            "map(chunksize='1')",
            lambda ex: ex.map(identity, [1], chunksize="1"),
            TypeError,
            "chunksize",
            "str",
            "an int",
        ),
        Row(
            "map(chunksize=1.5)",
            lambda ex: ex.map(identity, [1], chunksize=1.5),
            TypeError,
            "chunksize",
            "float",
            "an int",
        ),
        Row(
            "map(buffersize=0)",
            lambda ex: ex.map(identity, [1], buffersize=0),
            ValueError,
            "buffersize",
            "0",
            ">= 1",
        ),
        Row(
            "map(buffersize=2.0)",
            lambda ex: ex.map(identity, [1], buffersize=2.0),
            TypeError,
            "buffersize",
            "float",
            "an int",
        ),
        Row(
            "map(progress='yes')",
            lambda ex: ex.map(identity, [1], progress="yes"),
            TypeError,
            "progress",
            "str",
            "True, False or a corral.Progress",
        ),
        Row(
            "map(ordered='no')",
            lambda ex: ex.map(identity, [1], ordered="no"),
            TypeError,
            "ordered",
            "str",
            "True or False",
        ),
        Row(
            "options().map(chunksize=0)",
            lambda ex: ex.options(priority=1).map(identity, [1], chunksize=0),
            ValueError,
            "chunksize",
            "0",
            ">= 1",
        ),
        Row(
            "options(tiemout=1)",
            lambda ex: ex.options(tiemout=1),
            TypeError,
            "unknown option",
            "tiemout",
            "valid options are",
        ),
        Row(
            "options(priority='high')",
            lambda ex: ex.options(priority="high"),
            TypeError,
            "priority",
            "str",
            "an int",
        ),
        Row(
            "options(priority=1.5)",
            lambda ex: ex.options(priority=1.5),
            TypeError,
            "priority",
            "float",
            "an int",
        ),
        Row(
            "options(retries=-1)",
            lambda ex: ex.options(retries=-1),
            ValueError,
            "retries",
            "-1",
            ">= 0",
        ),
        Row(
            "options(retries=1.5)",
            lambda ex: ex.options(retries=1.5),
            TypeError,
            "retries",
            "float",
            "an int",
        ),
        Row(
            "options(retry_on=ValueError('x'))",
            lambda ex: ex.options(retry_on=ValueError("x")),
            TypeError,
            "retry_on",
            "ValueError('x')",
            "exception classes",
        ),
        Row(
            "options(retry_on='ValueError')",
            lambda ex: ex.options(retry_on="ValueError"),
            TypeError,
            "retry_on",
            "'ValueError'",
            "exception classes",
        ),
        Row("options(name=5)", lambda ex: ex.options(name=5), TypeError, "name", "int", "a str"),
        Row(
            "options(task_timeout=0)",
            lambda ex: ex.options(task_timeout=0),
            ValueError,
            "task_timeout",
            "0",
            "> 0",
        ),
        Row(
            "options(task_timeout='5')",
            lambda ex: ex.options(task_timeout="5"),
            TypeError,
            "task_timeout",
            "str",
            "number of seconds",
        ),
        Row(
            "options(task_timeout=-1)",
            lambda ex: ex.options(task_timeout=-1),
            ValueError,
            "task_timeout",
            "-1",
            "> 0",
            wrong=ZERO_ALLOWED,
        ),
        Row(
            "options().options(retries='x')",
            lambda ex: ex.options(priority=1).options(retries="x"),
            TypeError,
            "retries",
            "str",
            "an int",
        ),
        Row(
            "TaskGroup(ex, progress='yes')",
            lambda ex: corral.TaskGroup(ex, progress="yes"),
            TypeError,
            "progress",
            "str",
            "True, False or a corral.Progress",
        ),
        Row(
            "TaskGroup(ex).submit(5)",
            lambda ex: corral.TaskGroup(ex).submit(5),
            TypeError,
            "fn",
            "int",
            "callable",
        ),
    ]
    for flag in ("wait", "cancel_futures", "kill"):
        rows.append(
            Row(
                f"shutdown({flag}='no')",
                lambda ex, flag=flag: ex.shutdown(**{flag: "no"}),
                TypeError,
                flag,
                "str",
                "True or False",
            )
        )
    return rows


@pytest.fixture(params=sorted(POOLS))
def pools(request: pytest.FixtureRequest) -> Iterator[tuple[Any, Any]]:
    """A corral pool and the stdlib's of the same kind (neither runs anything here)."""
    ours, stdlib = POOLS[request.param]
    with ours(1) as ex, stdlib(1) as sx:
        yield ex, sx


@pytest.mark.parametrize("row", params(_method_rows()))
def test_method_refuses(row: Row, pools: tuple[Any, Any]) -> None:
    ex, sx = pools
    check(row, ex, sx)
    stats = ex.statistics()
    assert stats.pending + stats.running + stats.done == 0, f"work was queued: {stats}"


# ------------------------------------------------------------------ functions and futures


@pytest.fixture
def futures() -> tuple[corral.Future[int], corral.Future[int]]:
    """A finished future and one that never finishes (neither has an executor)."""
    done: corral.Future[int] = corral.Future()
    done.set_result(1)
    return done, corral.Future()


def _function_rows() -> list[Row]:
    rows = []
    for fn, std in ((corral.wait, cf.wait), (corral.as_completed, cf.as_completed)):
        name = fn.__name__
        rows += [
            Row(
                f"{name}(future)",
                lambda fs, fn=fn: fn(fs[0]),
                TypeError,
                "iterable of futures",
                "single future",
                rf"{name}\(\[fut\]\)",
                stdlib=lambda fs, std=std: list(std(fs[0])),
            ),
            Row(
                f"{name}([5])",
                lambda fs, fn=fn: fn([5]),
                TypeError,
                "futures",
                "int",
                "futures",
            ),
            Row(
                f"{name}(5)",
                lambda fs, fn=fn: fn(5),
                TypeError,
                "futures",
                "int",
                "iterable",
                stdlib=lambda fs, std=std: list(std(5)),
            ),
            Row(
                f"{name}(timeout=-1)",
                lambda fs, fn=fn: fn(fs[:1], timeout=-1),
                ValueError,
                "timeout",
                "-1",
                ">= 0",
            ),
            Row(
                f"{name}(timeout=nan)",
                lambda fs, fn=fn: fn(fs[:1], timeout=math.nan),
                ValueError,
                "timeout",
                "nan",
                ">= 0",
            ),
            Row(
                f"{name}(timeout='1')",
                lambda fs, fn=fn: fn(fs[:1], timeout="1"),
                TypeError,
                "timeout",
                "str",
                "number of seconds",
            ),
        ]
    rows += [
        Row(
            "wait(return_when='bogus')",
            lambda fs: corral.wait(fs[:1], return_when="bogus"),
            ValueError,
            "return_when",
            "'bogus'",
            "FIRST_COMPLETED",
        ),
        Row(
            "as_completed(progress='yes')",
            lambda fs: corral.as_completed(fs[:1], progress="yes"),
            TypeError,
            "progress",
            "str",
            "True, False or a corral.Progress",
        ),
        Row(
            "TaskGroup(5)",
            lambda fs: corral.TaskGroup(5),
            TypeError,
            "executor",
            "int",
            "an executor",
        ),
        Row(
            "install(future='yes')",
            lambda fs: corral.install(future="yes"),
            TypeError,
            "future",
            "str",
            "True or False",
        ),
        Row(
            "Hooks(on_task_end=42)",
            lambda fs: corral.Hooks(on_task_end=42),
            TypeError,
            "on_task_end",
            "int",
            "callable",
        ),
        Row(
            "Progress(style='fancy')",
            lambda fs: corral.Progress(style="fancy"),
            ValueError,
            "style",
            "'fancy'",
            "'auto', 'tqdm', 'text' or 'none'",
        ),
        Row(
            "Progress(total='x')",
            lambda fs: corral.Progress(total="x"),
            TypeError,
            "total",
            "str",
            "an int",
        ),
    ]
    for method in ("result", "exception"):
        rows += [
            Row(
                f"pending.{method}(timeout='1')",
                lambda fs, m=method: getattr(fs[1], m)(timeout="1"),
                TypeError,
                "timeout",
                "str",
                "number of seconds",
            ),
            Row(
                f"done.{method}(timeout='1')",
                lambda fs, m=method: getattr(fs[0], m)(timeout="1"),
                TypeError,
                "timeout",
                "str",
                "number of seconds",
            ),
            Row(
                f"pending.{method}(timeout=nan)",
                lambda fs, m=method: getattr(fs[1], m)(timeout=math.nan),
                ValueError,
                "timeout",
                "nan",
                ">= 0",
            ),
        ]
    return rows


@pytest.mark.parametrize("row", params(_function_rows()))
def test_function_refuses(row: Row, futures: tuple[corral.Future[int], corral.Future[int]]) -> None:
    std: tuple[cf.Future[int], cf.Future[int]] = (cf.Future(), cf.Future())
    std[0].set_result(1)
    check(row, list(futures), list(std))


def test_a_negative_result_timeout_is_the_stdlibs() -> None:
    """Not a refusal: ``result(timeout=-1)`` waits no time and raises TimeoutError, as
    the stdlib's does (code that passes ``deadline - now()`` relies on it). wait() and
    as_completed() refuse it instead (the rows above)."""
    futures: tuple[cf.Future[int], ...] = (corral.Future(), cf.Future())
    for fut in futures:
        with pytest.raises(TimeoutError):
            fut.result(timeout=-1)
        with pytest.raises(TimeoutError):
            fut.exception(timeout=-1)


@pytest.mark.parametrize("timeout", [math.inf, 1e300, 10**400], ids=["inf", "1e300", "10**400"])
def test_a_huge_result_timeout_waits_without_a_limit(timeout: float) -> None:
    fut: corral.Future[int] = corral.Future()

    def finish(value: int) -> None:
        try:
            fut.set_result(value)
        except cf.InvalidStateError:  # the other side set it first
            pass

    def finish_once_waited() -> None:
        # once the caller waits (not before: then result() would not wait at all)
        waiting = fut._condition._waiters  # type: ignore[attr-defined]
        testing.wait_until(lambda: waiting or fut.done(), 10, message="the wait")
        finish(7)

    finisher = threading.Thread(target=finish_once_waited)
    finisher.start()
    try:
        assert fut.result(timeout=timeout) == 7
    finally:
        finish(0)  # (it raised: the finisher must not wait for a wait that never came)
        finisher.join()


# ------------------------------------------------------------------ what must still pass

# Values real programs pass that the stdlib takes: the checks above must let them
# through, with the stdlib's meaning.


def test_stdlib_flags_keep_their_meaning() -> None:
    """shutdown()'s flags: bools, 0 and 1, None (found in real code; the stdlib reads
    it as False) and numpy's bools are taken, as the stdlib takes them."""
    np = pytest.importorskip("numpy")
    for flag in (True, False, 0, 1, None, np.bool_(True), np.bool_(False)):
        pool = corral.ThreadPoolExecutor(1)  # (the front checks them, for every pool)
        fut = pool.submit(testing.identity, 3)
        pool.shutdown(wait=flag, cancel_futures=flag, kill=flag)
        pool.shutdown(wait=True)  # (joins what wait=False left)
        if not flag:
            assert fut.result(timeout=testing.slack(10)) == 3, flag


def test_a_flag_of_another_type_shuts_nothing_down() -> None:
    with corral.ThreadPoolExecutor(1) as ex:
        with pytest.raises(TypeError, match="kill must be True or False"):
            ex.shutdown(wait=True, kill=2)
        assert ex.submit(testing.identity, 4).result(timeout=testing.slack(10)) == 4


def test_numbers_of_other_types_are_seconds_and_counts() -> None:
    """numpy's ints and floats, and Fractions, work as timeouts (and numpy's ints as
    counts) wherever the stdlib takes them."""
    np = pytest.importorskip("numpy")
    from fractions import Fraction

    with corral.ThreadPoolExecutor(np.int64(2), max_pending=np.int32(4)) as ex:
        fut = ex.submit(testing.identity, 5)
        for timeout in (np.int64(10), np.float32(10.0), np.float64(10.0), Fraction(21, 2), 10):
            assert fut.result(timeout=timeout) == 5
            assert fut.exception(timeout=timeout) is None
            assert corral.wait([fut], timeout=timeout).done == {fut}
            assert list(corral.as_completed([fut], timeout=timeout)) == [fut]
            assert list(ex.map(testing.identity, [1, 2], timeout=timeout)) == [1, 2]
        assert ex._max_workers == 2 and type(ex._max_workers) is int


@pytest.mark.parametrize("timeout", [-1, -0.5, 0, 0.0])
def test_a_result_timeout_at_or_below_zero_does_not_wait(timeout: float) -> None:
    """As the stdlib: TimeoutError at once, for ints and floats alike."""
    fut: corral.Future[int] = corral.Future()
    with pytest.raises(TimeoutError):
        fut.result(timeout=timeout)
    fut.set_result(1)
    assert fut.result(timeout=timeout) == 1


def test_thread_name_prefix_none_and_initargs_of_any_iterable_are_taken() -> None:
    """The stdlib's thread pool takes thread_name_prefix=None (its default names) and
    initargs as a list: so does corral."""
    seen: list[tuple[int, int]] = []

    def init(a: int, b: int) -> None:
        seen.append((a, b))

    with corral.ThreadPoolExecutor(
        1, thread_name_prefix=None, initializer=init, initargs=[1, 2]
    ) as ex:
        name = ex.submit(lambda: threading.current_thread().name).result()
    assert name.startswith("ThreadPoolExecutor-")
    assert seen == [(1, 2)]


def test_an_int_too_large_for_a_float_is_forever_not_overflow() -> None:
    huge = 10**400  # float(huge) raises OverflowError
    with corral.ThreadPoolExecutor(1, task_timeout=huge, idle_timeout=huge) as ex:
        fut = ex.options(task_timeout=huge).submit(testing.identity, 6)
        assert corral.wait([fut], timeout=huge).done == {fut}
        assert list(ex.map(testing.identity, [7], timeout=huge)) == [7]
        assert fut.result(timeout=huge) == 6
