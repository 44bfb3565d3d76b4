"""Random operation sequences on each backend, checked against what each task did.

Each hypothesis example makes a pool (1-3 workers, maybe a small ``max_pending``), runs a
random program on it and ends it with a random ``shutdown(wait, cancel_futures, kill)``.
The operations: submit of a value, an exception, a sleep, a gate-blocked task or a task
that fails its first run; ``submit_nowait``; ``options(priority, retries, retry_on,
task_timeout)``; ``cancel()`` of a random future; ``map`` with or without ``buffersize``,
ordered or not, chunked or not; ``wait()`` and ``as_completed()`` of random futures with
a short timeout; ``statistics()``; opening the gate. Checked:

* every future ends: at once after ``shutdown(wait=True)``, else within BOUND of the gate
  opening; every map's iteration ends (its ``timeout`` is BOUND);
* each outcome is what its task did: its own token as value, its own exception,
  CancelledError only where a ``cancel()`` of it returned True or a stopping shutdown
  found it unfinished, TaskTimeout only under the short ``task_timeout``; ``cancel()``
  returns False only for a finished future; ``attempts`` agree with ``retries``; a map
  yields its own values, in order if ordered, up to its first failing item;
* ``wait()`` and ``as_completed()`` return each future once, only finished ones as done,
  and give up only once their timeout has passed;
* ``statistics()`` adds up at any moment (pending + running + retrying + ended = tasks
  accepted; no more running than workers, no more pending than ``max_pending``) and at
  the end (nothing pending, running or retrying; completed + failed + cancelled = tasks
  accepted, each counted once however often it ran; ``retried`` and ``timed_out`` agree
  with the futures; nothing crashed);
* no thread of corral's dies of an exception, and nothing leaks: each example shuts its
  pool down and waits until no thread, process, pipe or shared-memory segment started
  since the example began is left (conftest's autouse check runs once per test function,
  not per example).

The bugs this test found are reproduced at the end of the file (xfail until fixed);
where one would fail an example, the runner steps around it, saying which.

The example counts keep the file within about 30 s on a loaded 2-core machine; raise
them for a longer hunt: ``PROPERTY_EXAMPLES=1500 pytest tests/test_properties.py``
(about 3 minutes).
"""

from __future__ import annotations

import collections
import dataclasses
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import corral
from corral import testing
from corral._core import Core
from tests import property_tasks as tasks
from tests.conftest import HAVE_DASK, DaskCluster, _dask_threads

#: Seconds any future or map may take to end once nothing holds it back (generous: the
#: machine is shared; a healthy run ends everything within a second or two).
BOUND = 30.0
#: The task_timeout a gate task overruns (a quick task may too, on a loaded machine).
SHORT = 0.05
#: A task_timeout no task of an example comes near.
LONG = 600.0

#: Scales the example counts (120 thread-pool examples, 60 process-pool and 25 Dask ones
#: by default): PROPERTY_EXAMPLES=1000 runs ten times as many of each.
SCALE = int(os.environ.get("PROPERTY_EXAMPLES", "100")) / 100


def examples(count: int) -> int:
    return max(1, round(count * SCALE))


# ------------------------------------------------------------------ the programs


class Submit(NamedTuple):
    kind: str
    nowait: bool
    options: dict[str, Any]
    seconds: float


class Map(NamedTuple):
    items: list[tuple[str, float]]  # (kind, seconds) per item; tokens come when it runs
    buffersize: int | None
    ordered: bool
    chunksize: int
    options: dict[str, Any]


class Cancel(NamedTuple):
    which: int  # of the futures submitted so far, modulo their number


class Wait(NamedTuple):
    indices: list[int]  # futures submitted so far, modulo their number
    timeout: float
    return_when: str


class AsCompleted(NamedTuple):
    indices: list[int]
    timeout: float


class Stats(NamedTuple):
    pass


class OpenGate(NamedTuple):
    pass


Op = Submit | Map | Cancel | Wait | AsCompleted | Stats | OpenGate


class End(NamedTuple):
    open_gate_first: bool  # forced when shutdown would wait for gate tasks
    consume_maps_first: bool  # only once the gate is open (map items queue behind it)
    wait: bool
    cancel_futures: bool
    kill: bool


