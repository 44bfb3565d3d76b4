"""Runs CPython's own ``test.test_concurrent_futures`` against corral, unmodified.

The suite is the one the running interpreter ships (Python 3.13 here: the package
``test.test_concurrent_futures``); nothing of it is copied into this repository.
corral's names are installed into ``concurrent.futures`` first (``corral.install(future=True)``),
so every executor, future, ``wait`` and ``as_completed`` the suite makes is corral's.

Tests listed in ``excepted.py`` are skipped, each with its one-line reason (a wall corral
removes on purpose, or a CPython private attribute); every other test must pass.
``--stdlib`` runs the same selection on the stdlib (for the counts side by side);
``--excepted`` runs only the listed tests, to see which of them fail on corral and so
still belong on the list.

Usage: python tests/cpython/run.py [--stdlib | --excepted] [-k PATTERN] [MODULE ...]
Exit status: 0 when every test that ran passed (or was skipped), 1 otherwise, 2 when
the interpreter has no such suite.
"""

from __future__ import annotations

import argparse
import faulthandler
import fnmatch
import importlib.util
import os
import sys
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
MODULES = (
    "test_as_completed",
    "test_deadlock",
    "test_future",
    "test_init",
    "test_process_pool",
    "test_shutdown",
    "test_thread_pool",
    "test_wait",
)
#: A test still running after this long is a hang: dump every thread's stack and exit.
HANG_SECONDS = 180


def _excepted() -> dict[str, str]:
    sys.path.insert(0, HERE)
    try:
        from excepted import EXCEPTED
    finally:
        sys.path.remove(HERE)
    return EXCEPTED


def _reason(test_id: str, excepted: dict[str, str]) -> str | None:
    for pattern, reason in excepted.items():
        if fnmatch.fnmatchcase(test_id, "test.test_concurrent_futures." + pattern):
            return reason
    return None


def _tests(suite: unittest.TestSuite) -> list[unittest.TestCase]:
    out: list[unittest.TestCase] = []
    for item in suite:
        if isinstance(item, unittest.TestSuite):
            out += _tests(item)
        else:
            out.append(item)
    return out


class _Result(unittest.TextTestResult):
    """Arms a hang alarm around each test."""

    def startTest(self, test: unittest.TestCase) -> None:
        faulthandler.dump_traceback_later(HANG_SECONDS, exit=True)
        super().startTest(test)

    def stopTest(self, test: unittest.TestCase) -> None:
        super().stopTest(test)
        faulthandler.cancel_dump_traceback_later()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--stdlib", action="store_true", help="run on the stdlib, not corral")
    mode.add_argument("--excepted", action="store_true", help="run only the excepted tests")
    parser.add_argument("-k", dest="pattern", help="only tests whose id contains this")
    parser.add_argument("-v", "--verbose", action="store_true")
    parser.add_argument("modules", nargs="*", default=MODULES)
    args = parser.parse_args()

    if importlib.util.find_spec("test.test_concurrent_futures") is None:
        print(f"this Python ({sys.version.split()[0]}) ships no test.test_concurrent_futures")
        return 2
    # worker processes (fork) inherit unflushed output: flush every line
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    sys.stderr.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    if not args.stdlib:
        import corral

        corral.install(future=True)  # before the suite binds the names at its import

    excepted = _excepted()
    loader = unittest.TestLoader()
    suite = unittest.TestSuite()
    counts = {"excepted": 0}
    for name in args.modules:
        for test in _tests(loader.loadTestsFromName(f"test.test_concurrent_futures.{name}")):
            test_id = test.id()
            if args.pattern and args.pattern not in test_id:
                continue
            reason = _reason(test_id, excepted)
            if args.excepted and reason is None:
                continue
            if reason is not None and not args.stdlib and not args.excepted:
                counts["excepted"] += 1
                method = getattr(test, test._testMethodName)
                setattr(test, test._testMethodName, unittest.skip(f"excepted: {reason}")(method))
            suite.addTest(test)

    which = "the stdlib" if args.stdlib else "corral"
    print(f"CPython {sys.version.split()[0]} test.test_concurrent_futures on {which}")
    began = time.monotonic()
    runner = unittest.TextTestRunner(
        stream=sys.stdout, verbosity=2 if args.verbose else 1, resultclass=_Result
    )
    result = runner.run(suite)
    skipped = len(result.skipped) - counts["excepted"]
    failed = len(result.failures) + len(result.errors) + len(result.unexpectedSuccesses)
    passed = result.testsRun - failed - len(result.skipped) - len(result.expectedFailures)
    print(
        f"{counts['excepted']} excepted (tests/cpython/excepted.py), "
        f"{time.monotonic() - began:.0f} s"
    )
    print(f"{which}: {passed} passed, {failed} failed, {skipped} skipped")
    return 0 if failed == 0 and result.testsRun > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
