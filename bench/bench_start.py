"""Start-up: what a short program pays for its process pool, corral beside the stdlib.

Each figure is measured in a fresh interpreter (a new ``python -c`` per run), because
what a short program pays (imports, starting the forkserver, the first workers) is paid
once per program: a pool in a process that already has them warm says nothing about it.
Runs of the systems are interleaved and each figure is the median of ``--repeat`` runs.

  first     import, create a 2-worker pool, first result (what a script waits for)
  short     import, create, 100 small tasks, shutdown (a short-lived pool)
  black     black formatting a tree of files, corral installed into
            concurrent.futures (``corral.install()``) vs the stdlib (needs black)

Systems: corral (default start method: forkserver), the stdlib's default (fork on
Python <= 3.13), and the stdlib with forkserver (Python 3.14's default).

Run: ``.venv/bin/python bench/bench_start.py [--repeat 7] [--only first,short,black]``
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

SYSTEMS = {
    "corral": ("import corral as cf", "cf.ProcessPoolExecutor(2)"),
    "stdlib default": ("import concurrent.futures as cf", "cf.ProcessPoolExecutor(2)"),
    "stdlib forkserver": (
        "import concurrent.futures as cf, multiprocessing as mp",
        'cf.ProcessPoolExecutor(2, mp_context=mp.get_context("forkserver"))',
    ),
}

FIRST = """
import time
t0 = time.perf_counter()
{imp}
cf.ProcessPoolExecutor  # both packages import their process pool on first use
t1 = time.perf_counter()
ex = {make}
t2 = time.perf_counter()
ex.submit(abs, -1).result()
t3 = time.perf_counter()
print(t1 - t0, t2 - t1, t3 - t2, t3 - t0)
ex.shutdown()
"""

SHORT = """
import time
t0 = time.perf_counter()
{imp}
with {make} as ex:
    assert sum(f.result() for f in [ex.submit(abs, -i) for i in range(100)]) == 4950
print(time.perf_counter() - t0)
"""


#: The children may write and use .pyc files, as an installed package has them (an
#: environment with PYTHONDONTWRITEBYTECODE would compile corral's source in every run,
#: while the stdlib's modules come compiled).
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def run_steps(code: str, cwd: str | None = None) -> list[float]:
    """Run *code* in a fresh interpreter; the numbers its last line prints, in seconds."""
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=cwd, env=ENV
    ).stdout
    return [float(x) for x in out.splitlines()[-1].split()]


def run_python(code: str, cwd: str | None = None) -> float:
    return run_steps(code, cwd)[-1]


def bench_template(template: str, repeat: int) -> dict[str, list[float]]:
    """Per system, the median of each number the template prints (its total last)."""
    runs: dict[str, list[list[float]]] = {name: [] for name in SYSTEMS}
    for imp, make in SYSTEMS.values():  # a warm-up run each: .pyc files, page cache
        run_steps(template.format(imp=imp, make=make))
    for _ in range(repeat):
        for name, (imp, make) in SYSTEMS.items():  # interleaved: load hits each alike
            runs[name].append(run_steps(template.format(imp=imp, make=make)))
    return {
        name: [statistics.median(step) for step in zip(*r, strict=True)] for name, r in runs.items()
    }


def totals(figures: dict[str, list[float]]) -> dict[str, float]:
    return {name: steps[-1] for name, steps in figures.items()}


def report_steps(figures: dict[str, list[float]], steps: tuple[str, ...]) -> None:
    """Each step's median, so a gap can be traced to imports, creation or the first task."""
    print("  by step (medians):  " + "".join(f"{s:>12}" for s in steps))
    for name, values in figures.items():
        print(f"  {name:<18}   " + "".join(f"{v * 1000:9.1f} ms" for v in values[:-1]))


BLACK = """
import sys, time
t0 = time.perf_counter()
{install}
import black
sys.argv = ["black", "-q", "--workers", "2", {path!r}]
try:
    black.patched_main()
except SystemExit as exc:
    assert not exc.code, exc.code
print(time.perf_counter() - t0)
"""


def make_tree(root: str, files: int) -> None:
    body = "".join(
        f"def f{i}( a,b ):\n  return {{ 'k':[a,b,{i}] }}\nx{i} = f{i}( 1,2 )\n" for i in range(40)
    )
    for i in range(files):
        with open(os.path.join(root, f"m{i}.py"), "w") as f:
            f.write(body)


def bench_black(repeat: int, files: int = 160) -> dict[str, float]:
    installs = {
        "corral": "import corral; corral.install()",
        "stdlib default": "pass",
        "stdlib forkserver": (
            "import multiprocessing as mp, concurrent.futures as cf, functools;"
            "cf.ProcessPoolExecutor = functools.partial("
            'cf.ProcessPoolExecutor, mp_context=mp.get_context("forkserver"))'
        ),
    }
    times: dict[str, list[float]] = {name: [] for name in installs}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(repeat):
            for name, install in installs.items():
                tree = os.path.join(tmp, "tree")
                shutil.rmtree(tree, ignore_errors=True)
                os.makedirs(tree)
                make_tree(tree, files)
                # --no-cache semantics: a fresh cache dir per run
                env_code = BLACK.format(install=install, path=tree)
                ENV["BLACK_CACHE_DIR"] = os.path.join(tmp, f"cache-{time.time_ns()}")
                times[name].append(run_python(env_code))
    return {name: statistics.median(t) for name, t in times.items()}


def report(title: str, figures: dict[str, float]) -> None:
    print(f"\n{title}")
    base = figures["corral"]
    for name, seconds in figures.items():
        ratio = "" if name == "corral" else f"   corral {seconds / base:.2f}x faster"
        print(f"  {name:<18} {seconds * 1000:8.1f} ms{ratio}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--only", default="first,short,black")
    args = parser.parse_args()
    only = set(args.only.split(","))
    print(f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load {os.getloadavg()}")
    if "first" in only:
        figures = bench_template(FIRST, args.repeat)
        report("pool start to first result (fresh interpreter)", totals(figures))
        report_steps(figures, ("import", "create", "first task"))
    if "short" in only:
        figures = bench_template(SHORT, args.repeat)
        report("short-lived pool: 100 tasks (fresh interpreter)", totals(figures))
    if "black" in only:
        if importlib.util.find_spec("black") is None:
            print("\nblack: not installed (pip install black)")
        else:
            report("black on 160 files, 2 workers (fresh interpreter)", bench_black(args.repeat))
    print(f"\nload after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
