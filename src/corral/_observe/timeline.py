"""``corral.Timeline``: which worker ran what, when, and how it ended.

A Timeline is a hook (``ProcessPoolExecutor(hooks=timeline)``): it records every run
of every task (submit, start and end times, worker, outcome) and every worker's life,
then exports them as

* Chrome trace event JSON (``write_chrome_trace``): opens in https://ui.perfetto.dev
  and chrome://tracing; one track per worker, one slice per run;
* a Gantt chart, workers x time, as SVG (``write_svg``) or as a self-contained HTML
  page (``write_html``): completed runs green, failures orange, timeouts purple,
  crashes red, cancelled runs grey; a worker's life is the thin line under its runs,
  ending in a cross where it was killed or crashed.

Recording costs one small tuple per event, appended in the pool's hooks thread.
"""

from __future__ import annotations

import html
import json
import os
import threading
from dataclasses import dataclass
from typing import Any

from .hooks import TaskEvent, WorkerEvent

COLOURS = {
    "completed": "#4caf50",
    "failed": "#ff9800",
    "timed_out": "#9c27b0",
    "crashed": "#e53935",
    "cancelled": "#9e9e9e",
    "requeued": "#bdbdbd",
}


#: One run of a task, as a Timeline keeps it: the ``on_task_end`` event itself.
Run = TaskEvent


@dataclass(frozen=True)
class WorkerLife:
    """A worker's life: from ready to gone (``ended`` None while it lives)."""

    worker: str
    pid: int
    started: float | None
    ended: float | None
    reason: str | None
    exitcode: int | None


