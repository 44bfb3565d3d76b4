"""tqdm's ``tqdm.contrib.concurrent.process_map`` / ``thread_map``.

tqdm looks ``concurrent.futures.ProcessPoolExecutor`` / ``ThreadPoolExecutor`` up at call
time, patches the pool's ``submit`` on the instance to update the bar from a done
callback, and calls ``ex.map``: the bar reaches N/N only if ``map`` goes through that
``submit`` for every item.
"""

from __future__ import annotations

import concurrent.futures
import io

import pytest
import tqdm
from tqdm.contrib.concurrent import process_map, thread_map

from tests.compat import workers
from tests.compat.conftest import Impl

N = 12


@pytest.mark.parametrize(
    ("mapper", "pool"),
    [(thread_map, "ThreadPoolExecutor"), (process_map, "ProcessPoolExecutor")],
    ids=["thread_map", "process_map"],
)
def test_tqdm_map_reaches_total(
    impl: Impl, mapper: object, pool: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # tqdm's monitor thread lives on for the process: the leak check would count it
    monkeypatch.setattr(tqdm.tqdm, "monitor_interval", 0)
    out = io.StringIO()
    with impl.installed():
        assert getattr(concurrent.futures, pool) is getattr(impl.futures, pool)
        results = mapper(  # type: ignore[operator]
            workers.square, range(N), max_workers=2, timeout=30, file=out, mininterval=0
        )
    assert results == [x * x for x in range(N)]
    text = out.getvalue()
    final = text.rsplit("\r", 1)[-1]
    assert f"{N}/{N}" in final, text