class Program(NamedTuple):
    max_workers: int
    max_pending: int | None
    ops: list[Op]
    end: End


SECONDS = st.sampled_from([0.001, 0.1])  # the sleep kind's; the long one overruns SHORT
#: How long a wait() or as_completed() of the program waits: no time, or long enough for
#: the short task_timeout of running tasks to fire meanwhile.
WAIT = st.sampled_from([0.0, 0.1])

TASK_OPTIONS = st.fixed_dictionaries(
    {},
    optional={
        "priority": st.integers(-2, 2),
        "retries": st.integers(0, 2),
        "retry_on": st.sampled_from([(ValueError,), (ValueError, corral.TaskTimeout)]),
        "task_timeout": st.sampled_from([SHORT, LONG]),
    },
)
MAP_OPTIONS = st.fixed_dictionaries(
    {},
    optional={"priority": st.integers(-2, 2), "task_timeout": st.sampled_from([SHORT, LONG])},
)

#: Each operation with its weight: submits and cancels make the states the others look at.
WEIGHTED: list[tuple[int, st.SearchStrategy[Any]]] = [
    (
        5,
        st.builds(
            Submit,
            kind=st.sampled_from(tasks.KINDS),
            nowait=st.booleans(),
            options=TASK_OPTIONS,
            seconds=SECONDS,
        ),
    ),
    (2, st.builds(Cancel, which=st.integers(0, 100))),
    (
        1,
        st.builds(
            Map,
            # values mostly: an error ends an ordered map's iteration there
            items=st.lists(
                st.tuples(st.sampled_from(["value", "value", "sleep", "error"]), SECONDS),
                max_size=6,
            ),
            buffersize=st.none() | st.integers(1, 3),
            ordered=st.booleans(),
            chunksize=st.sampled_from([1, 2]),
            options=MAP_OPTIONS,
        ),
    ),
    (
        1,
        st.builds(
            Wait,
            indices=st.lists(st.integers(0, 100), max_size=4),
            timeout=WAIT,
            return_when=st.sampled_from(
                [corral.FIRST_COMPLETED, corral.FIRST_EXCEPTION, corral.ALL_COMPLETED]
            ),
        ),
    ),
    (1, st.builds(AsCompleted, indices=st.lists(st.integers(0, 100), max_size=4), timeout=WAIT)),
    (1, st.just(Stats())),
    (1, st.just(OpenGate())),
]
# (one_of does not weigh: the same strategy listed twice counts once)
OPS: st.SearchStrategy[Op] = st.sampled_from(
    [strategy for weight, strategy in WEIGHTED for _ in range(weight)]
).flatmap(lambda strategy: strategy)

PROGRAMS = st.builds(
    Program,
    max_workers=st.integers(1, 3),
    max_pending=st.none() | st.integers(1, 3),
    ops=st.lists(OPS, min_size=1, max_size=16),
    end=st.builds(End, *[st.booleans()] * 5),
)


# ------------------------------------------------------------------ running one


@dataclasses.dataclass
class Task:
    kind: str
    token: int
    options: dict[str, Any]
    fut: corral.Future[int]
    cancels: list[bool] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class MapRun:
    op: Map
    tokens: list[int]
    it: Any
    got: list[int] = dataclasses.field(default_factory=list)
    end: BaseException | None = None
    consumed_after_shutdown: bool = False
    started: float = dataclasses.field(default_factory=time.monotonic)  # map() was called


class Accepted:
    """Counts the tasks the pool's core accepted: what ``statistics()`` counts.

    map() submits one task per item, or per chunk of items on the process pool (sized
    from run times), so only the core knows how many; this wraps its submit, through
    which every front call (submit, submit_nowait, options(), map's units) goes.
    """

    def __init__(self, core: Any) -> None:
        self.count = 0
        self._lock = threading.Lock()
        self._core = core
        submit = core.submit

        def counting(*args: Any, **kwargs: Any) -> Any:
            fut = submit(*args, **kwargs)  # raises (QueueFull, shutdown) if not accepted
            with self._lock:
                self.count += 1
            return fut

        core.submit = counting  # (an instance attribute: the class keeps its own)

    def remove(self) -> None:
        """Drops the wrapper (it and the core refer to each other)."""
        vars(self._core).pop("submit", None)


