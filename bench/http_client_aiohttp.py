"""aiohttp side of bench/http_client.sh: GET url n times, at most c in flight (a semaphore),
bodies read. Prints "requests seconds req/s"."""
import asyncio
import sys
import time

import aiohttp


async def main(url, n, c):
    sem = asyncio.Semaphore(c)
    total = 0
    conn = aiohttp.TCPConnector(limit=c)
    async with aiohttp.ClientSession(connector=conn) as session:
        async def one():
            nonlocal total
            async with sem:
                async with session.get(url) as r:
                    total += len(await r.read())
        t0 = time.monotonic()
        await asyncio.gather(*(one() for _ in range(n)))
        dt = time.monotonic() - t0
    print("%d %.3f %.0f" % (n, dt, n / dt))


asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3])))
