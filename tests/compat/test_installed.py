"""``corral.install()``: stdlib-using code (``concurrent.futures`` names at call time).

The pattern of any library that does ``import concurrent.futures`` and calls
``concurrent.futures.ProcessPoolExecutor``, ``wait`` and ``as_completed``: installed,
it gets corral's; uninstalled, the stdlib's again.
"""

from __future__ import annotations

import concurrent.futures

import pytest

import corral
from tests.compat import stdlib_user
from tests.compat.conftest import Impl

N = 8
STDLIB_NAMES = {
    name: getattr(concurrent.futures, name)
    for name in ("ThreadPoolExecutor", "ProcessPoolExecutor", "wait", "as_completed")
}


@pytest.mark.slow
@pytest.mark.parametrize("method", ["fork", "forkserver"])
def test_stdlib_code_runs_installed(impl: Impl, method: str) -> None:
    with impl.installed():
        out = stdlib_user.crunch(N, method)
    assert out["pool"] is impl.futures.ProcessPoolExecutor
    assert out["done"] == N
    assert out["not_done"] == 0
    assert out["first_done"]
    assert out["completed"] == sorted(i * i for i in range(N))
    assert out["ordered"] == [i * i for i in range(N)]
    assert out["mapped"] == [2 * i for i in range(N)]
    for name, value in STDLIB_NAMES.items():  # restored on leaving the block
        assert getattr(concurrent.futures, name) is value


def test_stdlib_futures_mixed_with_installed_wait(impl: Impl) -> None:
    """Futures a stdlib pool made (bound before install) waited on by the installed names."""
    stdlib_pool = STDLIB_NAMES["ThreadPoolExecutor"](max_workers=1)
    try:
        with impl.installed(), concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
            futures = [stdlib_pool.submit(pow, 2, 5), pool.submit(pow, 3, 2)]
            done, not_done = concurrent.futures.wait(futures, timeout=60)
            assert (len(done), len(not_done)) == (2, 0)
            got = sorted(f.result() for f in concurrent.futures.as_completed(futures, 60))
            assert got == [9, 32]
    finally:
        stdlib_pool.shutdown(wait=True)


def test_install_handle_uninstall() -> None:
    handle = corral.install()
    try:
        assert concurrent.futures.ProcessPoolExecutor is corral.ProcessPoolExecutor
        assert concurrent.futures.process.ProcessPoolExecutor is corral.ProcessPoolExecutor
    finally:
        handle.uninstall()
    for name, value in STDLIB_NAMES.items():
        assert getattr(concurrent.futures, name) is value
