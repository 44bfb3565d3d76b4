"""Observability: hooks, the timeline, progress bars, worker logs and output, ``python -m corral``.

Hooks and the timeline are checked on the thread pool and the process pool; what
only processes have (crashes, forwarded logs, worker stdout) on the process pool.
"""

from __future__ import annotations

import functools
import io
import itertools
import json
import logging
import os
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import corral
from corral import testing
from corral._observe.hooks import OUTCOMES

POOLS: dict[str, Callable[..., Any]] = {
    "thread": corral.ThreadPoolExecutor,
    "process": corral.ProcessPoolExecutor,
}


@pytest.fixture(params=sorted(POOLS))
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


class Recorder:
    """Keeps every event in the order the hooks thread delivered them."""

    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []
        self.threads: set[str] = set()

    def _add(self, name: str, event: Any) -> None:
        self.threads.add(threading.current_thread().name)
        self.events.append((name, event))

    def on_task_start(self, event: corral.TaskEvent) -> None:
        self._add("start", event)

    def on_task_end(self, event: corral.TaskEvent) -> None:
        self._add("end", event)

    def on_worker_start(self, event: corral.WorkerEvent) -> None:
        self._add("worker_start", event)

    def on_worker_exit(self, event: corral.WorkerEvent) -> None:
        self._add("worker_exit", event)

    def ends(self, task: int) -> list[corral.TaskEvent]:
        return [e for n, e in self.events if n == "end" and e.task == task]


def _check_pairs(rec: Recorder) -> None:
    """Each run: one start, then one end, on the same worker; workers bracket their runs."""
    open_runs: dict[tuple[int, int], str] = {}
    live: set[str] = set()
    for name, event in rec.events:
        if name == "worker_start":
            live.add(event.worker)
        elif name == "worker_exit":
            assert not [k for k, w in open_runs.items() if w == event.worker], (
                f"{event.worker} exited with a run open"
            )
            live.discard(event.worker)
        elif name == "start":
            key = (event.task, event.attempt)
            assert key not in open_runs, f"run {key} started twice"
            assert event.ended is None and event.outcome is None
            assert event.started >= event.submitted
            if not event.worker.startswith("caller"):
                assert event.worker in live, f"{event.worker} ran a task before it started"
            open_runs[key] = event.worker
        else:
            key = (event.task, event.attempt)
            assert open_runs.pop(key) == event.worker, f"run {key} ended without a start"
            assert event.ended >= event.started
            assert event.outcome in OUTCOMES
    assert not open_runs, f"runs that never ended: {open_runs}"
    assert not live, f"workers never seen to exit: {live}"


def test_hooks_see_each_run_start_and_end_in_order(kind: str, started: testing.Gate) -> None:
    rec = Recorder()
    with POOLS[kind](2, hooks=rec) as ex:
        ok = ex.submit(testing.square, 4)
        err = ex.submit(testing.fail, "no")
        assert ok.result(10) == 16
        with pytest.raises(ValueError):
            err.result(10)
        running = ex.submit(testing.sleep_until_cancelled, 30, started)
        assert started.wait(10)
        running.cancel()
        slow = ex.options(task_timeout=0.2, name="slow").submit(testing.sleep_until_cancelled, 30)
        with pytest.raises(corral.TaskTimeout):
            slow.result(10)
    assert rec.threads == {"corral-hooks"}
    _check_pairs(rec)
    outcomes = {e.name: e.outcome for n, e in rec.events if n == "end"}
    assert outcomes == {
        "square": "completed",
        "fail": "failed",
        "sleep_until_cancelled": "cancelled",
        "slow": "timed_out",
    }
    (fail_end,) = [e for n, e in rec.events if n == "end" and e.outcome == "failed"]
    assert isinstance(fail_end.error, ValueError)
    assert all(e.attempt == 1 and not e.retrying for n, e in rec.events if n == "end")
    assert [n for n, _ in rec.events].count("worker_start") >= 1


