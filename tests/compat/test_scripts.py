"""Throwaway scripts: ``python - < script.py`` and ``python -c "..."``.

Shell one-liners, notebooks piped to ``python -``, CI steps: a default
``ProcessPoolExecutor()`` mapping a function the script itself defines, the stdin one
without an ``if __name__ == "__main__":`` guard (fine with the stdlib's fork default on
Linux before 3.14).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.compat.conftest import Impl

pytestmark = pytest.mark.slow  # each test runs a script and its process pool

BODY = """
def cube(x):
    return x ** 3

with futures.ProcessPoolExecutor() as pool:
    print("RESULT", list(pool.map(cube, range(8), timeout=60)))
    print("SUBMIT", pool.submit(cube, 11).result(timeout=60))
"""
EXPECTED = ["RESULT [0, 1, 8, 27, 64, 125, 216, 343]", "SUBMIT 1331"]


def _check(proc: subprocess.CompletedProcess[str]) -> None:
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stdout.splitlines() if line.startswith(("RESULT", "SUBMIT"))]
    assert lines == EXPECTED, (proc.stdout, proc.stderr)


def test_script_on_stdin_without_guard(impl: Impl, tmp_path: Path) -> None:
    script = impl.script_import() + "\n" + textwrap.dedent(BODY)
    proc = subprocess.run(
        [sys.executable, "-"],
        input=script,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    _check(proc)


def test_dash_c_script(impl: Impl, tmp_path: Path) -> None:
    script = impl.script_import() + "\n" + textwrap.dedent(BODY)
    proc = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    _check(proc)


def test_script_file_without_guard_on_stdin_style(impl: Impl, tmp_path: Path) -> None:
    """The same body in a file run as ``python script.py`` (no guard either)."""
    path = tmp_path / "script.py"
    path.write_text(impl.script_import() + "\n" + textwrap.dedent(BODY))
    proc = subprocess.run(
        [sys.executable, str(path)], capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    _check(proc)
