"""A local stand-in for the ``flags`` module of Fluent Python (2nd ed., chapter 20).

The book's module downloads the flags of the 20 most populous countries from a web
server; seed000_download_many.py imports ``save_flag``, ``get_flag`` and ``main`` from
it. This one needs no network: ``get_flag`` sleeps for ``LATENCY`` seconds (the wait
for the server that a thread pool overlaps) and returns a few bytes, and ``save_flag``
writes them into a temporary folder that ``main`` removes when it is done.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path

POP20_CC = [
    "CN", "IN", "US", "ID", "BR", "PK", "NG", "BD", "RU", "JP",
    "MX", "PH", "VN", "ET", "EG", "DE", "IR", "TR", "CD", "FR",
]  # fmt: skip

#: Seconds one get_flag() takes: a stand-in for one HTTP round trip.
LATENCY = 0.05

#: Where save_flag() writes; main() points it at a temporary folder. None: write nothing.
DEST_DIR: Path | None = None


def save_flag(img: bytes, filename: str) -> None:
    if DEST_DIR is not None:
        (DEST_DIR / filename).write_bytes(img)


def get_flag(cc: str) -> bytes:
    time.sleep(LATENCY)
    return b"GIF89a" + cc.lower().encode()


def main(downloader: Callable[[list[str]], int]) -> None:
    """Runs ``downloader(POP20_CC)`` and prints how many flags it got, and how fast."""
    global DEST_DIR
    with tempfile.TemporaryDirectory(prefix="corral-flags-") as folder:
        DEST_DIR = Path(folder)
        try:
            t0 = time.perf_counter()
            count = downloader(POP20_CC)
            elapsed = time.perf_counter() - t0
            saved = len(list(DEST_DIR.iterdir()))
        finally:
            DEST_DIR = None
    print(f"\n{count} downloads in {elapsed:.2f}s ({saved} files saved)")
