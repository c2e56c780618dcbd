# 1,000 runs of `/bin/echo x` with captured stdout, 8 at a time (asyncio). Prints runs/s.
import asyncio, sys, time
N = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
J = int(sys.argv[2]) if len(sys.argv) > 2 else 8
async def one(sem):
    async with sem:
        p = await asyncio.create_subprocess_exec("/bin/echo", "x", stdout=asyncio.subprocess.PIPE)
        out, _ = await p.communicate()
        assert out == b"x\n"
async def main():
    sem = asyncio.Semaphore(J)
    t0 = time.monotonic()
    await asyncio.gather(*(one(sem) for _ in range(N)))
    print("%.0f" % (N / (time.monotonic() - t0)))
asyncio.run(main())
