# Seed 000, "concurrent.futures.as_completed" example: results as they finish.
# Source: seeds/000_bdbfe58b55cb6dfa.txt, run on corral.
#
# Changes from the seed:
#   - import: `from concurrent.futures import ThreadPoolExecutor, ProcessPoolExecutor, as_completed`
#     -> `from corral import ThreadPoolExecutor, ProcessPoolExecutor, as_completed`.
#   - indentation restored (the seed lost it).
#
# The largest sum (1e8) takes a few seconds in one process; as_completed(timeout=7)
# raises TimeoutError if it is not done by then (on a slow or busy machine).
from corral import ThreadPoolExecutor, ProcessPoolExecutor, as_completed
import time
WORK_LIST = [int(1e5), int(1e6), int(1e7), int(1e8)]
def sum_generator(n):
    sum_val = sum(x for x in range(1, n+1))
    return sum_val
def main():
    worker = min(10, len(WORK_LIST))
    st = time.time()
    future_lst = []
    with ProcessPoolExecutor(max_workers=worker) as executor:
        for work in WORK_LIST:
            future = executor.submit(sum_generator, work)
            future_lst.append(future)
        for future in as_completed(future_lst, timeout=7):
            result = future.result()
            done = future.done()
            cancelled = future.cancelled()
            print('Result: {}, Done: {}'.format(result, done))
            print('Cancelled: {}'.format(cancelled))
if __name__ == '__main__':
    main()
