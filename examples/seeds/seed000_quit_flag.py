# Seed 000, "Futures를 죽이는 방법? / 방법 1": stop the workers with a global flag they poll.
# Source: seeds/000_bdbfe58b55cb6dfa.txt, run on corral.
#
# Changes from the seed:
#   - import: `import concurrent.futures` -> `import corral`, so the one use
#     `concurrent.futures.ThreadPoolExecutor` reads `corral.ThreadPoolExecutor`.
#   - indentation restored (the seed lost it).
#
# Like the seed, this runs until Ctrl+C: the KeyboardInterrupt lands in setup(), the
# handler sets quit = True, and interpreter exit waits (<= 1 s) for both tasks to see it.
# (corral can also stop a running task with fut.cancel(): see demo/showcase.py.)
from __future__ import print_function
import corral
import time
import sys
quit = False
def wait_a_bit(name):
    while not quit:
        print("{n} is doing work...".format(n=name))
        time.sleep(1)
def setup():
    executor = corral.ThreadPoolExecutor(max_workers=5)
    future1 = executor.submit(wait_a_bit, "Jack")
    future2 = executor.submit(wait_a_bit, "Jill")
    while (not (future1.done() and future2.done())):
        time.sleep(1)
if __name__ == "__main__":
    try:
        setup()
    except KeyboardInterrupt:
        quit = True
