"""The seeds' examples (examples/seeds) run on corral and print what the seeds promise.

Examples with a ``main()`` run in this process: the file is loaded without its
``__main__`` block, its workload constants (``WORK_LIST``, ``PRIMES``) are shrunk and
``main()`` runs under capsys (the constants are read in this process only; the worker
processes get the numbers as arguments). Examples whose work is top-level code, or that
stop only on Ctrl+C, run as subprocesses: through examples/run_seed.py (which scales
``time.sleep`` down, in the worker processes too), or as they are.
"""

from __future__ import annotations

import ast
import importlib.util
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.error import URLError

import pytest

import corral
from corral import testing

ROOT = Path(__file__).resolve().parent.parent
SEEDS = ROOT / "examples" / "seeds"
RUNNER = ROOT / "examples" / "run_seed.py"
SEED_FILES = sorted(SEEDS.glob("seed*.py"))


def import_path(path: Path, name: str) -> ModuleType:
    """Imports the file at ``path`` as module ``name``; its ``__main__`` block does not run."""
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load(name: str, **constants: Any) -> ModuleType:
    """Loads examples/seeds/NAME.py and replaces its module-level ``constants``."""
    module = import_path(SEEDS / f"{name}.py", name)
    for key, value in constants.items():
        assert hasattr(module, key), f"{name} has no constant {key}"
        setattr(module, key, value)
    return module


#: Seconds an example may take through run_seed.py. Small, they take under 1 s; the
#: seeds' own sizes take 3-20 s (so a scaling that did not reach the workers shows).
RUN_SMALL_TIMEOUT = 8


def run_small_with_pid(name: str) -> tuple[str, int]:
    """Runs ``examples/run_seed.py NAME``; returns its stdout and its pid.

    It must exit cleanly, with nothing on stderr, within RUN_SMALL_TIMEOUT seconds.
    """
    with subprocess.Popen(
        [sys.executable, str(RUNNER), name],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    ) as proc:
        try:
            out, err = proc.communicate(timeout=RUN_SMALL_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
            raise AssertionError(
                f"{name} still ran after {RUN_SMALL_TIMEOUT}s\n{out}\n{err}"
            ) from None
    assert proc.returncode == 0, f"exit status {proc.returncode}\n{err}"
    assert err == "", err
    return out, proc.pid


def run_small(name: str) -> str:
    """Runs ``examples/run_seed.py NAME`` and returns its stdout (see run_small_with_pid)."""
    return run_small_with_pid(name)[0]


def last_list(text: str) -> list[Any]:
    """The last line of ``text`` that is a Python list literal, evaluated."""
    for line in reversed(text.splitlines()):
        if line.startswith("["):
            value = ast.literal_eval(line)
            assert isinstance(value, list)
            return value
    raise AssertionError(f"no list printed in:\n{text}")


def lists(text: str) -> list[list[Any]]:
    return [ast.literal_eval(line) for line in text.splitlines() if line.startswith("[")]


# --------------------------------------------------------------------- all examples


def runner_examples() -> dict[str, Any]:
    """examples/run_seed.py's table: example name -> how to run it small."""
    name = "corral_examples_run_seed"
    module = sys.modules.get(name)
    if module is None:
        spec = importlib.util.spec_from_file_location(name, RUNNER)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # its dataclass looks itself up there
        spec.loader.exec_module(module)
    examples: dict[str, Any] = module.EXAMPLES
    return examples


@pytest.mark.parametrize("path", SEED_FILES, ids=lambda p: p.stem)
def test_example_imports_corral_not_concurrent_futures(path: Path) -> None:
    imported = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            imported |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module)
    assert "corral" in imported
    assert not {name for name in imported if name.split(".")[0] == "concurrent"}


def test_every_example_has_a_small_run() -> None:
    assert sorted(runner_examples()) == [path.stem for path in SEED_FILES]


