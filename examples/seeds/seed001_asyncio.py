# Seed 001, "ProcessPoolExecutor with asyncio": loop.run_in_executor + asyncio.as_completed.
# Source: seeds/001_c32f475c3a2c263b.txt, run on corral.
#
# Changes from the seed:
#   - import: `from concurrent.futures import ProcessPoolExecutor`
#     -> `from corral import ProcessPoolExecutor`.
#   - indentation restored (the seed lost it).
#   - `import os` and `import time` added: the seed's snippet uses them but relied on
#     the previous snippet's imports.
#   - the last two lines added: the seed defines cpu_bound_task() but never runs it.
# (corral futures are awaitable, so run_in_executor is optional with corral; the seed's
# way still works, which is the point here.)
import asyncio
import os
import time
from corral import ProcessPoolExecutor

def task(index: int) -> int:
    print(f"task {index} start in {os.getpid()}")

    if index % 3 == 0:
        raise RuntimeError(f"task {index} error")

    time.sleep(10 - index % 3)

    return index

async def cpu_bound_task() -> list[int]:
    loop = asyncio.get_event_loop()
    with ProcessPoolExecutor(max_workers=3) as executor:
        # Non-blocking
        # pool 크기에 상관 없이 작업 자체는 바로 제출 됨
        futures = [
            loop.run_in_executor(executor, task, *args) for args in [(i,) for i in range(10)]
        ]
        print("submit done")

        results = []
        for future in asyncio.as_completed(futures):
            try:
                # 에러 없이 task가 완료되었을 때 결과를 가져옴
                # 기다리는 동안 다른 async 작업이 실행될 수 있음
                result = await future
                print(f"task {result} done")

                results.append(result)
            except BaseException as e:
                # task를 실행하는 도중 발생한 에러 처리
                print(f"exception: {e}")

    return results

if __name__ == "__main__":
    print(asyncio.run(cpu_bound_task()))