class Runner:
    """Runs one program on one fresh pool and checks it (see the module docstring)."""

    def __init__(
        self,
        make: Callable[..., Any],
        program: Program,
    ) -> None:
        self.program = program
        self.ex = make(program.max_workers, max_pending=program.max_pending)
        self.accepted = Accepted(self.ex._core)
        self.gate = testing.Gate()
        self.markers = tempfile.mkdtemp(prefix="corral-flaky-")
        self.tokens = iter(range(1, 1_000_000))
        self.tasks: list[Task] = []
        self.maps: list[MapRun] = []
        self.feeders = 0  # maps without buffersize: their feeder threads submit
        self.short_used = False
        self.retries_used = False
        self.trace: list[str] = []  # what happened, for the failure message

    def close(self) -> None:
        """Whatever happened: the gate opens, the pool is gone, the files too."""
        self.gate.open()
        try:
            self.ex.shutdown(wait=True, kill=True)
        finally:
            self.accepted.remove()
            self.gate.close()
            shutil.rmtree(self.markers, ignore_errors=True)

    def fail(self, message: str) -> None:
        pytest.fail(f"{message}\n  program: {self.program}\n  trace: {self.trace}")

    def check(self, ok: object, message: str | Callable[[], str]) -> None:
        if not ok:
            self.fail(message() if callable(message) else message)

    # -------------------------------------------------------------- operations

    def blocking_is_safe(self) -> bool:
        """Whether a call that may wait for room in the queue is sure to get it: not
        while a gate task (which holds its worker until the gate opens) is unfinished."""
        return (
            self.program.max_pending is None
            or self.gate.is_open()
            or all(t.fut.done() for t in self.tasks if t.kind == "gate")
        )

    def note_options(self, options: dict[str, Any]) -> None:
        self.short_used |= options.get("task_timeout") == SHORT
        self.retries_used |= options.get("retries", 0) > 0

    def run(self) -> None:
        for op in self.program.ops:
            if isinstance(op, Submit):
                self.submit(op)
            elif isinstance(op, Map):
                self.map(op)
            elif isinstance(op, Cancel):
                self.cancel(op.which)
            elif isinstance(op, Wait):
                self.wait(op)
            elif isinstance(op, AsCompleted):
                self.as_completed(op)
            elif isinstance(op, Stats):
                self.statistics()
            else:
                self.trace.append("open gate")
                self.gate.open()
        self.end(self.program.end)

    def submit(self, op: Submit) -> None:
        token = next(self.tokens)
        target = self.ex.options(**op.options) if op.options else self.ex
        nowait = op.nowait or not self.blocking_is_safe()
        args = (op.kind, token, self.gate, op.seconds, os.path.join(self.markers, str(token)))
        try:
            if nowait:
                fut = target.submit_nowait(tasks.run, *args)
            else:
                fut = target.submit(tasks.run, *args)
        except corral.QueueFull:
            self.check(self.program.max_pending is not None, "QueueFull without max_pending")
            self.trace.append(f"{op.kind} {token}: QueueFull")
            return
        self.note_options(op.options)
        self.trace.append(f"{'submit_nowait' if nowait else 'submit'} {op.kind} {token}")
        self.tasks.append(Task(op.kind, token, op.options, fut))

    def map(self, op: Map) -> None:
        tokens = [next(self.tokens) for _ in op.items]
        items = [
            (kind, token, seconds) for (kind, seconds), token in zip(op.items, tokens, strict=True)
        ]
        buffersize = op.buffersize
        if buffersize is not None and not self.blocking_is_safe():
            buffersize = None  # map() itself would submit, and wait for room, here
            op = op._replace(buffersize=None)
        target = self.ex.options(**op.options) if op.options else self.ex
        it = target.map(
            tasks.run_item,
            items,
            timeout=BOUND,
            chunksize=op.chunksize,
            buffersize=buffersize,
            ordered=op.ordered,
        )
        self.note_options(op.options)
        self.feeders += buffersize is None
        self.trace.append(f"map {tokens} buffersize={buffersize}")
        self.maps.append(MapRun(op, tokens, it))

    def cancel(self, index: int) -> None:
        if not self.tasks:
            return
        task = self.tasks[index % len(self.tasks)]
        cancelled = task.fut.cancel()
        task.cancels.append(cancelled)
        self.trace.append(f"cancel {task.token}: {cancelled}")
        if not cancelled:  # a corral future refuses only once it has finished
            self.check(
                task.fut.done() and not task.fut.cancelled(),
                f"cancel() of task {task.token} returned False, but it is not finished",
            )

    def pick(self, indices: list[int]) -> list[Task]:
        return [self.tasks[i % len(self.tasks)] for i in indices] if self.tasks else []

    def waited_enough(self, started: float, timeout: float) -> bool:
        """Whether a wait that gave up waited its ``timeout`` (a little timer slack)."""
        return time.monotonic() - started >= timeout * 0.9 - 0.005

    def wait(self, op: Wait) -> None:
        picked = self.pick(op.indices)
        futures = {t.fut for t in picked}
        started = time.monotonic()
        done, not_done = corral.wait(futures, timeout=op.timeout, return_when=op.return_when)
        self.trace.append(f"wait {[t.token for t in picked]}: {len(done)} done")
        self.check(done | not_done == futures and not done & not_done, "wait() lost futures")
        self.check(all(f.done() for f in done), "wait() says done of an unfinished future")
        failed = any(not f.cancelled() and f.exception(0) is not None for f in done)
        satisfied = {
            corral.FIRST_COMPLETED: bool(done),
            corral.FIRST_EXCEPTION: failed,
            corral.ALL_COMPLETED: False,
        }[op.return_when]
        if not_done and not satisfied:  # it returned before its condition: a timeout
            self.check(self.waited_enough(started, op.timeout), "wait() returned early")

    def as_completed(self, op: AsCompleted) -> None:
        picked = self.pick(op.indices)
        futures = {t.fut for t in picked}
        seen: list[corral.Future[int]] = []
        started = time.monotonic()
        try:
            for fut in corral.as_completed([t.fut for t in picked], timeout=op.timeout):
                seen.append(fut)
        except TimeoutError:
            self.check(self.waited_enough(started, op.timeout), "as_completed() gave up early")
            self.check(len(seen) < len(futures), "as_completed() timed out with all done")
        else:
            self.check(len(seen) == len(futures), "as_completed() missed futures")
        self.trace.append(f"as_completed {[t.token for t in picked]}: {len(seen)}")
        self.check(
            len(set(seen)) == len(seen) and set(seen) <= futures and all(f.done() for f in seen),
            "as_completed() yielded a future twice, a stranger, or an unfinished one",
        )

    def statistics(self) -> corral.Statistics:
        before = self.accepted.count
        s: corral.Statistics = self.ex.statistics()
        after = self.accepted.count
        self.trace.append(f"statistics {s}")
        counts = [v for v in (getattr(s, name) for name in s._fields) if v is not None]
        self.check(all(v >= 0 for v in counts), f"a negative count: {s}")
        # every task accepted is in exactly one place; a feeder may have queued one it
        # has not counted yet, and one counted before the call is in there
        total = s.pending + s.running + s.retrying + s.done
        self.check(
            before <= total <= after + self.feeders,
            f"statistics() does not add up: {s}: {total} tasks, {before}..{after} accepted",
        )
        self.check(s.running <= self.program.max_workers, f"more running than workers: {s}")
        if self.program.max_pending is not None:
            self.check(s.pending <= self.program.max_pending, f"more pending than max_pending: {s}")
        return s

    # -------------------------------------------------------------- the end

    def consume_maps(self, after_shutdown: bool) -> None:
        for m in self.maps:
            m.consumed_after_shutdown = after_shutdown
            try:
                for value in m.it:
                    m.got.append(value)
            except Exception as exc:
                m.end = exc

    def end(self, end: End) -> None:
        # shutdown(wait=True) waits for running gate tasks unless it kills them
        if end.open_gate_first or (end.wait and not end.kill):
            self.trace.append("open gate")
            self.gate.open()
        consume_first = end.consume_maps_first and self.gate.is_open()
        if consume_first:
            self.consume_maps(after_shutdown=False)
        done_before = {id(t.fut) for t in self.tasks if t.fut.done()}
        self.trace.append(
            f"shutdown(wait={end.wait}, cancel_futures={end.cancel_futures}, kill={end.kill})"
        )
        self.ex.shutdown(wait=end.wait, cancel_futures=end.cancel_futures, kill=end.kill)
        if end.wait:
            unfinished = [t.token for t in self.tasks if not t.fut.done()]
            self.check(not unfinished, f"unfinished after shutdown(wait=True): {unfinished}")
        self.gate.open()
        if not consume_first:
            self.consume_maps(after_shutdown=True)
        _, not_done = corral.wait([t.fut for t in self.tasks], timeout=BOUND)
        self.check(
            not not_done,
            lambda: (
                f"unfinished {BOUND}s after the gate opened: "
                f"{[t.token for t in self.tasks if t.fut in not_done]}, {self.ex.statistics()}"
            ),
        )
        self.ex.shutdown(wait=True)  # after wait=False: the workers are gone too
        stopped = end.cancel_futures or end.kill
        for task in self.tasks:
            self.check_task(task, stopped and id(task.fut) not in done_before)
        for m in self.maps:
            self.check_map(m, stopped)
        self.check_final_statistics()

    def check_task(self, task: Task, stop_allowed: bool) -> None:
        fut, token, options = task.fut, task.token, task.options
        where = f"task {token} ({task.kind}, {options}, cancels {task.cancels})"
        if any(task.cancels):
            self.check(fut.cancelled(), f"{where}: cancel() returned True, yet it ended")
        if fut.cancelled():
            self.check(any(task.cancels) or stop_allowed, f"{where}: cancelled by nobody")
            return
        retries = options.get("retries", 0)
        retry_on = options.get("retry_on", ())
        self.check(
            1 <= fut.attempts <= retries + 1, f"{where}: {fut.attempts} attempts, {retries} retries"
        )
        exc = fut.exception(timeout=0)
        short = options.get("task_timeout") == SHORT
        if isinstance(exc, corral.TaskTimeout):
            self.check(short, f"{where}: timed out: {exc!r}")
            return
        # a flaky task whose ValueError is retried succeeds, unless runs that overran the
        # short task_timeout (before the first run's failure) used up its retries
        retried = bool(retries) and ValueError in retry_on
        may_fail = task.kind == "error" or (task.kind == "flaky" and (not retried or short))
        if isinstance(exc, ValueError) and may_fail:
            text = f"task {token} fails" + (" its first run" if task.kind == "flaky" else "")
            self.check(str(exc) == text, f"{where}: ended with {exc!r}")
            # a retryable error is retried every time it is allowed to be
            runs = retries + 1 if ValueError in retry_on else 1
            self.check(fut.attempts == runs, f"{where}: {fut.attempts} attempts, not {runs}")
            return
        self.check(exc is None and task.kind != "error", f"{where}: ended with {exc!r}")
        self.check(task.kind != "flaky" or retried, f"{where}: succeeded, never retried")
        value = fut.result(timeout=0)
        self.check(value == token, f"{where}: returned {value!r}")
        if task.kind == "flaky":
            self.check(fut.attempts >= 2, f"{where}: succeeded at its first run")

    def check_map(self, m: MapRun, stopped: bool) -> None:
        kinds = [kind for kind, _ in m.op.items]
        errors = {t for t, kind in zip(m.tokens, kinds, strict=True) if kind == "error"}
        good = [t for t, kind in zip(m.tokens, kinds, strict=True) if kind != "error"]
        where = f"map {m.op} tokens {m.tokens}: got {m.got}, then {m.end!r}"
        if m.op.ordered:
            self.check(m.got == m.tokens[: len(m.got)], f"{where}: not its values, in order")
        else:
            self.check(
                not collections.Counter(m.got) - collections.Counter(good),
                f"{where}: a value it did not have (or twice)",
            )
        end = m.end
        if end is None:
            self.check(sorted(m.got) == sorted(m.tokens), f"{where}: ended early")
        elif isinstance(end, corral.TaskTimeout):
            self.check(m.op.options.get("task_timeout") == SHORT, f"{where}: timed out")
        elif isinstance(end, ValueError):
            failed = m.tokens[len(m.got)] if m.op.ordered else None
            allowed = {f"task {t} fails" for t in errors if failed in (None, t)}
            self.check(str(end) in allowed, f"{where}: not the first failing item's error")
        elif isinstance(end, corral.CancelledError):
            self.check(stopped and m.consumed_after_shutdown, f"{where}: cancelled by nobody")
        elif isinstance(end, RuntimeError) and "after shutdown" in str(end):
            # buffersize: the rest of its input is submitted as it is consumed
            self.check(
                m.consumed_after_shutdown and m.op.buffersize is not None, f"{where}: refused"
            )
        elif (
            type(end) is TimeoutError
            and m.op.options.get("task_timeout") == SHORT
            and time.monotonic() - m.started < BOUND - 1
        ):
            # the known bug of test_a_map_item_that_overruns_its_task_timeout_raises_
            # task_timeout: map() reports a TaskTimeout as its own wait timing out (it
            # cannot be that one: BOUND has not passed). Tolerated until fixed.
            pass
        else:
            self.fail(f"{where}: unexpected (a TimeoutError: it did not end within {BOUND}s)")

    def check_final_statistics(self) -> None:
        s = self.statistics()
        self.check(
            (s.pending, s.running, s.retrying) == (0, 0, 0), f"work left after shutdown: {s}"
        )
        self.check(s.done == self.accepted.count, f"{s.done} ended of {self.accepted.count}: {s}")
        self.check(s.crashed == 0, f"a crash, though no task crashes: {s}")
        values = sum(not t.fut.cancelled() and t.fut.exception(0) is None for t in self.tasks)
        errors = sum(not t.fut.cancelled() and t.fut.exception(0) is not None for t in self.tasks)
        # a task that finished as its cancel() landed counts as completed or failed
        self.check(s.completed >= values and s.failed >= errors, f"outcomes miscounted: {s}")
        timeouts = sum(
            not t.fut.cancelled() and isinstance(t.fut.exception(0), corral.TaskTimeout)
            for t in self.tasks
        )
        self.check(s.timed_out >= timeouts, f"{timeouts} futures timed out: {s}")
        self.check(self.short_used or s.timed_out == 0, f"timeouts without a task_timeout: {s}")
        # ``retried`` counts runs that failed and were scheduled again; each such run but
        # the last of a task shows in its attempts (a task cancelled in its backoff waits
        # for a run that never comes)
        reruns = sum(max(0, t.fut.attempts - 1) for t in self.tasks)
        self.check(s.retried >= reruns, f"{reruns} reruns in the futures: {s}")
        self.check(self.retries_used or s.retried == 0, f"retries nobody asked for: {s}")


