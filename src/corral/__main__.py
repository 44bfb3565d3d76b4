"""``python -m corral``: the version, and a top-like view of corral's worker processes.

    python -m corral --version
    python -m corral top [--pid PID] [--once] [--interval SECONDS]

``top`` lists every process named "corral-worker" (workers name themselves so, on
Linux) that the current user can see, grouped by the program that owns the pool: pid,
CPU %, resident memory, age, threads, and the processes a task started under it.
It refreshes every ``--interval`` seconds until Ctrl+C; ``--once`` prints one table.

What it cannot show, and why: the queue (pending, running, retries) lives inside the
program that owns the pool, and reading it from outside would mean every program
opening a listener (a socket or a file) that it never asked for. Inside the program,
``executor.statistics()`` gives it, and hooks (``corral.Timeline``) record it.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

import psutil

from . import __version__

WORKER_NAME = "corral-worker"


def _owner(proc: psutil.Process) -> psutil.Process | None:
    """The program a worker serves: its parent, or the forkserver's parent."""
    try:
        parent = proc.parent()
        if parent is not None and "forkserver" in " ".join(parent.cmdline()):
            parent = parent.parent()
        return parent
    except psutil.Error:
        return None


def _describe(proc: psutil.Process | None) -> str:
    if proc is None:
        return "?"
    try:
        return f"{proc.pid} {' '.join(proc.cmdline())[:60]}"
    except psutil.Error:
        return str(proc.pid)


def workers(owner_pid: int | None = None) -> list[psutil.Process]:
    """The corral worker processes visible here (of ``owner_pid`` only, if given)."""
    found = []
    for proc in psutil.process_iter(["name"]):
        if proc.info["name"] != WORKER_NAME:
            continue
        if owner_pid is not None:
            owner = _owner(proc)
            if owner is None or owner.pid != owner_pid:
                continue
        found.append(proc)
    return found


def table(procs: Sequence[psutil.Process]) -> str:
    """One screen of the view: a header, then a block per owning program."""
    rows: dict[str, list[str]] = {}
    current = time.time()
    for proc in procs:
        try:
            with proc.oneshot():
                cpu = proc.cpu_percent(None)
                rss = proc.memory_info().rss
                age = current - proc.create_time()
                threads = proc.num_threads()
                children = len(proc.children(recursive=True))
                status = proc.status()
        except psutil.Error:
            continue  # it ended meanwhile
        line = (
            f"  {proc.pid:>8} {status:<9} {cpu:>6.1f} {rss / 2**20:>9.1f} "
            f"{age:>8.1f} {threads:>7} {children:>8}"
        )
        rows.setdefault(_describe(_owner(proc)), []).append(line)
    out = [
        f"corral {__version__}: {sum(len(r) for r in rows.values())} worker processes",
        f"  {'PID':>8} {'STATE':<9} {'CPU%':>6} {'RSS MiB':>9} {'AGE s':>8} "
        f"{'THREADS':>7} {'CHILDREN':>8}",
    ]
    for owner, lines in sorted(rows.items()):
        out.append(f"program {owner}")
        out.extend(lines)
    return "\n".join(out)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m corral", description=__doc__.split("\n")[0])
    parser.add_argument("--version", action="version", version=f"corral {__version__}")
    commands = parser.add_subparsers(dest="command")
    top = commands.add_parser("top", help="a live view of corral's worker processes")
    top.add_argument("--pid", type=int, help="only the workers of this program")
    top.add_argument("--once", action="store_true", help="print one table and exit")
    top.add_argument("--interval", type=float, default=1.0, help="seconds between refreshes")
    args = parser.parse_args(argv)
    if args.command != "top":
        parser.print_help()
        return 0
    if args.interval <= 0:
        parser.error("--interval must be > 0")
    known: dict[int, psutil.Process] = {}

    def refresh() -> list[psutil.Process]:
        # keep the Process objects: CPU % is measured between two readings of one object
        found = {p.pid: known.get(p.pid, p) for p in workers(args.pid)}
        for pid, proc in found.items():
            if pid not in known:
                try:
                    proc.cpu_percent(None)  # the first reading is always 0: a baseline
                except psutil.Error:
                    pass
        known.clear()
        known.update(found)
        return list(found.values())

    procs = refresh()
    try:
        while True:
            time.sleep(min(args.interval, 0.5) if args.once else args.interval)
            screen = table(procs)
            if args.once:
                print(screen)
                return 0
            print("\x1b[2J\x1b[H" + screen if sys.stdout.isatty() else screen + "\n", flush=True)
            procs = refresh()
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
