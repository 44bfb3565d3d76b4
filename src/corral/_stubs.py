"""Public names whose behaviour is not built yet: they fail loudly, never quietly wrong."""

from __future__ import annotations

from typing import Any, NoReturn


def _not_yet(name: str, issue: str) -> NoReturn:
    raise NotImplementedError(
        f"corral.{name} is not implemented yet ({issue}); use corral.ThreadPoolExecutor "
        "meanwhile, or concurrent.futures for this part"
    )


class DaskExecutor:
    """The executor contract on a Dask cluster (not built yet: raises NotImplementedError)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        _not_yet("DaskExecutor", "the Dask backend issue")
