# Read 10,000 files of 4 KiB, 64 at a time (asyncio.to_thread). Prints files/s.
import asyncio, sys, time
d = sys.argv[1]
N = int(sys.argv[2]) if len(sys.argv) > 2 else 10000
J = int(sys.argv[3]) if len(sys.argv) > 3 else 64
def read(p):
    with open(p, "rb") as f:
        return f.read()
async def main():
    it = iter(range(1, N + 1))
    async def worker():
        for i in it:
            b = await asyncio.to_thread(read, f"{d}/{i}")
            assert len(b) == 4096
    t0 = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(J)))
    print("%.0f" % (N / (time.monotonic() - t0)))
asyncio.run(main())