def test_hooks_see_a_crash_and_its_retry(tmp_path: Path) -> None:
    rec = Recorder()
    counter = str(tmp_path / "count")
    with corral.ProcessPoolExecutor(1, hooks=rec) as ex:
        fut = ex.options(retries=1).submit(testing.crash_times, counter, 1)
        assert fut.result(30) == 2  # crashed once, then ran
    _check_pairs(rec)
    first, second = rec.ends(1)
    assert (first.outcome, first.retrying, first.attempt) == ("crashed", True, 1)
    assert isinstance(first.error, corral.WorkerCrashed)
    assert (second.outcome, second.retrying, second.attempt) == ("completed", False, 2)
    exits = [e for n, e in rec.events if n == "worker_exit"]
    assert exits[0].reason == "crashed" and exits[0].worker == first.worker
    assert exits[0].exitcode is not None and exits[0].exitcode != 0
    assert exits[-1].reason == "shutdown"
    # the crash is reported before its worker's exit
    names = [(n, getattr(e, "worker", None)) for n, e in rec.events]
    assert names.index(("end", first.worker)) < names.index(("worker_exit", first.worker))


def test_a_hook_that_raises_is_logged_and_the_pool_goes_on(
    kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    def bad(event: corral.TaskEvent) -> None:
        raise RuntimeError("hook bug")

    rec = Recorder()
    with POOLS[kind](1, hooks=[corral.Hooks(on_task_end=bad), rec]) as ex:
        assert [f.result(10) for f in [ex.submit(testing.square, i) for i in range(3)]] == [0, 1, 4]
    assert len([n for n, _ in rec.events if n == "end"]) == 3  # later observers still called
    assert "on_task_end hook" in caplog.text and "hook bug" in caplog.text


def test_a_hook_may_submit_to_its_own_pool(kind: str) -> None:
    results: list[Any] = []
    ex: Any = None

    def chain(event: corral.TaskEvent) -> None:
        if event.name == "square":
            results.append(ex.submit(testing.identity, event.task))

    ex = POOLS[kind](2, hooks=corral.Hooks(on_task_end=chain))
    try:
        ex.submit(testing.square, 3).result(10)
        testing.wait_until(lambda: bool(results), 10)
        assert results[0].result(10) == 1
    finally:
        ex.shutdown()


def test_shutdown_waits_until_every_event_is_delivered(kind: str) -> None:
    seen: list[int] = []

    def slow_hook(event: corral.TaskEvent) -> None:
        time.sleep(0.005)  # a slow observer (5 ms per event), not a synchronisation
        seen.append(event.task)

    with POOLS[kind](2, hooks=corral.Hooks(on_task_end=slow_hook)) as ex:
        for i in range(20):
            ex.submit(testing.square, i)
    assert sorted(seen) == list(range(1, 21))


def test_no_hooks_no_thread_and_bad_hooks_fail_fast(kind: str) -> None:
    with POOLS[kind](1) as ex:
        ex.submit(testing.noop).result(10)
        assert ex._core.hooks is None
        assert "corral-hooks" not in [t.name for t in threading.enumerate()]
    with pytest.raises(TypeError, match="none of the methods"):
        POOLS[kind](1, hooks=object())
    with pytest.raises(TypeError, match="on_task_end must be callable"):
        corral.Hooks(on_task_end=42)  # type: ignore[arg-type]


def test_hooks_after_shutdown_without_wait_still_run_in_the_hooks_thread(kind: str) -> None:
    """After shutdown(wait=False) the events still to come go through the hooks thread,
    never under the pool's lock: a hook that reads statistics() must not deadlock."""
    seen: list[tuple[str, int]] = []
    ex: Any = None

    def on_end(event: corral.TaskEvent) -> None:
        seen.append((threading.current_thread().name, ex.statistics().completed))

    ex = POOLS[kind](1, hooks=corral.Hooks(on_task_end=on_end))
    futures = [ex.submit(testing.square, i) for i in range(3)]
    ex.shutdown(wait=False)
    assert [f.result(10) for f in futures] == [0, 1, 4]
    testing.wait_until(lambda: len(seen) == 3, 10)
    assert {name for name, _ in seen} == {"corral-hooks"}
    ex.shutdown(wait=True)  # joins the hooks thread (the leak check sees it gone)


def test_async_with_waits_for_every_event(kind: str) -> None:
    import asyncio

    timeline = corral.Timeline()

    async def main() -> int:
        async with POOLS[kind](2, hooks=timeline) as ex:
            futures = [ex.submit(testing.square, i) for i in range(200)]
            await asyncio.wrap_future(futures[-1])
        return len(timeline.runs)

    assert asyncio.run(main()) == 200


class Unprintable:
    """A callable whose repr raises: naming it must not call repr."""

    def __call__(self, x: int) -> int:
        return x

    def __repr__(self) -> str:
        raise RuntimeError("no repr")


def test_task_names_never_call_repr(kind: str) -> None:
    rec = Recorder()
    with POOLS[kind](1, hooks=rec) as ex:
        assert ex.submit(Unprintable(), 3).result(10) == 3
        assert ex.submit(functools.partial(testing.add, 1), 2).result(10) == 3
    names = [e.name for n, e in rec.events if n == "end"]
    assert names == ["Unprintable instance", "add"]


def test_process_runs_on_one_worker_never_overlap() -> None:
    timeline = corral.Timeline()
    with corral.ProcessPoolExecutor(1, hooks=timeline) as ex:
        for fut in [ex.submit(testing.square, i) for i in range(300)]:
            fut.result(10)
    runs = sorted(timeline.runs, key=lambda r: r.started)
    assert len(runs) == 300
    for a, b in itertools.pairwise(runs):
        assert a.ended is not None and a.ended <= b.started, (a, b)


def test_a_worker_whose_initializer_fails_reports_init_failed(kind: str, tmp_path: Path) -> None:
    rec = Recorder()
    ex = POOLS[kind](1, initializer=testing.fail, hooks=rec)
    with pytest.raises(corral.BrokenExecutor):
        ex.submit(testing.noop).result(30)
    ex.shutdown()
    reasons = {e.reason for n, e in rec.events if n == "worker_exit"}
    assert reasons == {"init_failed"}
    assert not [n for n, _ in rec.events if n == "worker_start"]


# --------------------------------------------------------------------- timeline


def _check_trace_event_format(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """Validates the Trace Event Format (JSON object form) as Perfetto reads it."""
    assert set(doc) <= {"traceEvents", "displayTimeUnit", "otherData"}
    assert doc["displayTimeUnit"] in ("ms", "ns")
    events = doc["traceEvents"]
    assert isinstance(events, list) and events
    for ev in events:
        assert isinstance(ev["name"], str) and ev["ph"] in ("X", "M", "i")
        assert isinstance(ev["pid"], int) and isinstance(ev["tid"], int)
        if ev["ph"] == "M":
            assert ev["name"] in ("process_name", "thread_name")
            assert isinstance(ev["args"]["name"], str)
            continue
        assert isinstance(ev["ts"], (int, float)) and ev["ts"] >= 0
        if ev["ph"] == "X":
            assert isinstance(ev["dur"], (int, float)) and ev["dur"] >= 0
            assert isinstance(ev["cat"], str)
        else:
            assert ev["s"] in ("g", "p", "t")
        assert isinstance(ev.get("args", {}), dict)
    return events


def test_timeline_exports_a_valid_trace_and_a_gantt_chart(
    kind: str, tmp_path: Path, started: testing.Gate
) -> None:
    timeline = corral.Timeline()
    with POOLS[kind](2, hooks=timeline) as ex:
        list(ex.map(testing.square, range(20)))
        with pytest.raises(ValueError):
            ex.submit(testing.fail).result(10)
        running = ex.submit(testing.sleep_until_cancelled, 30, started)
        assert started.wait(10)
        running.cancel()
        with pytest.raises(corral.TaskTimeout):
            ex.options(task_timeout=0.1).submit(testing.sleep_until_cancelled, 30).result(10)
    runs = timeline.runs
    assert {"completed", "failed", "cancelled", "timed_out"} <= {r.outcome for r in runs}
    timeline.write_chrome_trace(tmp_path / "trace.json")
    events = _check_trace_event_format(json.loads((tmp_path / "trace.json").read_text()))
    slices = [e for e in events if e["ph"] == "X"]
    assert len(slices) == len(runs)
    by_track: dict[int, list[dict[str, Any]]] = {}
    for ev in slices:
        by_track.setdefault(ev["tid"], []).append(ev)
    for track in by_track.values():  # a worker runs one task at a time
        track.sort(key=lambda e: e["ts"])
        for a, b in itertools.pairwise(track):
            assert a["ts"] + a["dur"] <= b["ts"] + 1, (a, b)
    timeline.write_svg(tmp_path / "t.svg")
    svg = ET.parse(tmp_path / "t.svg").getroot()  # well-formed XML
    bars = [r for r in svg.iter("{http://www.w3.org/2000/svg}rect") if r.find("*") is not None]
    assert len(bars) == len(runs)
    colours = {bar.get("fill") for bar in bars}
    assert {"#4caf50", "#ff9800", "#9e9e9e", "#9c27b0"} <= colours
    timeline.write_html(tmp_path / "t.html")
    page = (tmp_path / "t.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and "<svg" in page and "timed_out" in page


# --------------------------------------------------------------------- progress


def test_map_progress_counts_every_item(kind: str) -> None:
    out = io.StringIO()
    bar = corral.Progress(desc="squares", file=out, style="text", interval=0)
    with POOLS[kind](2) as ex:
        assert list(ex.map(testing.square, range(50), progress=bar)) == [i * i for i in range(50)]
    assert (bar.done, bar.failed, bar.total) == (50, 0, 50)
    last = out.getvalue().splitlines()[-1]
    assert last.startswith("squares: 50/50 done (100%)"), last


def test_map_progress_on_an_unsized_input_learns_its_total(kind: str) -> None:
    bar = corral.Progress(file=io.StringIO(), style="none")
    with POOLS[kind](2) as ex:
        results = list(ex.map(testing.square, (i for i in range(30)), buffersize=8, progress=bar))
    assert len(results) == 30
    testing.wait_until(lambda: bar.done == 30, 10)
    assert bar.total == 30


def test_as_completed_progress_counts_failures(kind: str) -> None:
    out = io.StringIO()
    bar = corral.Progress(file=out, style="text", interval=0)
    with POOLS[kind](2) as ex:
        fs = [ex.submit(testing.identity_or_fail, i) for i in range(5)]
        fs.append(ex.submit(testing.fail))
        done = list(corral.as_completed(fs, progress=bar))
    assert len(done) == 6
    assert (bar.done, bar.failed, bar.total) == (5, 1, 6)
    assert "6/6 done (100%), 1 failed" in out.getvalue()


def test_taskgroup_progress_and_tqdm(kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    tqdm = pytest.importorskip("tqdm")
    monkeypatch.setattr(tqdm.tqdm, "monitor_interval", 0)  # tqdm's own monitor thread
    out = io.StringIO()
    bar = corral.Progress(desc="group", file=out, style="tqdm")
    with POOLS[kind](2) as ex, corral.TaskGroup(ex, progress=bar) as group:
        for i in range(7):
            group.submit(testing.square, i)
    assert (bar.done, bar.total) == (7, 7)
    assert "group" in out.getvalue() and "7/7" in out.getvalue()


def test_a_given_total_is_kept_by_a_taskgroup() -> None:
    bar = corral.Progress(total=10, file=io.StringIO(), style="text", interval=0)
    with corral.ThreadPoolExecutor(2) as ex, corral.TaskGroup(ex, progress=bar) as group:
        for i in range(10):
            group.submit(testing.square, i)
    assert (bar.done, bar.total) == (10, 10)
    assert "10/10 done (100%)" in bar.file.getvalue()  # type: ignore[union-attr]


def test_progress_arguments_fail_fast() -> None:
    with corral.ThreadPoolExecutor(1) as ex:
        with pytest.raises(TypeError, match="progress must be"):
            ex.map(testing.square, [1], progress="yes")  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="progress must be"):
            corral.as_completed([], progress=1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="style"):
        corral.Progress(style="fancy")


def test_progress_true_draws_text_when_not_a_terminal(capsys: pytest.CaptureFixture[str]) -> None:
    with corral.ThreadPoolExecutor(2) as ex:
        list(ex.map(testing.square, range(10), progress=True))
    err = capsys.readouterr().err
    assert "square: 10/10 done (100%)" in err


# --------------------------------------------------------------------- worker output


@pytest.fixture
def app_logging(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    caplog.set_level(logging.INFO)  # before the pool starts: workers take the level then
    yield caplog


def test_worker_log_records_reach_parent_handlers(
    app_logging: pytest.LogCaptureFixture,
) -> None:
    with corral.ProcessPoolExecutor(1) as ex:
        ex.options(name="job-1").submit(testing.log_messages, "app.worker", "a", True).result(10)
        list(ex.map(testing.log_messages, ["app.map"], ["b"]))
    records = [r for r in app_logging.records if r.name.startswith("app.")]
    messages = [r.getMessage() for r in records]
    assert messages == ["info: a", "error: a", "info: b", "error: b"]  # DEBUG filtered
    for record in records:
        assert record.corral_worker.startswith("process ")  # type: ignore[attr-defined]
        assert record.process != os.getpid()
    assert records[0].corral_task == "job-1"  # type: ignore[attr-defined]
    assert records[2].corral_task == "map(log_messages)"  # type: ignore[attr-defined]
    assert "KeyError: 'a'" in (records[1].exc_text or "")


def test_worker_debug_records_follow_the_parent_logger_levels(
    app_logging: pytest.LogCaptureFixture,
) -> None:
    app_logging.set_level(logging.DEBUG, logger="app.verbose")  # root stays at INFO
    with corral.ProcessPoolExecutor(1) as ex:
        ex.submit(testing.log_messages, "app.verbose", "c").result(10)
        ex.submit(testing.log_messages, "app.quiet", "d").result(10)
    messages = [r.getMessage() for r in app_logging.records if r.name.startswith("app.")]
    assert messages == ["debug: c", "info: c", "error: c", "info: d", "error: d"]


def test_forked_workers_do_not_write_records_twice(tmp_path: Path) -> None:
    """fork copies the parent's handlers into the worker: each record must be written
    once (by the parent), also on a logger that does not propagate."""
    log_file = tmp_path / "app.log"
    handler = logging.FileHandler(log_file)
    logger = logging.getLogger("app.file")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        with corral.ProcessPoolExecutor(1, mp_context="fork") as ex:
            ex.submit(testing.log_messages, "app.file", "f").result(10)
    finally:
        logger.removeHandler(handler)
        handler.close()
        logger.setLevel(logging.NOTSET)
        logger.propagate = True
    lines = log_file.read_text().splitlines()
    assert [ln for ln in lines if ln.startswith(("info", "error"))] == ["info: f", "error: f"]


class BrokenHandler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        raise KeyError("a handler bug")


def test_a_parent_log_handler_that_raises_does_not_break_the_pool(
    app_logging: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    logger = logging.getLogger("app.broken")
    handler = BrokenHandler()
    logger.addHandler(handler)
    try:
        with corral.ProcessPoolExecutor(1) as ex:
            futures = [ex.submit(testing.log_messages, "app.broken", str(i)) for i in range(3)]
            assert [f.result(10) for f in futures] == ["0", "1", "2"]
    finally:
        logger.removeHandler(handler)
    assert "a handler bug" in capfd.readouterr().err


def test_forward_logging_false_leaves_worker_logging_alone(
    app_logging: pytest.LogCaptureFixture,
) -> None:
    with corral.ProcessPoolExecutor(1, forward_logging=False) as ex:
        ex.submit(testing.log_messages, "app.off", "e").result(10)
    assert not [r for r in app_logging.records if r.name == "app.off"]


WORKER_OUTPUT = """
import corral
from corral import testing

if __name__ == "__main__":
    with testing.Gate() as started, corral.ProcessPoolExecutor(1) as ex:
        fut = ex.submit(testing.print_then_hang, "said before the kill", started)
        assert started.wait(10)
        fut.cancel()  # SIGTERM/SIGKILL: no exit handlers, no final flush in the worker
        ex.submit(print, "partial line", end="").result(10)
    print("|parent done", flush=True)
"""


def test_worker_output_is_not_lost(tmp_path: Path) -> None:
    """Worker lines reach the parent's stdout/stderr (a pipe: block-buffered by default)
    even when the task is killed, and a partial line is flushed when a task ends."""
    script = tmp_path / "output.py"
    script.write_text(WORKER_OUTPUT)
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "said before the kill\n" in done.stdout
    assert "said before the kill\n" in done.stderr
    assert "partial line|parent done" in done.stdout


# --------------------------------------------------------------------- python -m corral


def _corral_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "corral", *args], capture_output=True, text=True, timeout=30
    )


def test_cli_version() -> None:
    done = _corral_cli("--version")
    assert done.returncode == 0 and done.stdout.strip() == f"corral {corral.__version__}"


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="workers name themselves on Linux")
def test_cli_top_lists_the_workers_of_a_program(started: testing.Gate) -> None:
    with corral.ProcessPoolExecutor(1) as ex:
        fut = ex.submit(testing.hang, started)
        assert started.wait(10)
        (worker,) = ex._backend._procs  # the pid of the one worker
        done = _corral_cli("top", "--once", "--pid", str(os.getpid()))
        other = _corral_cli("top", "--once", "--pid", "1")
        fut.cancel()
    assert done.returncode == 0, done.stderr
    assert f"program {os.getpid()}" in done.stdout
    assert str(worker) in done.stdout and "1 worker processes" in done.stdout
    assert str(worker) not in other.stdout
