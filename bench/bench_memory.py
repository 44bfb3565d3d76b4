"""What moving big buffers costs on this machine, whatever the pool: the floors under
the arrays figure of ``peers.py``.

  bandwidth  16 MB copies into memory written before (numpy ``copyto``), in 1, 2 and 3
             processes at once: the aggregate GB/s. If it does not grow with the
             processes, copies made by the parent and the workers do not overlap, and
             a round trip's time is its number of copies times one copy.
  fresh      one 16 MB buffer written into a new shared-memory segment (memfd), with a
             page fault per page and with ``MAP_POPULATE``, against a copy into memory
             written before: what a transport that never reuses its segments pays.
  mapped     16 MB read through a new private mapping of a segment written before (a
             page fault per page), against reading memory already mapped: what building
             an argument on the sender's segment itself, writable, would pay per task.

Run: ``.venv/bin/python bench/bench_memory.py [--copies 100]`` (needs numpy; Linux)
"""

from __future__ import annotations

import argparse
import mmap
import multiprocessing
import os
import time
from typing import Any

import numpy as np

SIZE = 16 << 20


def _copy_loop(copies: int, go: Any, out: Any) -> None:
    src = np.ones(SIZE // 8)
    dst = np.zeros_like(src)
    np.copyto(dst, src)  # every page of both written once before timing
    go.wait()
    begin = time.perf_counter()
    for _ in range(copies):
        np.copyto(dst, src)
    out.put(time.perf_counter() - begin)


def bandwidth(copies: int) -> None:
    ctx = multiprocessing.get_context("fork")
    print(f"16 MB copies into memory written before, {copies} per process")
    for count in (1, 2, 3):
        go, out = ctx.Event(), ctx.Queue()
        procs = [ctx.Process(target=_copy_loop, args=(copies, go, out)) for _ in range(count)]
        for p in procs:
            p.start()
        go.set()
        times = [out.get(timeout=120) for _ in procs]
        for p in procs:
            p.join()
        per_copy = ", ".join(f"{t / copies * 1000:.2f}" for t in times)
        rate = count * copies * SIZE / max(times) / 1e9
        print(f"  {count} process(es): {rate:5.1f} GB/s together; ms per copy: {per_copy}")


def fresh(rounds: int = 7) -> None:
    src = np.ones(SIZE // 8)

    def into_segment(flags: int) -> float:
        fd = os.memfd_create("bench-memory", os.MFD_CLOEXEC)
        try:
            os.ftruncate(fd, SIZE)
            begin = time.perf_counter()
            segment = mmap.mmap(fd, SIZE, flags=flags)
            np.frombuffer(segment, dtype=src.dtype)[:] = src
            elapsed = time.perf_counter() - begin
            segment.close()
            return elapsed
        finally:
            os.close(fd)

    reused = np.zeros_like(src)
    np.copyto(reused, src)

    def into_reused() -> float:
        begin = time.perf_counter()
        np.copyto(reused, src)
        return time.perf_counter() - begin

    cases = {
        "new segment, a fault per page": lambda: into_segment(mmap.MAP_SHARED),
        "new segment, MAP_POPULATE": lambda: into_segment(mmap.MAP_SHARED | mmap.MAP_POPULATE),
        "memory written before": into_reused,
    }
    best = {name: min(run() for _ in range(rounds)) for name, run in cases.items()}
    floor = best["memory written before"]
    print(f"one 16 MB buffer written (best of {rounds})")
    for name, seconds in best.items():
        print(f"  {name:31s} {seconds * 1000:6.2f} ms  {seconds / floor:4.1f}x")


def mapped(rounds: int = 7) -> None:
    src = np.ones(SIZE // 8)
    fd = os.memfd_create("bench-memory", os.MFD_CLOEXEC)
    try:
        os.ftruncate(fd, SIZE)
        with mmap.mmap(fd, SIZE) as shared:
            np.frombuffer(shared, dtype=src.dtype)[:] = src

        def through_new_mapping() -> float:
            begin = time.perf_counter()
            private = mmap.mmap(fd, SIZE, flags=mmap.MAP_PRIVATE)
            np.frombuffer(private, dtype=src.dtype).sum()
            elapsed = time.perf_counter() - begin
            private.close()
            return elapsed

        def mapped_before() -> float:
            begin = time.perf_counter()
            src.sum()
            return time.perf_counter() - begin

        new = min(through_new_mapping() for _ in range(rounds))
        old = min(mapped_before() for _ in range(rounds))
    finally:
        os.close(fd)
    print(f"16 MB read (best of {rounds})")
    print(f"  {'through a new private mapping':31s} {new * 1000:6.2f} ms  {new / old:4.1f}x")
    print(f"  {'memory mapped before':31s} {old * 1000:6.2f} ms  {1.0:4.1f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, default=100, help="copies per process")
    args = parser.parse_args()
    print(f"{os.cpu_count()} CPUs, load {os.getloadavg()}")
    bandwidth(args.copies)
    fresh()
    mapped()


if __name__ == "__main__":
    main()
