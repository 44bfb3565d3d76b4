"""CPython tests that corral does not pass, on purpose; each with a one-line reason.

Keys are test ids below ``test.test_concurrent_futures.``, with ``*`` wildcards
(``fnmatch``). A test is listed here only when corral removes a wall the test relies
on, or the test reads a CPython private attribute; any other failure is a bug.
"""

EXCEPTED: dict[str, str] = {}
