"""The ``impl`` fixture: the stdlib's concurrent.futures or corral, for the same test code."""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest

import corral


@dataclasses.dataclass(frozen=True)
class Impl:
    """One implementation under test: its name and the module that has the API."""

    name: str
    futures: ModuleType

    @property
    def is_corral(self) -> bool:
        return self.name == "corral"

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        """concurrent.futures hands out this implementation for the block (stdlib: as is)."""
        if self.is_corral:
            with corral.install():
                yield
        else:
            yield

    def script_import(self) -> str:
        """The import line a script uses to get this implementation as ``futures``."""
        if self.is_corral:
            return "import corral as futures"
        return "import concurrent.futures as futures"


IMPLS = {
    "stdlib": Impl("stdlib", concurrent.futures),
    "corral": Impl("corral", corral),
}


@pytest.fixture(params=sorted(IMPLS, reverse=True))  # stdlib first: the reference
def impl(request: pytest.FixtureRequest) -> Any:
    return IMPLS[request.param]
