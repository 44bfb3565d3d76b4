"""The tasks tests/test_properties.py submits, in a module of their own.

Worker processes (the process pool's, and a Dask worker's inner pool) import this module
to unpickle the tasks. It imports nothing heavy: the test module imports hypothesis and
pytest, which every new worker (one after each cancel or timeout) would pay for.
"""

from __future__ import annotations

import os
import time

import corral
from corral import testing

#: Kinds a submitted task can be; a map's items use the first three.
MAP_KINDS = ("value", "error", "sleep")
KINDS = (*MAP_KINDS, "gate", "flaky")

#: What a gate task returns when it was asked to stop: never an outcome a future may show.
STOPPED = -1


def run(
    kind: str,
    token: int,
    gate: testing.Gate | None = None,
    seconds: float = 0.0,
    marker: str | None = None,
) -> int:
    """Does what ``kind`` says and returns ``token`` (a number unique to the task), so a
    result handed to the wrong future shows.

    value: returns at once. error: raises ValueError. sleep: sleeps ``seconds`` first.
    gate: waits for ``gate``, or until the task is asked to stop (a thread task cannot be
    killed: without this, a cancelled one would hold shutdown(wait=True) until the gate
    opens). flaky: its first run, in any process, raises ValueError (it creates
    ``marker``), later runs return.
    """
    if kind == "value":
        return token
    if kind == "error":
        raise ValueError(f"task {token} fails")
    if kind == "sleep":
        time.sleep(seconds)  # the task's own work, not synchronisation
        return token
    if kind == "gate":
        assert gate is not None
        deadline = time.monotonic() + 120  # a test that never opens it: end anyway
        while not gate.wait(0.01):
            if corral.cancelled():
                return STOPPED
            if time.monotonic() > deadline:
                raise TimeoutError(f"task {token}: the test never opened the gate")
        return token
    if kind == "flaky":
        assert marker is not None
        try:  # O_EXCL: exactly one run, whichever process it is in, creates it
            os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return token
        raise ValueError(f"task {token} fails its first run")
    raise AssertionError(f"unknown kind {kind!r}")


def run_item(item: tuple[str, int, float]) -> int:
    """A map's item: (kind, token, seconds), one of MAP_KINDS."""
    kind, token, seconds = item
    return run(kind, token, seconds=seconds)
