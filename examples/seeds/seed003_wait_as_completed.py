# Seed 003, "6. Exercise - wait, as_completed": wait(timeout=7), then as_completed.
# Source: seeds/003_d6f4dd6dd539b1cf.txt, run on corral.
#
# Changes from the seed:
#   - import: `from concurrent.futures import ThreadPoolExecutor, ProcessPoolExecutor, wait, as_completed`
#     -> `from corral import ThreadPoolExecutor, ProcessPoolExecutor, wait, as_completed`.
#   - the blog's `> ` quote marks removed and the indentation repaired: the `with`
#     block sits inside main(), the two prints after `cancelled = ...` inside the
#     as_completed loop.
#   - typos: `furture = ...` -> `future = ...`; `future_list = []` -> `futures_list = []`
#     (the rest of the code says futures_list); `future.cancelled` -> `future.cancelled()`.
import os
import time

# 이번에는 쓸만큼만 호출한다.
from corral import ThreadPoolExecutor, ProcessPoolExecutor, wait, as_completed

WORK_LIST = [100000, 1000000, 10000000, 100000000]

def sum_generator(n):
    return sum(n for n in range(1, n+1))


def main():
    worker= min(10, len(WORK_LIST))

## 시작시간
    start_tm = time.time()

    futures_list = []

## 결과 건수
# ThreadPoolExecutor로도 해보자.
    with ProcessPoolExecutor() as excutor:
        for work in WORK_LIST:
            future = excutor.submit(sum_generator, work)
            futures_list.append(future)
            print('Scheduled for {} : {}'.format(work, future))
            print()

## wait 결과 출력
# 스케쥴된 list를 인자로 받는다.
# timeout으로 정한 시간만큼 list를 기다린다.
# 이 정해진 시간 안에 일을 못 끝내면 실패로 간주하고 중단시킨다.
# sum_generator로 인한 연산 작업으로 future_list에 append될 때까지 7초를 넘으면 실패로 간주한다.
        result = wait(futures_list, timeout = 7)

## 성공한 것들
        print('Completed Tasks : ' + str(result.done))
        print()

## 실패한 것들
        print('Pending ones after waiting for 7seconds : ' + str(result.not_done))
        print()

## 결과 값 출력
        print([future.result() for future in result.done])
        print()


## as_completed 결과 출력
        for future in as_completed(futures_list):
            result = future.result()
            done = future.done()
            cancelled = future.cancelled()

## future 결과 확인
            print('Future Result : {}, Done: {}'.format(result, done))
            print('Future Cancelled : {}'.format(cancelled))

## 종료시간
    end_tm = time.time() - start_tm

## 출력 포맷
    msg = '\n Time : {:.2f}s'

    print(msg.format(end_tm))


## 실행
if __name__ == '__main__':
    main()