def run_program(
    make: Callable[..., Any],
    program: Program,
    settle: Callable[[], None],
) -> None:
    """One example: run, check, and leave nothing behind (checked by ``settle``).

    A thread of corral's that dies of an exception (a worker, the manager, a feeder)
    fails the example: nothing else would notice (pytest only warns).
    """
    deaths: list[str] = []

    def on_thread_death(args: Any) -> None:
        thread = args.thread.name if args.thread is not None else "?"
        deaths.append(f"{thread}: {args.exc_type.__name__}: {args.exc_value}")

    previous, threading.excepthook = threading.excepthook, on_thread_death
    try:
        runner = Runner(make, program)
        try:
            runner.run()
        finally:
            runner.close()
        settle()
    finally:
        threading.excepthook = previous
    assert not deaths, f"threads died: {deaths}\n  program: {program}"


# ------------------------------------------------------------------ the tests

COMMON: dict[str, Any] = {
    "deadline": None,  # a process pool's worker start, under load, is not a bug
    # the examples clean up after themselves; the autouse leak check (function-scoped,
    # hence the health check) then sees a clean test
    "suppress_health_check": [HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    "print_blob": True,
}

LOCAL_POOLS: dict[str, Any] = {
    "thread": corral.ThreadPoolExecutor,
    "process": corral.ProcessPoolExecutor,
}


@pytest.mark.timeout(240)  # the examples together; each one ends well within BOUND
@pytest.mark.parametrize(
    ("backend", "count"), [("thread", examples(120)), ("process", examples(60))]
)
def test_random_programs(backend: str, count: int) -> None:
    @settings(max_examples=count, **COMMON)
    @given(program=PROGRAMS)
    def check(program: Program) -> None:
        before = testing.snapshot()
        run_program(
            LOCAL_POOLS[backend],
            program,
            lambda: testing.assert_no_leaks(before, 10),
        )

    check()


@pytest.fixture(scope="module")
def dask_cluster() -> Iterator[DaskCluster]:
    cluster = DaskCluster(workers=1, nthreads=2)
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.mark.skipif(not HAVE_DASK, reason="needs distributed (the dev extra)")
@pytest.mark.timeout(240)
def test_random_programs_on_dask(dask_cluster: DaskCluster) -> None:
    def make(max_workers: int, **kwargs: Any) -> corral.DaskExecutor:
        return corral.DaskExecutor(dask_cluster.address, max_workers=max_workers, **kwargs)

    def settle(before: testing.Snapshot) -> None:
        # the cluster's processes and distributed's process-wide threads are not the
        # example's (as in conftest.no_leaks); read again each time, as a Dask worker's
        # inner pool replaces the processes an example's cancels killed
        def leaks() -> dict[str, Any]:
            baseline = dataclasses.replace(
                before,
                processes=before.processes | dask_cluster.pids(),
                threads=before.threads | _dask_threads(),
            )
            return testing._leaks(baseline)

        testing.wait_until(lambda: not leaks(), 10, 0.005, lambda: f"cleanup: {leaks()}")

    @settings(max_examples=examples(25), **COMMON)
    @given(program=PROGRAMS)
    def check(program: Program) -> None:
        before = testing.snapshot()
        run_program(make, program, lambda: settle(before))

    check()


# ------------------------------------------------------------------ what it found
# Bugs this test found, each as a plain reproducer (xfail(strict) while one is open,
# with a tolerance in the runner above that goes when it is fixed).


def test_a_cancel_as_a_worker_takes_its_task_leaves_the_worker_alive() -> None:
    # A worker takes its run under the lock and starts it outside: a cancel landing in
    # between must end the future as cancelled and leave the worker serving (it once
    # read the task's run outside the lock and died of an AssertionError).
    deaths: list[BaseException | None] = []
    previous, threading.excepthook = threading.excepthook, lambda a: deaths.append(a.exc_value)
    try:
        with corral.ThreadPoolExecutor(1, thread_name_prefix="racer") as ex:
            backend = ex._backend
            start_spawns = backend._start_spawns
            submitted = threading.Event()
            futures: list[corral.Future[None]] = []
            cancelled: list[bool] = []

            def cancel_first(*args: Any) -> None:
                # a worker calls this right after it took its run, outside the lock: the
                # cancel lands in the window a loaded machine opens by chance
                if threading.current_thread().name.startswith("racer") and submitted.wait(10):
                    while futures:
                        cancelled.append(futures.pop().cancel())
                start_spawns(*args)

            backend._start_spawns = cancel_first  # type: ignore[method-assign]
            first = ex.submit(testing.noop)
            futures.append(first)
            submitted.set()
            testing.wait_until(lambda: not futures, 10, message="the cancel")
            assert cancelled == [True] and first.cancelled()
            # the same worker serves the next task
            assert ex.submit(testing.identity, 7).result(timeout=BOUND) == 7
            stats = ex.statistics()
        assert not deaths, f"a worker thread died: {deaths!r}"
        assert (stats.cancelled, stats.completed) == (1, 1), stats
    finally:
        threading.excepthook = previous


@pytest.mark.parametrize("pool", ["thread", "process"])
def test_a_map_item_that_overruns_its_task_timeout_raises_task_timeout(pool: str) -> None:
    # a thread task must end by itself (sleep_until_cancelled does), a process is killed
    work = testing.sleep_until_cancelled if pool == "thread" else time.sleep
    with LOCAL_POOLS[pool](1) as ex:
        results = ex.options(task_timeout=0.2).map(work, [60])  # the map has no timeout
        with pytest.raises(corral.TaskTimeout):
            next(iter(results))


def test_a_retry_waits_for_room_under_max_pending(monkeypatch: pytest.MonkeyPatch) -> None:
    """A retry whose backoff ends while ``max_pending`` tasks are queued waits for room
    (counted as retrying), then runs: pending never exceeds max_pending, and the retry
    is not dropped. Its moment is the test's: the requeue waits for ``due``."""
    due, requeued = threading.Event(), threading.Event()
    real = Core._requeue

    def requeue(core: Any, task: Any) -> None:  # (in the clock's thread)
        due.wait(BOUND)
        real(core, task)
        requeued.set()

    monkeypatch.setattr(Core, "_requeue", requeue)
    monkeypatch.setattr("corral._core.retry_delay", lambda attempt: 0.0)
    failed_once = threading.Event()

    def flaky() -> int:
        if not failed_once.is_set():
            failed_once.set()
            raise ValueError("first run")
        return 1

    with (
        testing.Gate() as gate,
        testing.Gate() as first,
        testing.Gate() as second,
        corral.ThreadPoolExecutor(2, max_pending=1) as ex,
    ):
        try:
            blockers = [ex.submit(testing.wait_for_gate, gate, 2, first)]
            assert first.wait(BOUND)
            fut = ex.options(retries=1, retry_on=(ValueError,)).submit(flaky)
            testing.wait_until(lambda: ex.statistics().retrying == 1, BOUND, message="backoff")
            blockers.append(ex.submit(testing.wait_for_gate, gate, 2, second))
            assert second.wait(BOUND)  # both workers busy
            queued = ex.submit_nowait(testing.identity, 3)  # the one place max_pending gives
            due.set()
            assert requeued.wait(BOUND)
            stats = ex.statistics()
            with pytest.raises(corral.QueueFull, match="1 retries wait for room"):
                ex.submit_nowait(testing.identity, 4)
        finally:  # (never leave the clock's thread, nor the workers, waiting)
            due.set()
            gate.open()
        results = [f.result(timeout=BOUND) for f in (fut, *blockers, queued)]
    assert (stats.pending, stats.retrying) == (1, 1), f"max_pending=1: {stats}"
    assert results == [1, 2, 2, 3] and fut.attempts == 2


@pytest.mark.parametrize(
    "wait",
    [
        True,  # shutdown(wait=True) waits for the retry, though no thread is left
        False,  # the retry gets a thread: work_available_locked starts one
    ],
)
def test_a_retry_during_shutdown_runs_on_a_thread_pool(wait: bool) -> None:
    ex = corral.ThreadPoolExecutor(1)
    try:
        retried = ex.options(task_timeout=0.05, retries=1, retry_on=(corral.TaskTimeout,))
        fut = retried.submit(testing.sleep_until_cancelled, 0.2)  # overruns, ignores the stop
        ex.shutdown(wait=wait)
        corral.wait([fut], timeout=0 if wait else 3)  # (it takes 0.2 s when it works)
        assert fut.done(), f"the retry never ran: {ex.statistics()}"
        assert fut.attempts == 2 and isinstance(fut.exception(0), corral.TaskTimeout)
    finally:
        ex.shutdown(wait=True, cancel_futures=True)


@pytest.mark.skipif(not HAVE_DASK, reason="needs distributed (the dev extra)")
def test_a_retry_during_shutdown_runs_on_dask(dask_cluster: DaskCluster) -> None:
    ex = corral.DaskExecutor(dask_cluster.address, max_workers=1)
    try:
        fut = ex.options(retries=1, retry_on=(ValueError,)).submit(tasks.run, "error", 1)
        closer = threading.Thread(target=ex.shutdown, name="test-shutdown", daemon=True)
        closer.start()
        closer.join(3)  # about a second when it works; it never returns now
        assert not closer.is_alive(), f"shutdown(wait=True) hangs: {fut}, {ex.statistics()}"
        assert fut.attempts == 2 and isinstance(fut.exception(0), ValueError)
    finally:
        ex.shutdown(wait=False, kill=True)  # cancels the stranded retry: the closer ends
        closer.join(BOUND)
