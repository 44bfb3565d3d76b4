# Seed 002, "as_completed()의 사용 예제": fetch pages, report each as it finishes.
# Source: seeds/002_8542354901df4589.txt, run on corral.
#
# Changes from the seed:
#   - imports: `from concurrent.futures import ThreadPoolExecutor as PE`
#     -> `from corral import ThreadPoolExecutor as PE`, and `import concurrent.futures`
#     -> `import corral`, so `concurrent.futures.as_completed` reads `corral.as_completed`.
#
# Without a network every urlopen() fails at once (name resolution), and each URL is
# reported as 'Fail to open': the example's error path.
from corral import ThreadPoolExecutor as PE
from urllib.request import urlopen
import corral

URLS = [
    'http://www.foxnews.com',
    'http://www.cnn.com',
    'http://europe.wsj.com',
    'http://www.bbc.co.uk']


def load_url(url):
    conn = urlopen(url, timeout=1)
    return conn.read()


def main():
    with PE() as exe:
        fs = {exe.submit(load_url, url): url for url in URLS}
        for f in corral.as_completed(fs):
            try:
                url = fs[f]
                data = f.result()
                print(f'[{url}] has {len(data)} characters.')
            except Exception:
                print(f'Fail to open : {url}')


if __name__ == '__main__':
    main()