#: The examples whose seed uses a process pool: with corral's, not a thread pool.
PROCESS_POOL_EXAMPLES = {
    "seed000_wait": "ProcessPoolExecutor",
    "seed000_as_completed": "ProcessPoolExecutor",
    "seed001_as_completed_errors": "ProcessPoolExecutor",
    "seed001_done_callbacks": "ProcessPoolExecutor",
    "seed001_asyncio": "ProcessPoolExecutor",
    "seed002_is_prime": "PE",
    "seed003_wait_as_completed": "ProcessPoolExecutor",
}


@pytest.mark.parametrize("name", sorted(PROCESS_POOL_EXAMPLES))
def test_process_pool_examples_use_corrals_process_pool(name: str) -> None:
    """Read from the source: the seed001 files run their pool at import time."""
    alias = PROCESS_POOL_EXAMPLES[name]
    tree = ast.parse((SEEDS / f"{name}.py").read_text(encoding="utf-8"))
    bound = {
        alias_.asname or alias_.name: alias_.name
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module == "corral"
        for alias_ in node.names
    }
    assert bound[alias] == "ProcessPoolExecutor"


def test_003_map_sum_has_main2_on_a_process_pool() -> None:
    example = load("seed003_map_sum")
    assert example.futures is corral
    assert "futures.ProcessPoolExecutor()" in (SEEDS / "seed003_map_sum.py").read_text()


def runner_module() -> ModuleType:
    runner_examples()
    return sys.modules["corral_examples_run_seed"]


def test_runner_rewrites_only_the_constants() -> None:
    source = (SEEDS / "seed002_is_prime.py").read_text(encoding="utf-8")
    small = runner_module().rewrite_constants(source, {"PRIMES": [7, 9]})
    before, after = source.splitlines(), small.splitlines()
    assert len(after) == len(before)  # tracebacks keep their line numbers
    changed = [(b, a) for b, a in zip(before, after, strict=True) if a != b]
    assert changed[0] == ("PRIMES = [", "PRIMES = [7, 9]")
    assert all(a == "" for _, a in changed[1:])  # the rest of the old list
    namespace: dict[str, Any] = {}
    exec(compile(small, "small", "exec"), namespace)  # the __main__ block does not run
    assert namespace["PRIMES"] == [7, 9]
    with pytest.raises(ValueError, match="WORK_LIST"):
        runner_module().rewrite_constants(source, {"WORK_LIST": []})


# Those that no test below already runs through examples/run_seed.py.
SCRIPT_SMOKE = sorted(
    set(runner_examples())
    - {
        "seed001_as_completed_errors",
        "seed001_done_callbacks",
        "seed001_asyncio",
        "seed002_as_completed_urls",
        "seed003_map_sum",
    }
)


@pytest.mark.slow
@pytest.mark.parametrize("name", SCRIPT_SMOKE)
def test_example_runs_small_as_a_script(name: str) -> None:
    assert run_small(name).strip()


# --------------------------------------------------------------------- seed 000


