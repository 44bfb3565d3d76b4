"""corral.ProcessPoolExecutor (being built: see the process pool issue)."""

from __future__ import annotations

from typing import Any

from ._stubs import _not_yet


class ProcessPoolExecutor:
    """A process pool that never breaks (not built yet: raises NotImplementedError)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        _not_yet("ProcessPoolExecutor", "the process pool issue")
