# Seed 001, "ProcessPoolExecutor" example 1: as_completed with tasks that raise.
# Source: seeds/001_c32f475c3a2c263b.txt, run on corral.
#
# Changes from the seed:
#   - import: `from concurrent.futures import ProcessPoolExecutor, as_completed`
#     -> `from corral import ProcessPoolExecutor, as_completed`.
#   - indentation restored (the seed lost it).
#
# Like the seed, the pool is made at the top level, with no `if __name__ == "__main__":`
# guard: corral starts its workers with fork for such a script (forkserver and spawn
# would run the top level again in every worker).
import os
import time
from corral import ProcessPoolExecutor, as_completed


def task(index: int) -> int:
    print(f"task {index} start in {os.getpid()}")

    if index % 3 == 0:
        raise RuntimeError(f"task {index} error")

    time.sleep(3 - index % 3)

    return index


with ProcessPoolExecutor(max_workers=3) as executor:
    # Non-blocking
    # pool 크기에 상관 없이 작업 자체는 바로 제출 됨
    futures = [executor.submit(task, *args) for args in [(i,) for i in range(10)]]
    print("submit done")

    # 완료된 작업을 가져옴
    for future in as_completed(futures):
        try:
            # 에러 없이 task가 완료되었을 때 결과를 가져옴
            result = future.result()
            print(f"task {result} done")
        except BaseException as e:
            # task를 실행하는 도중 발생한 에러 처리
            print(f"exception: {e}")