@pytest.mark.slow
def test_000_quit_flag_stops_on_ctrl_c() -> None:
    """The seed's way out: Ctrl+C sets the flag and the tasks end; no traceback."""
    proc = subprocess.Popen(
        [sys.executable, "-u", str(SEEDS / "seed000_quit_flag.py")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    work = re.compile(r"(Jack|Jill) is doing work\.\.\.")
    try:
        assert proc.stdout is not None
        before = ""
        # Both tasks have printed, so setup() is in its waiting loop. (Lines printed
        # from the two threads may run together: search the text, not line by line.)
        while set(work.findall(before)) != {"Jack", "Jill"}:
            line = proc.stdout.readline()
            assert line, f"the example ended before Ctrl+C:\n{before}"
            before += line
        proc.send_signal(signal.SIGINT)
        after, err = proc.communicate(timeout=testing.slack(30))  # a hang guard
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert err == ""  # no KeyboardInterrupt traceback, from main or from the workers
    assert work.sub("", before + after).strip() == ""


def test_000_download_many(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    flags = import_path(SEEDS / "flags.py", "flags")
    monkeypatch.setitem(sys.modules, "flags", flags)  # what `from flags import ...` finds
    example = load("seed000_download_many")
    flags.main(example.download_many)
    codes, summary = capsys.readouterr().out.splitlines()
    # Each task prints its code and a space in two writes, so from threads they may
    # interleave ("BDCD  "); the codes themselves are two letters each.
    letters = "".join(codes.split())
    assert sorted(letters[i : i + 2] for i in range(0, len(letters), 2)) == sorted(flags.POP20_CC)
    assert re.fullmatch(r"20 downloads in \d+\.\d\ds \(20 files saved\)", summary), summary


def test_000_wait(capsys: pytest.CaptureFixture[str]) -> None:
    work = [10, 100, 1000, 10000]
    load("seed000_wait", WORK_LIST=work).main()
    out = capsys.readouterr().out
    scheduled = re.findall(r"^Scheduled for (\d+): <Future at \w+ state=\w+", out, re.M)
    assert [int(n) for n in scheduled] == work
    assert re.search(
        r"^Completed Task: \{(<Future at \w+ state=finished returned int>(, )?){4}\}$", out, re.M
    )
    assert "\nOver timeout Task: set()\n" in out
    done, not_done = lists(out)
    assert sorted(done) == [55, 5050, 500500, 50005000]
    assert not_done == []


def test_000_as_completed(capsys: pytest.CaptureFixture[str]) -> None:
    load("seed000_as_completed", WORK_LIST=[10, 100, 1000, 10000]).main()
    out = capsys.readouterr().out
    results = re.findall(r"^Result: (\d+), Done: True$", out, re.M)
    assert sorted(int(r) for r in results) == [55, 5050, 500500, 50005000]
    assert out.count("Cancelled: False\n") == 4


# --------------------------------------------------------------------- seed 001


def check_001_output(out: str, runner_pid: int) -> None:
    """Ten tasks on three worker processes: every third raises, the others return it."""
    assert out.count("submit done") == 1
    # Lines printed from different processes may share a line: search the whole text.
    starts = re.findall(r"task (\d+) start in (\d+)", out)
    assert sorted(int(index) for index, _ in starts) == list(range(10))
    pids = {int(pid) for _, pid in starts}
    assert runner_pid not in pids  # not run in the script's process: in workers,
    assert 2 <= len(pids) <= 3  # of which max_workers=3 (the sleeps overlap)
    done = re.findall(r"task (\d+) done", out)
    assert sorted(int(index) for index in done) == [1, 2, 4, 5, 7, 8]
    errors = re.findall(r"exception: task (\d+) error", out)
    assert sorted(int(index) for index in errors) == [0, 3, 6, 9]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["seed001_as_completed_errors", "seed001_done_callbacks"])
def test_001_errors_and_results(name: str) -> None:
    """No ``__main__`` guard (the pool is made at import): corral forks the workers."""
    check_001_output(*run_small_with_pid(name))


@pytest.mark.slow
def test_001_asyncio_run_in_executor() -> None:
    """Guarded, so forkserver workers: run_seed.py's sleep scaling reaches them too
    (unscaled, the example takes about 18 s, beyond RUN_SMALL_TIMEOUT)."""
    out, pid = run_small_with_pid("seed001_asyncio")
    check_001_output(out, pid)
    assert sorted(last_list(out)) == [1, 2, 4, 5, 7, 8]


# --------------------------------------------------------------------- seed 002


def test_002_map_timeout(capsys: pytest.CaptureFixture[str]) -> None:
    load("seed002_map_timeout").main()
    assert capsys.readouterr().out == "[11, 22, 33, 44, 55, 66]\n"


@pytest.mark.slow
def test_002_map_timeout_stops_the_late_work() -> None:
    """map(timeout=2) raises TimeoutError, and corral stops the item still running."""
    example = load("seed002_map_timeout")
    seen: list[str] = []

    def work(x: int) -> int:
        if x == 3:  # the late one: polls corral.cancelled(), for 10 s at most
            testing.wait_until(corral.cancelled, timeout=10, interval=0.005)
            seen.append("cancelled")
        return x * 11

    example.work = work
    with pytest.raises(TimeoutError):
        example.main()
    assert seen == ["cancelled"]  # the with block's exit waited for the task to stop


def fake_urlopen(reachable: set[str]) -> Any:
    """An urlopen that answers for ``reachable`` URLs and fails like an offline machine."""

    class Page:
        def __init__(self, url: str) -> None:
            self.url = url

        def read(self) -> bytes:
            return b"x" * len(self.url)

    def urlopen(url: str, timeout: float) -> Page:
        assert timeout == 1
        if url not in reachable:
            raise URLError(socket.gaierror(-2, "Name or service not known"))
        return Page(url)

    return urlopen


def test_002_as_completed_urls_offline(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    example = load("seed002_as_completed_urls")
    monkeypatch.setattr(example, "urlopen", fake_urlopen(reachable=set()))
    example.main()
    lines = capsys.readouterr().out.splitlines()
    assert sorted(lines) == sorted(f"Fail to open : {url}" for url in example.URLS)


def test_002_as_completed_urls_some_fail(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    example = load("seed002_as_completed_urls")
    ok = {"http://www.cnn.com", "http://www.bbc.co.uk"}
    monkeypatch.setattr(example, "urlopen", fake_urlopen(reachable=ok))
    example.main()
    expected = [
        f"[{url}] has {len(url)} characters." if url in ok else f"Fail to open : {url}"
        for url in example.URLS
    ]
    assert sorted(capsys.readouterr().out.splitlines()) == sorted(expected)


def test_002_as_completed_urls_real_urlopen() -> None:
    """The file as it is: each URL reported once (offline: all 'Fail to open')."""
    out = run_small("seed002_as_completed_urls")
    example = load("seed002_as_completed_urls")
    pattern = r"Fail to open : (\S+)|\[(\S+)\] has \d+ characters\."
    reported = [
        m.group(1) or m.group(2) for m in map(re.compile(pattern).fullmatch, out.splitlines()) if m
    ]
    assert sorted(reported) == sorted(example.URLS), out


#: Seed 002 on small numbers, and what it prints (test_dask.py runs it on a cluster too).
IS_PRIME_NUMBERS = [97, 91, 7919, 7917, 1, 3, 1000003]
IS_PRIME_OUTPUT = [
    "97 is prime: True",
    "91 is prime: False",
    "7919 is prime: True",
    "7917 is prime: False",
    "1 is prime: False",
    "3 is prime: True",
    "1000003 is prime: True",
]


def test_002_is_prime(capsys: pytest.CaptureFixture[str]) -> None:
    load("seed002_is_prime", PRIMES=IS_PRIME_NUMBERS).main()
    assert capsys.readouterr().out.splitlines() == IS_PRIME_OUTPUT


# --------------------------------------------------------------------- seed 003


@pytest.mark.parametrize("entry", ["main1", "main2"])  # thread pool, process pool
def test_003_map_sum(entry: str, capsys: pytest.CaptureFixture[str]) -> None:
    getattr(load("seed003_map_sum", WORK_LIST=[10, 100, 1000, 10000]), entry)()
    out = capsys.readouterr().out
    assert re.fullmatch(r"\n Result -> \[55, 5050, 500500, 50005000\] Time : \d+\.\d\ds\n", out)


@pytest.mark.slow
def test_003_map_sum_script_runs_both() -> None:
    out = run_small("seed003_map_sum")
    results = re.findall(r"^ Result -> (\[.*\]) Time : \d+\.\d\ds$", out, re.M)
    assert results == ["[5050, 500500, 50005000, 5000050000]"] * 2


def test_003_wait_as_completed(capsys: pytest.CaptureFixture[str]) -> None:
    work = [10, 100, 1000, 10000]
    load("seed003_wait_as_completed", WORK_LIST=work).main()
    out = capsys.readouterr().out
    scheduled = re.findall(r"^Scheduled for (\d+) : <Future at \w+ state=\w+", out, re.M)
    assert [int(n) for n in scheduled] == work
    assert "\nPending ones after waiting for 7seconds : set()\n" in out
    assert sorted(last_list(out)) == [55, 5050, 500500, 50005000]
    results = re.findall(r"^Future Result : (\d+), Done: True$", out, re.M)
    assert sorted(int(r) for r in results) == [55, 5050, 500500, 50005000]
    assert out.count("Future Cancelled : False\n") == 4
    assert re.search(r"\n Time : \d+\.\d\ds\n$", out)
