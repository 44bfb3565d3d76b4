"""Ctrl+C, SIGTERM and interpreter exit, on a real subprocess (see corral/_interrupt.py).

Each test starts ``demo/busy_pool.py`` in a session of its own, waits until every
worker of its pool is busy in a long task, signals the whole process group (as a
terminal's Ctrl+C does) and checks how the program ended: how fast, with what status,
what it printed, and that no worker (nor a worker's child) is left.
"""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import busy_pool
import pytest

from corral import testing

#: From the signal to the program being gone. Idle, that takes a few tenths of a second
#: (DESIGN §4 aims at 1 s; bench/bench_interrupt.py measures it). The tests tell a stop
#: from no stop: without one the tasks would run an hour (process) or 60 s (thread), and
#: a stop that was not forced would wait out the 30 s kill_grace of ``trap_term``. The
#: bound holds on a busy machine and stays under half that grace whatever the slack.
EXIT_WITHIN = min(testing.slack(5.0), 15.0)
#: From the program's exit to its workers (and their children) being gone.
GONE_WITHIN = 10.0
BACKENDS = ["process", "thread"]

# each test starts a program and its pool (0.3-4 s): not for `make quick`
pytestmark = pytest.mark.slow


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Any]:
    runs: list[Any] = []

    def start(backend: str, mode: str) -> Any:
        runs.append(busy_pool.Run(backend, mode, tmp_path))
        return runs[-1]

    yield start
    for run in runs:
        run.kill()


def _assert_at_most_the_parents_traceback(err: str, exception: str) -> None:
    assert err.count("Traceback (most recent call last)") <= 1, err
    assert exception in err, err
    assert "corral/_worker.py" not in err and "ForkServerProcess" not in err, err


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("mode", ["with", "open", "thread"])
@pytest.mark.parametrize("to", ["group", "parent"])
def test_one_ctrl_c_stops_a_busy_pool(start: Any, backend: str, mode: str, to: str) -> None:
    run = start(backend, mode)
    assert run.busy()
    took, status, err = run.end(run.signal(signal.SIGINT, group=to == "group"))
    assert run.workers_left(GONE_WITHIN) == []
    assert status != 0, err
    _assert_at_most_the_parents_traceback(err, "KeyboardInterrupt")
    assert took is not None and took < EXIT_WITHIN, f"exit took {took} s after Ctrl+C\n{err}"


@pytest.mark.parametrize("backend", BACKENDS)
def test_two_quick_ctrl_c_force_the_stop(start: Any, backend: str) -> None:
    # process tasks ignore SIGTERM and kill_grace is 30 s: only the forced stop is quick
    run = start(backend, "trap_term" if backend == "process" else "with")
    assert run.busy()
    took, status, err = run.end(run.signal(signal.SIGINT, signal.SIGINT))
    assert run.workers_left(GONE_WITHIN) == []
    assert status != 0, err
    assert "KeyboardInterrupt" in err and "corral/_worker.py" not in err, err
    assert took is not None and took < EXIT_WITHIN, f"exit took {took} s after two Ctrl+C\n{err}"


def test_a_second_ctrl_c_while_the_first_waits_for_kill_grace_forces(start: Any) -> None:
    run = start("process", "trap_term")  # the tasks ignore SIGTERM; kill_grace is 30 s
    assert run.busy()
    run.signal(signal.SIGINT)
    with pytest.raises(subprocess.TimeoutExpired):
        # still giving the tasks their grace, past FORCE_WINDOW (2 s from the handling of
        # the first press, which a busy machine may delay: hence 2 s more)
        run.proc.wait(4)
    took, status, err = run.end(run.signal(signal.SIGINT))
    assert run.workers_left(GONE_WITHIN) == []
    assert status != 0, err
    assert took is not None and took < EXIT_WITHIN, f"exit took {took} s after Ctrl+C\n{err}"


@pytest.mark.parametrize("backend", BACKENDS)
def test_ctrl_c_cancels_all_work_and_the_pools_stay_usable(
    start: Any, backend: str, tmp_path: Path
) -> None:
    run = start(backend, "catch")  # the program checks this itself, before it exits
    assert run.busy()
    _took, status, err = run.end(run.signal(signal.SIGINT))
    assert status == 0, err
    assert (tmp_path / "survived").read_text() == "cancelled, workers gone, then 32"
    assert run.workers_left(GONE_WITHIN) == []


def test_a_second_ctrl_c_sigkills_workers_that_ignore_sigterm(start: Any, tmp_path: Path) -> None:
    run = start("process", "catch_force")
    assert run.busy()
    run.signal(signal.SIGINT)
    testing.wait_until(lambda: (tmp_path / "caught").exists(), timeout=10)
    _took, status, err = run.end(run.signal(signal.SIGINT))
    assert status == 0, err
    assert (tmp_path / "survived").read_text() == "workers killed"
    assert run.workers_left(GONE_WITHIN) == []


@pytest.mark.parametrize("backend", BACKENDS)
def test_sigterm_ends_the_program_and_its_workers(start: Any, backend: str) -> None:
    run = start(backend, "open")
    assert run.busy()
    took, status, err = run.end(run.signal(signal.SIGTERM))
    assert run.workers_left(GONE_WITHIN) == []
    assert status == -signal.SIGTERM, err
    assert "Traceback" not in err, err
    assert took is not None and took < EXIT_WITHIN, f"exit took {took} s after SIGTERM\n{err}"


def test_exit_through_an_exception_stops_a_pool_left_open(start: Any) -> None:
    run = start("process", "raise")
    took, status, err = run.end(time.monotonic())
    assert run.workers_left(GONE_WITHIN) == []
    assert status == 1, err
    _assert_at_most_the_parents_traceback(err, "ValueError: the program failed")
    assert took is not None and took < EXIT_WITHIN, f"exit took {took} s"  # not the tasks' hour


def test_a_normal_exit_waits_for_a_pool_left_open(start: Any, tmp_path: Path) -> None:
    run = start("process", "finish")
    _took, status, err = run.end(time.monotonic())
    assert status == 0, err
    assert (tmp_path / "finished").read_text() == "xx"  # both tasks ran to their end
    assert run.workers_left(GONE_WITHIN) == []


def test_a_sigint_handler_of_the_program_is_left_alone(start: Any) -> None:
    run = start("process", "own_handler")
    assert run.busy()
    _took, status, err = run.end(run.signal(signal.SIGINT))
    assert status == 7, err  # the program's own handler decided: sys.exit(7)
    assert run.workers_left(GONE_WITHIN) == []