class Timeline:
    """Records a pool's task runs and workers; pass it as the executor's ``hooks``.

    Example::

        timeline = corral.Timeline()
        with corral.ProcessPoolExecutor(4, hooks=timeline) as ex:
            list(ex.map(work, items))
        timeline.write_html("timeline.html")      # Gantt chart, opens in a browser
        timeline.write_chrome_trace("trace.json")  # Perfetto / chrome://tracing

    Read it after ``shutdown(wait=True)`` (or the with block): every event has been
    delivered then. One Timeline may record several pools.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._runs: list[Run] = []
        self._workers: dict[str, dict[str, Any]] = {}

    # ------------------------------------------------------------------ hooks

    def on_task_end(self, event: TaskEvent) -> None:
        self._runs.append(event)  # list.append is atomic: no lock on the per-task path

    def on_worker_start(self, event: WorkerEvent) -> None:
        with self._lock:
            self._workers[event.worker] = {"pid": event.pid, "started": event.time}

    def on_worker_exit(self, event: WorkerEvent) -> None:
        with self._lock:
            life = self._workers.setdefault(event.worker, {"pid": event.pid, "started": None})
            life.update(ended=event.time, reason=event.reason, exitcode=event.exitcode)

    # ------------------------------------------------------------------ reading

    @property
    def runs(self) -> list[Run]:
        """Every recorded run (a ``TaskEvent``), in the order they ended."""
        return list(self._runs)

    @property
    def workers(self) -> list[WorkerLife]:
        """Every worker seen, in the order they started."""
        with self._lock:
            lives = [
                WorkerLife(
                    name,
                    w["pid"],
                    w.get("started"),
                    w.get("ended"),
                    w.get("reason"),
                    w.get("exitcode"),
                )
                for name, w in self._workers.items()
            ]
        seen = {life.worker for life in lives}
        for run in self.runs:  # a worker whose start was not seen (a caller thread)
            if run.worker not in seen:
                seen.add(run.worker)
                lives.append(WorkerLife(run.worker, 0, None, None, None, None))
        return lives

    def _origin(self) -> float:
        times = [r.submitted for r in self.runs] + [
            w.started for w in self.workers if w.started is not None
        ]
        return min(times, default=0.0)

    # ------------------------------------------------------------------ Chrome trace

    def to_chrome_trace(self) -> dict[str, Any]:
        """The timeline as a Chrome trace event document (JSON object format).

        One process ("corral pool") with one thread track per worker; each run is a
        complete event ("ph": "X", microseconds) whose ``args`` hold the task number,
        attempt, outcome, queue wait and error; worker exits are instant events.
        """
        origin = self._origin()
        pid = os.getpid()
        tids = {w.worker: i + 1 for i, w in enumerate(self.workers)}

        def us(t: float) -> float:
            return round((t - origin) * 1e6, 3)

        events: list[dict[str, Any]] = [
            {"name": "process_name", "ph": "M", "pid": pid, "tid": 0, "args": {"name": "corral"}}
        ]
        for worker, tid in tids.items():
            events.append(
                {"name": "thread_name", "ph": "M", "pid": pid, "tid": tid, "args": {"name": worker}}
            )
        for run in self.runs:
            args: dict[str, Any] = {
                "task": run.task,
                "attempt": run.attempt,
                "outcome": run.outcome or "completed",
                "queued_ms": round((run.started - run.submitted) * 1e3, 3),
            }
            if run.error is not None:
                args["error"] = _error(run)
            if run.retrying:
                args["retrying"] = True
            events.append(
                {
                    "name": run.name,
                    "cat": run.outcome or "completed",
                    "ph": "X",
                    "ts": us(run.started),
                    "dur": max(0.0, round((_ended(run) - run.started) * 1e6, 3)),
                    "pid": pid,
                    "tid": tids[run.worker],
                    "args": args,
                }
            )
        for life in self.workers:
            if life.ended is not None:
                events.append(
                    {
                        "name": f"worker exit: {life.reason}",
                        "cat": "worker",
                        "ph": "i",
                        "s": "t",
                        "ts": us(life.ended),
                        "pid": pid,
                        "tid": tids[life.worker],
                        "args": {"reason": life.reason, "exitcode": life.exitcode},
                    }
                )
        return {"traceEvents": events, "displayTimeUnit": "ms"}

    def write_chrome_trace(self, path: str | os.PathLike[str]) -> None:
        """Writes ``to_chrome_trace()`` as JSON to ``path``."""
        with open(path, "w", encoding="utf-8") as f:
            json.dump(self.to_chrome_trace(), f)

    # ------------------------------------------------------------------ Gantt chart

    def to_svg(self, title: str = "corral timeline") -> str:
        """A Gantt chart of the runs, one row per worker, as an SVG document."""
        return _Gantt(self, title).svg()

    def write_svg(self, path: str | os.PathLike[str], title: str = "corral timeline") -> None:
        with open(path, "w", encoding="utf-8") as f:
            f.write(self.to_svg(title))

    def write_html(self, path: str | os.PathLike[str], title: str = "corral timeline") -> None:
        """Writes a self-contained HTML page: the chart, its legend and a summary."""
        counts: dict[str, int] = {}
        for run in self.runs:
            outcome = run.outcome or "completed"
            counts[outcome] = counts.get(outcome, 0) + 1
        summary = ", ".join(f"{n} {outcome}" for outcome, n in sorted(counts.items()))
        page = (
            "<!DOCTYPE html>\n<html><head><meta charset='utf-8'>"
            f"<title>{html.escape(title)}</title>"
            "<style>body{font-family:sans-serif;margin:1em}</style></head><body>"
            f"<h2>{html.escape(title)}</h2><p>{len(self.runs)} runs on "
            f"{len(self.workers)} workers: {html.escape(summary) or 'none'}. "
            "Hover a bar for its task, outcome and times.</p>"
            f"{self.to_svg(title)}</body></html>\n"
        )
        with open(path, "w", encoding="utf-8") as f:
            f.write(page)


class _Gantt:
    ROW = 26
    LEFT = 150
    WIDTH = 900
    TOP = 40

    def __init__(self, timeline: Timeline, title: str) -> None:
        self.title = title
        self.runs = timeline.runs
        self.lives = timeline.workers
        self.origin = timeline._origin()
        ends = [_ended(r) for r in self.runs]
        ends += [w.ended for w in self.lives if w.ended is not None]
        self.span = max(max(ends, default=self.origin) - self.origin, 1e-3)
        self.rows = {w.worker: i for i, w in enumerate(self.lives)}

    def x(self, t: float) -> float:
        return round(self.LEFT + (t - self.origin) / self.span * self.WIDTH, 2)

    def y(self, worker: str) -> int:
        return self.TOP + self.rows[worker] * self.ROW

    def svg(self) -> str:
        height = self.TOP + len(self.rows) * self.ROW + 60
        width = self.LEFT + self.WIDTH + 20
        out = [
            f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' "
            f"viewBox='0 0 {width} {height}' font-family='sans-serif' font-size='11'>",
            f"<rect width='{width}' height='{height}' fill='white'/>",
            f"<text x='10' y='20' font-size='14' font-weight='bold'>{html.escape(self.title)}"
            "</text>",
        ]
        out += self._axis(height)
        for life in self.lives:
            out += self._worker(life)
        for run in self.runs:
            out.append(self._bar(run))
        out += self._legend(height)
        out.append("</svg>")
        return "\n".join(out) + "\n"

    def _axis(self, height: float) -> list[str]:
        parts = []
        step = _nice_step(self.span)
        tick = 0.0
        while tick <= self.span + 1e-9:
            x = self.x(self.origin + tick)
            parts.append(
                f"<line x1='{x}' y1='{self.TOP - 6}' x2='{x}' y2='{height - 50}' "
                "stroke='#eee'/>"
                f"<text x='{x}' y='{height - 38}' text-anchor='middle' fill='#555'>"
                f"{_seconds(tick)}</text>"
            )
            tick += step
        return parts

    def _worker(self, life: WorkerLife) -> list[str]:
        y = self.y(life.worker)
        label = html.escape(life.worker)
        parts = [f"<text x='8' y='{y + 15}' fill='#333'>{label}</text>"]
        start = self.x(life.started if life.started is not None else self.origin)
        end = self.x(life.ended if life.ended is not None else self.origin + self.span)
        parts.append(
            f"<line x1='{start}' y1='{y + 22}' x2='{end}' y2='{y + 22}' stroke='#90a4ae' "
            "stroke-width='2'/>"
        )
        if life.ended is not None and life.reason in ("killed", "crashed"):
            colour = COLOURS["crashed"] if life.reason == "crashed" else "#555"
            parts.append(
                f"<path d='M{end - 4},{y + 18} l8,8 m0,-8 l-8,8' stroke='{colour}' "
                f"stroke-width='2'><title>{label}: {life.reason} "
                f"(exit code {life.exitcode})</title></path>"
            )
        return parts

    def _bar(self, run: Run) -> str:
        y = self.y(run.worker) + 3
        x0, x1 = self.x(run.started), self.x(_ended(run))
        outcome = run.outcome or "completed"
        width = max(x1 - x0, 2.0)
        tip = (
            f"{run.name} (task {run.task}, attempt {run.attempt}) on {run.worker}: "
            f"{outcome}{', retrying' if run.retrying else ''}; "
            f"queued {_seconds(run.started - run.submitted)}, "
            f"ran {_seconds(_ended(run) - run.started)}"
            + (f"; {_error(run)}" if run.error is not None else "")
        )
        dash = " stroke-dasharray='3,2'" if run.retrying else ""
        text = ""
        if width > 7 * len(run.name) + 6:
            text = (
                f"<text x='{x0 + 3}' y='{y + 12}' fill='white' pointer-events='none'>"
                f"{html.escape(run.name)}</text>"
            )
        return (
            f"<rect x='{x0}' y='{y}' width='{width}' height='16' rx='2' "
            f"fill='{COLOURS.get(outcome, '#607d8b')}' stroke='#263238' "
            f"stroke-width='0.5'{dash}><title>{html.escape(tip)}</title></rect>{text}"
        )

    def _legend(self, height: float) -> list[str]:
        parts = []
        x = self.LEFT
        for outcome, colour in COLOURS.items():
            parts.append(
                f"<rect x='{x}' y='{height - 22}' width='12' height='12' fill='{colour}'/>"
                f"<text x='{x + 16}' y='{height - 12}'>{outcome}</text>"
            )
            x += 100
        parts.append(
            f"<text x='{x}' y='{height - 12}' fill='#555'>dashed: will retry; "
            "x: worker killed/crashed</text>"
        )
        return parts


def _ended(run: Run) -> float:
    return run.ended if run.ended is not None else run.started


def _error(run: Run) -> str:
    return f"{type(run.error).__name__}: {run.error}"


def _nice_step(span: float) -> float:
    """A round tick step giving about 5 to 10 ticks over ``span`` seconds."""
    step = 10.0 ** int(f"{span / 5:e}".split("e")[1])
    for factor in (1, 2, 5, 10):
        if span / (step * factor) <= 10:
            return step * factor
    return step * 10  # pragma: no cover


def _seconds(value: float) -> str:
    if value == 0:
        return "0 s"
    if value >= 1:
        return f"{value:.2f} s"
    if value >= 1e-3:
        return f"{value * 1e3:.1f} ms"
    return f"{value * 1e6:.0f} us"
