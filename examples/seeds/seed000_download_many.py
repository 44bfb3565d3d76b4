# Seed 000, "executor.map" example: download_many (Fluent Python, flags_threadpool.py).
# Source: seeds/000_bdbfe58b55cb6dfa.txt, run on corral.
#
# Changes from the seed:
#   - import: `from concurrent import futures` -> `import corral as futures`.
#   - indentation restored (the seed lost it).
#
# `flags` is the book's helper module; ./flags.py is a local stand-in that needs no
# network (get_flag sleeps briefly and returns a few bytes).
import corral as futures
from flags import save_flag, get_flag, main
def download_one(cc: str):
    image = get_flag(cc)
    save_flag(image, f'{cc}.gif')
    print(cc, end=' ', flush=True)
    return cc
def download_many(cc_list: list[str]) -> int:
    with futures.ThreadPoolExecutor() as executor:
        res = executor.map(download_one, sorted(cc_list))
    return len(list(res))
if __name__ == '__main__':
    main(download_many)
