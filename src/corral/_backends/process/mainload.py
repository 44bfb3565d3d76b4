"""Imported by the forkserver, after its other preloads: runs the parent's main module
there once, so that the workers forked from it do not each run it again.

Python's forkserver means to do this when ``"__main__"`` is among its preloads (the
default), but before 3.13.8 and 3.14 it never did (CPython issue 126631): every worker
ran the main script's top level again, imports included, so that each replacement
worker (after a cancel, a task timeout, a crash) took as long to start as the script's
imports. Where the forkserver already does it, this finds the main module loaded and
does nothing.

The parent passes spawn's preparation data for the main module (what each worker
would use) in an environment variable, set only while it starts the forkserver (see
``procs.forkserver_preloads``). If running the main module fails here, nothing is
lost: each worker runs it itself, as without this, and the pool reports what fails.
"""

from __future__ import annotations

import os
import pickle
import sys
from multiprocessing import process, spawn, util

#: The environment variable that carries the parent's preparation data (hex pickle).
ENV = "_CORRAL_FORKSERVER_MAIN"


def load_main() -> None:
    raw = os.environ.pop(ENV, None)
    if not raw:
        return
    try:
        data = pickle.loads(bytes.fromhex(raw))
    except Exception:  # not ours to read: workers load the main module themselves
        return
    # as a worker's spawn.prepare() would (Python 3.11 and older 3.12 and 3.13 do not
    # give the forkserver the parent's sys.path)
    sys.path = list(data.get("sys_path", sys.path))
    sys.argv = list(data.get("sys_argv", sys.argv))
    # the forkserver closes its standard input right after its preloads; before the
    # main module runs, so that a top level that reads it (outside the main guard)
    # gets EOF, as in the workers, instead of waiting on the parent's terminal
    util._close_stdin()  # type: ignore[attr-defined]
    current = process.current_process()
    current._inheriting = True  # type: ignore[attr-defined]  # "bootstrapping" checks
    try:
        if "init_main_from_name" in data:
            spawn._fixup_main_from_name(data["init_main_from_name"])  # type: ignore[attr-defined]
        elif "init_main_from_path" in data:
            spawn._fixup_main_from_path(data["init_main_from_path"])  # type: ignore[attr-defined]
    except (Exception, SystemExit):
        pass  # each worker then runs it, and reports the error (see the docstring)
    finally:
        del current._inheriting  # type: ignore[attr-defined]


load_main()
