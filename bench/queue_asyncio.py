"""The asyncio side of bench/queue.lua: the same three workloads, the same output lines
(<name> <count> <cpu seconds>). asyncio has no pub/sub bus: the bus workload is the closest
plain-asyncio equivalent, one bounded asyncio.Queue per subscriber and a publisher that puts
each message into every matching queue (the topic table looked up per publish)."""
import asyncio
import sys
import time

N = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
M = int(sys.argv[2]) if len(sys.argv) > 2 else 200_000
P = int(sys.argv[3]) if len(sys.argv) > 3 else 2_000_000


async def queue_pass():
    q = asyncio.Queue(1000)

    async def consumer():
        total = 0
        for _ in range(N):
            total += await q.get()
        return total

    task = asyncio.create_task(consumer())
    for i in range(1, N + 1):
        await q.put(i)
    assert await task == N * (N + 1) // 2


class Bus:
    def __init__(self):
        self.topics = {}

    def subscribe(self, topic, size=128):
        q = asyncio.Queue(size)
        self.topics.setdefault(topic, []).append(q)
        return q

    async def publish(self, topic, msg):
        subs = self.topics.get(topic)
        if not subs:
            return 0
        for q in subs:
            await q.put((topic, msg))
        return len(subs)


async def bus_fanout():
    bus = Bus()
    stop = object()

    async def reader(q):
        n = 0
        while True:
            _, msg = await q.get()
            if msg is stop:
                return n
            n += 1

    tasks = [asyncio.create_task(reader(bus.subscribe("prices.eur"))) for _ in range(10)]
    for i in range(1, M + 1):
        await bus.publish("prices.eur", i)
    await bus.publish("prices.eur", stop)
    for t in tasks:
        assert await t == M


def publish_nobody():
    bus = Bus()
    bus.subscribe("other.topic")
    loop = asyncio.new_event_loop()

    async def run():
        publish = bus.publish
        for i in range(P):
            await publish("nobody.listens", i)

    t0 = time.process_time()
    loop.run_until_complete(run())
    elapsed = time.process_time() - t0
    loop.close()
    return elapsed


def timed(coro_fn):
    t0 = time.process_time()
    asyncio.run(coro_fn())
    return time.process_time() - t0


print(f"queue {N} {timed(queue_pass):.4f}")
print(f"bus {M * 10} {timed(bus_fanout):.4f}")
print(f"nobody {P} {publish_nobody():.4f}")
