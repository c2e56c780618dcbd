"""TCP echo, asyncio streams (optionally on uvloop): server PORT | client PORT CONNS SECONDS [uvloop]."""
import asyncio, sys

async def handle(r, w):
    try:
        while True:
            d = await r.read(65536)
            if not d:
                break
            w.write(d)
            await w.drain()
    finally:
        w.close()

async def server(port):
    srv = await asyncio.start_server(handle, "127.0.0.1", port, backlog=1024)
    print("ready", flush=True)
    async with srv:
        await srv.serve_forever()

async def client(port, conns, secs):
    msg = b"m" * 64
    count = 0
    stop = False
    async def one():
        nonlocal count
        r, w = await asyncio.open_connection("127.0.0.1", port)
        while not stop:
            w.write(msg)
            await r.readexactly(64)
            count += 1
        w.close()
    tasks = [asyncio.create_task(one()) for _ in range(conns)]
    await asyncio.sleep(secs)
    n = count
    stop = True
    await asyncio.gather(*tasks)
    print("%.0f" % (n / secs))

if __name__ == "__main__":
    mode, port = sys.argv[1], int(sys.argv[2])
    use_uvloop = sys.argv[-1] == "uvloop"
    if use_uvloop:
        import uvloop
        uvloop.install()
    if mode == "server":
        asyncio.run(server(port))
    else:
        asyncio.run(client(port, int(sys.argv[3]), float(sys.argv[4])))
