# Seed 000, "concurrent.futures.wait" example: wait(..., timeout=7) on four sums.
# Source: seeds/000_bdbfe58b55cb6dfa.txt, run on corral.
#
# Changes from the seed:
#   - import: `from concurrent.futures import ThreadPoolExecutor, ProcessPoolExecutor, wait`
#     -> `from corral import ThreadPoolExecutor, ProcessPoolExecutor, wait`.
#   - indentation restored (the seed lost it); wait() and the prints sit inside the
#     `with` block, as in the course code the seed was copied from.
from corral import ThreadPoolExecutor, ProcessPoolExecutor, wait
import time
WORK_LIST = [int(1e4), int(1e5), int(1e6), int(1e7)]
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
            print('Scheduled for {}: {}'.format(work, future))
        result = wait(future_lst, timeout=7)
        print('Completed Task:', result.done)
        print('Over timeout Task:', result.not_done)
        print([res.result() for res in result.done])
        print([res.result() for res in result.not_done])
if __name__ == '__main__':
    main()
