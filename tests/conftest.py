"""Shared fixtures: the leak check every test runs under, and the backend matrix."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import corral
from corral import testing

#: Every backend the contract suite runs against: name -> factory(**kwargs).
BACKENDS: dict[str, Callable[..., Any]] = {
    "thread": corral.ThreadPoolExecutor,
    "process-forkserver": functools.partial(corral.ProcessPoolExecutor, mp_context="forkserver"),
    "process-spawn": functools.partial(corral.ProcessPoolExecutor, mp_context="spawn"),
    "process-fork": functools.partial(corral.ProcessPoolExecutor, mp_context="fork"),
}


@pytest.fixture(autouse=True)
def no_leaks() -> Iterator[None]:
    """Fails a test that leaves a thread, child process or shared-memory segment behind."""
    before = testing.snapshot()
    yield
    testing.assert_no_leaks(before, timeout=5.0)


@pytest.fixture(params=sorted(BACKENDS))
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def make_executor(backend: str) -> Iterator[Callable[..., Any]]:
    """Makes executors of the backend under test; shuts them all down afterwards."""
    made: list[Any] = []

    def make(*args: Any, **kwargs: Any) -> Any:
        executor = BACKENDS[backend](*args, **kwargs)
        made.append(executor)
        return executor

    yield make
    for executor in made:
        executor.shutdown(wait=True, kill=True)


@pytest.fixture
def gate() -> Iterator[testing.Gate]:
    with testing.Gate() as g:
        yield g


@pytest.fixture
def started() -> Iterator[testing.Gate]:
    with testing.Gate() as g:
        yield g
