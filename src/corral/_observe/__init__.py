"""Observability: what a pool tells the outside while it runs (docs/observability.md).

hooks.py       Hooks, TaskEvent, WorkerEvent and the "corral-hooks" thread
timeline.py    Timeline: a recorder of hooks, drawn as SVG/HTML, or Chrome trace JSON
progress.py    progress bars for map(), as_completed() and TaskGroup
"""
