"""Idle connections, asyncio streams server: server PORT."""
import asyncio, sys

async def handle(r, w):
    await r.read(1)
    w.close()

async def main(port):
    srv = await asyncio.start_server(handle, "127.0.0.1", port, backlog=4096)
    print("ready", flush=True)
    await srv.serve_forever()

asyncio.run(main(int(sys.argv[2])))
