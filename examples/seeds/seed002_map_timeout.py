# Seed 002, ".map() – 동시성 map 연산": executor.map with a timeout.
# Source: seeds/002_8542354901df4589.txt, run on corral.
#
# The seed shows one line and its result:
#     all_result = list(executor.map(work, data, timeout=2))
#      # -> [11, 22, 33, 44, 55, 66]
# This file adds the smallest program around it: a `work`, its `data`, an executor.
# If the results are not all ready 2 s after the map() call, list() raises
# TimeoutError; corral then also stops the work still running (the stdlib lets it run).
from corral import ThreadPoolExecutor

data = [1, 2, 3, 4, 5, 6]


def work(x):
    return x * 11


def main():
    with ThreadPoolExecutor() as executor:
        all_result = list(executor.map(work, data, timeout=2))
        # -> [11, 22, 33, 44, 55, 66]
    print(all_result)


if __name__ == '__main__':
    main()
