import asyncio, sys, time
N = int(sys.argv[1]) if len(sys.argv) > 1 else 100000
async def work(i):
    await asyncio.sleep(0)
    return i
async def main():
    tasks = [asyncio.create_task(work(i)) for i in range(1, N + 1)]
    return sum(await asyncio.gather(*tasks))
t0 = time.process_time()
s = asyncio.run(main())
assert s == N * (N + 1) // 2
print("asyncio spawn+sleep(0)+gather %d: %.3f s" % (N, time.process_time() - t0))
