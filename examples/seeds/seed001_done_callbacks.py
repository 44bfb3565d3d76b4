# Seed 001, "ProcessPoolExecutor" example 2: done callbacks, then wait().
# Source: seeds/001_c32f475c3a2c263b.txt, run on corral.
#
# Changes from the seed:
#   - import: `from concurrent.futures import Future, ProcessPoolExecutor, wait`
#     -> `from corral import Future, ProcessPoolExecutor, wait`.
#   - indentation restored (the seed lost it).
#
# Like the seed, the pool is made at the top level, with no `if __name__ == "__main__":`
# guard: corral starts its workers with fork for such a script. The callbacks run in
# this process, in corral's manager thread.
import os
import time
from corral import Future, ProcessPoolExecutor, wait


def task(index: int) -> int:
    print(f"task {index} start in {os.getpid()}")

    if index % 3 == 0:
        raise RuntimeError(f"task {index} error")

    time.sleep(3 - index % 3)

    return index


def callback(fut: Future[int]):
    try:
        # 에러 없이 task가 완료되었을 때 결과를 가져옴
        result = fut.result()
        print(f"task {result} done")
    except BaseException as e:
        # task를 실행하는 도중 발생한 에러 처리
        print(f"exception: {e}")


with ProcessPoolExecutor(max_workers=3) as executor:
    # Non-blocking
    # pool 크기에 상관 없이 작업 자체는 바로 제출 됨
    futures: list[Future[int]] = []
    for args in [(i,) for i in range(10)]:
        future = executor.submit(task, *args)
        future.add_done_callback(callback)
        futures.append(future)
    print("submit done")

    # 모든 작업이 완료될 때까지 대기
    wait(futures)
