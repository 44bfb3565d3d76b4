"""black formatting a tree of files: its ``reformat_many`` on a ProcessPoolExecutor.

black (``black/concurrency.py``) does ``from concurrent.futures import
ProcessPoolExecutor, ThreadPoolExecutor`` when it first formats more than one file, makes
``ProcessPoolExecutor(max_workers=workers)`` (falling back to a one-thread
``ThreadPoolExecutor`` on ImportError/NotImplementedError/OSError) and drives it with
``loop.run_in_executor`` on an asyncio (or uvloop) loop. The corral run installs corral
before black is imported, so black binds corral's pool; the script records which pool
classes were made, to prove it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.compat.conftest import Impl

black = pytest.importorskip("black")

FILES = 20

RUNNER = textwrap.dedent(
    """
    import concurrent.futures, json, sys
    impl, tree, report = sys.argv[1:4]
    if impl == "corral":
        import corral
        corral.install()
    made = []
    for name in ("ProcessPoolExecutor", "ThreadPoolExecutor"):
        cls = getattr(concurrent.futures, name)
        def init(self, *args, _orig=cls.__init__, **kwargs):
            _orig(self, *args, **kwargs)
            made.append(type(self).__module__ + "." + type(self).__qualname__)
        cls.__init__ = init
    import black
    sys.argv = ["black", "--workers", "2", tree]
    try:
        black.patched_main()
        code = 0
    except SystemExit as exc:
        code = exc.code
    with open(report, "w") as f:
        json.dump({"code": code, "made": made}, f)
    sys.exit(code)
    """
)


def _bad_source(i: int) -> str:
    """A badly formatted but valid module."""
    return (
        f"import os,sys\nx{i}  =  {{ 'a':1,'b' :[1,2,3 ],\n'c':( {i},)}}\n"
        f"def f{i}( a,b = 2 ,*args,**kw ):\n  if a==b :return  'same'\n"
        f"  else :\n     return [ a ,b,\n  args ]\nclass C{i} ( object ) :\n"
        f"  def m(self) : return f{i}( 1 , b= {i} )\n"
        f"y{i}=lambda q :q+{i}\nprint( f{i}(1),x{i} ['a'] )\n"
    )


def _make_tree(root: Path) -> None:
    for i in range(FILES):
        sub = root / f"pkg{i % 4}"
        sub.mkdir(parents=True, exist_ok=True)
        (sub / f"mod{i}.py").write_text(_bad_source(i))


def _run_black(impl_name: str, base: Path) -> dict[str, object]:
    tree = base / "tree"
    _make_tree(tree)
    report = base / "report.json"
    env = {**os.environ, "BLACK_CACHE_DIR": str(base / "cache")}
    env.pop("BLACK_NUM_WORKERS", None)
    proc = subprocess.run(
        [sys.executable, "-c", RUNNER, impl_name, str(tree), str(report)],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
        cwd=base,
    )
    out: dict[str, object] = json.loads(report.read_text()) if report.exists() else {}
    out["returncode"] = proc.returncode
    out["stderr"] = proc.stderr
    out["files"] = {str(p.relative_to(tree)): p.read_text() for p in sorted(tree.rglob("*.py"))}
    return out


@pytest.fixture(scope="module")
def stdlib_black(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    base = tmp_path_factory.mktemp("black-stdlib")
    try:
        return _run_black("stdlib", base)
    finally:
        shutil.rmtree(base / "cache", ignore_errors=True)


@pytest.mark.slow
def test_black_formats_tree(impl: Impl, stdlib_black: dict[str, object], tmp_path: Path) -> None:
    out = stdlib_black if not impl.is_corral else _run_black(impl.name, tmp_path)
    assert out["returncode"] == 0, out["stderr"]
    assert out.get("code") == 0, out["stderr"]
    assert f"{FILES} files reformatted" in str(out["stderr"]), out["stderr"]
    expected_pool = f"{impl.futures.ProcessPoolExecutor.__module__}.ProcessPoolExecutor"
    assert out["made"] == [expected_pool], out  # a process pool, and no thread fallback
    files = out["files"]
    assert isinstance(files, dict)
    assert len(files) == FILES
    # identical to the stdlib run, and really formatted
    assert files == stdlib_black["files"]
    for i in range(FILES):
        want = black.format_str(_bad_source(i), mode=black.Mode())
        assert files[f"pkg{i % 4}/mod{i}.py"] == want
