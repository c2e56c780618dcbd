# redis-py asyncio: 50 tasks doing SET/GET in a loop on one client; prints ops/s.
import asyncio, sys, time
import redis.asyncio as aredis
async def main(port, secs):
    r = aredis.Redis(port=port, max_connections=50)
    n = 0; stop = False
    async def worker(i):
        nonlocal n
        k = f"key:{i}"
        while not stop:
            await r.set(k, "xxx"); await r.get(k); n += 2
    ts = [asyncio.create_task(worker(i)) for i in range(50)]
    t0 = time.monotonic(); await asyncio.sleep(secs); stop = True
    dt = time.monotonic() - t0
    await asyncio.gather(*ts)
    print(f"{n/dt:.0f}")
    await r.close()
asyncio.run(main(int(sys.argv[1]), float(sys.argv[2])))
