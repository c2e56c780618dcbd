import asyncio, sys, time, resource
N = int(sys.argv[1]) if len(sys.argv) > 1 else 100000
async def main():
    await asyncio.gather(*[asyncio.create_task(asyncio.sleep(1)) for _ in range(N)])
t0 = time.monotonic()
asyncio.run(main())
wall = time.monotonic() - t0
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print("asyncio %d tasks sleeping 1 s: %.3f s wall, peak RSS %.1f MiB, %.0f bytes/task" % (N, wall, rss / 1024, rss * 1024 / N))
