# asyncio.to_thread: N trivial calls, 64 in flight (the default executor).
import asyncio, sys, time
N, INFLIGHT = int(sys.argv[1]) if len(sys.argv) > 1 else 100000, 64

def f(x):
    return x

async def main():
    await asyncio.to_thread(f, 0)
    async def worker(w):
        for i in range(w, N, INFLIGHT):
            await asyncio.to_thread(f, i)
    t0 = time.perf_counter()
    await asyncio.gather(*(worker(w) for w in range(INFLIGHT)))
    dt = time.perf_counter() - t0
    print(f"asyncio to_thread {int(N / dt)} calls/s")

asyncio.run(main())
