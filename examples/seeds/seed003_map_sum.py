# Seed 003, "5. Exercise - PoolExecutor": map over sum_generator, on a ThreadPoolExecutor
# (main1), then on a ProcessPoolExecutor (main2).
# Source: seeds/003_d6f4dd6dd539b1cf.txt, run on corral.
#
# Changes from the seed:
#   - import: `from concurrent import futures` -> `import corral as futures`.
#   - the blog's `> ` quote marks removed and the indentation made regular.
import os
import time

# threading, multi-processing이 저수준으로 만들어져 있는 걸 사용한다.
import corral as futures

# 1부터 각 성분값까지 합을 계산할 것이기 때문에, 4가지 작업을 동시에 실행한다.
# 실무에서는 각 값에 자신이 만든 함수를 넣어 사용해도 된다.
WORK_LIST = [100000, 1000000, 10000000, 100000000]

# 인자 n에 위 WORK_LIST의 성분 값들이 하나씩 넘어와서 합이 계산된다.
# 그래서 총 동시에 4개가 실행된다.
# 누적 합계 함수(generator)
def sum_generator(n):
    return sum(n for n in range(1, n+1))

# worker의 수는 두 인수 중 작은 수로 한다.
# worker를 몇 개 할지 모르면 운영체제한테 맡긴다.
def main1():
    worker= min(10, len(WORK_LIST))

## 시작시간
# time.time은 현재 시간을 나타낸다.
    start_tm = time.time()

## 결과 건수
# with문으로 해야 열고 닫는 게 자동적으로 이뤄진다.
# def main1 과의 차이점 (ThreadPoolExecutor)
    with futures.ThreadPoolExecutor() as excutor:
        result = excutor.map(sum_generator, WORK_LIST)

## 종료시간
# 현재 시간을 나타낸 거에, 시작 시간을 빼서 총 걸린 시간을 나타낸다.
    end_tm = time.time() - start_tm

## 출력 포맷
# float 형 데이터 출력에 소수점 둘째짜리까지 출력한다.
    msg = '\n Result -> {} Time : {:.2f}s'

    print(msg.format(list(result), end_tm))


def main2():
    worker= min(10, len(WORK_LIST))

    start_tm = time.time()

# def main2 와의 차이점 (ProcessPoolExcutor)
    with futures.ProcessPoolExecutor() as excutor:
        result = excutor.map(sum_generator, WORK_LIST)

    end_tm = time.time() - start_tm

    msg = '\n Result -> {} Time : {:.2f}s'
    print(msg.format(list(result), end_tm))

## 실행
# 진입점을 알려줘야, multi-processing이 실행될 때 작업을 할 수 있다.
if __name__ == '__main__':
    main1()
    main2()
