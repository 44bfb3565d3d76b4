# Seed 002, "ProcessPoolExecutor의 사용예": is_prime over PRIMES with exe.map.
# Source: seeds/002_8542354901df4589.txt, run on corral.
#
# Changes from the seed:
#   - import added: the seed's snippet uses a `PE` it does not import (the previous
#     snippet's `from concurrent.futures import ThreadPoolExecutor as PE`), under the
#     heading "ProcessPoolExecutor의 사용예" and the words "이번에는 앞에서 언급한 프로세스
#     풀을 통한 CPU 분산처리 방법이다" (this time, CPU work spread over a process pool):
#     so here `from corral import ProcessPoolExecutor as PE`.
#
# Not changed: is_prime() never tests divisibility by 2 (so is_prime(4) is True); the
# seed's numbers are all odd.
from corral import ProcessPoolExecutor as PE

PRIMES = [
    112272535095293,
    112582705942171,
    112272535095293,
    115280095190773,
    115797848077099,
    1099726899285419]


def is_prime(n):
    if n < 2:
        return False
    if n in (2, 3):
        return True
    for k in range(3, int(n**0.5 + 1.5), 2):
        if n % k == 0:
            return False
    return True


def main():
    with PE() as exe:
        for num, prime in zip(PRIMES, exe.map(is_prime, PRIMES)):
            print(f'{num} is prime: {prime}')


if __name__ == '__main__':
    main()
